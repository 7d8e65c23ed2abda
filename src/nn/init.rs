//! Weight initialisers, by fan-in/fan-out.

use crate::error::Error;
use crate::rng::Rng;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// LeCun et al. 1998, the paper's "random" init: N(0, 1/fan_in).
    Lecun,
    /// He et al. 2015: N(0, 2/fan_in).
    He,
    /// Glorot & Bengio 2010, uniform: U(±√(6/(fan_in+fan_out))).
    Xavier,
    /// He et al. 2015 by fan-out, N(0, 2/fan_out): the ResNets' conv init
    /// (fan_out = k·k·C_out).
    #[serde(rename = "he-fan-out")]
    HeFanOut,
    /// U(±1/√fan_in), the ResNets' last linear layer (PyTorch's default).
    Uniform,
}

impl Init {
    pub fn sample(self, rng: &mut Rng, fan_in: usize, fan_out: usize, n: usize) -> Vec<f64> {
        match self {
            Init::Lecun => normal(rng, (1.0 / fan_in as f64).sqrt(), n),
            Init::He => normal(rng, (2.0 / fan_in as f64).sqrt(), n),
            Init::Xavier => uniform(rng, (6.0 / (fan_in + fan_out) as f64).sqrt(), n),
            Init::HeFanOut => normal(rng, (2.0 / fan_out as f64).sqrt(), n),
            Init::Uniform => uniform(rng, (1.0 / fan_in as f64).sqrt(), n),
        }
    }
}

fn normal(rng: &mut Rng, std: f64, n: usize) -> Vec<f64> {
    (0..n).map(|_| std * rng.normal()).collect()
}

fn uniform(rng: &mut Rng, a: f64, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.uniform_in(-a, a)).collect()
}

impl FromStr for Init {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "lecun" | "random" => Ok(Init::Lecun),
            "he" | "kaiming" => Ok(Init::He),
            "xavier" | "glorot" => Ok(Init::Xavier),
            "he-fan-out" => Ok(Init::HeFanOut),
            "uniform" => Ok(Init::Uniform),
            _ => Err(Error::arg("--init", format!("'{s}' is not an initialiser; expected lecun, he, xavier, he-fan-out or uniform"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(v: &[f64]) -> f64 {
        v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64
    }

    #[test]
    fn variances_follow_fan_in() {
        let mut r = Rng::new(0, 0);
        let n = 100_000;
        assert!((var(&Init::Lecun.sample(&mut r, 50, 10, n)) - 1.0 / 50.0).abs() < 1e-3);
        assert!((var(&Init::He.sample(&mut r, 50, 10, n)) - 2.0 / 50.0).abs() < 2e-3);
        assert!((var(&Init::Xavier.sample(&mut r, 50, 10, n)) - 2.0 / 60.0).abs() < 2e-3);
        assert!((var(&Init::HeFanOut.sample(&mut r, 50, 10, n)) - 2.0 / 10.0).abs() < 1e-2);
        assert!((var(&Init::Uniform.sample(&mut r, 50, 10, n)) - 1.0 / 150.0).abs() < 1e-4);
        assert!("nope".parse::<Init>().unwrap_err().to_string().contains("--init"));
    }
}
