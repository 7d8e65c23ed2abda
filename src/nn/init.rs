//! Weight initialisers, by fan-in/fan-out.

use crate::error::Error;
use crate::rng::Rng;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// LeCun et al. 1998: N(0, 1/fan_in), variance 1/fan_in.
    Lecun,
    /// He et al. 2015: N(0, 2/fan_in).
    He,
    /// Glorot & Bengio 2010, uniform: U(±√(6/(fan_in+fan_out))).
    Xavier,
    /// He et al. 2015 by fan-out, N(0, 2/fan_out): the ResNets' conv init
    /// (fan_out = k·k·C_out).
    #[serde(rename = "he-fan-out")]
    HeFanOut,
    /// U(±1/√fan_in), variance 1/(3·fan_in): the weight scale of Torch7's
    /// `nn.Linear`, which the paper's code used, so its "random" init (and
    /// the ResNets' last linear layer, PyTorch's default scale too). Each
    /// ReLU layer then keeps a sixth of its input's second moment, not half.
    #[serde(rename = "uniform-fan-in", alias = "uniform")]
    UniformFanIn,
}

impl Init {
    /// The name `--init` takes (and `config.json` records).
    pub fn name(self) -> &'static str {
        match self {
            Init::Lecun => "lecun",
            Init::He => "he",
            Init::Xavier => "xavier",
            Init::HeFanOut => "he-fan-out",
            Init::UniformFanIn => "uniform-fan-in",
        }
    }

    /// `n` weights, drawn one at a time as the caller takes them, so a
    /// layer's weights never exist as f64s all at once.
    pub fn sample(self, rng: &mut Rng, fan_in: usize, fan_out: usize, n: usize) -> impl Iterator<Item = f64> + '_ {
        let (normal, scale) = match self {
            Init::Lecun => (true, (1.0 / fan_in as f64).sqrt()),
            Init::He => (true, (2.0 / fan_in as f64).sqrt()),
            Init::Xavier => (false, (6.0 / (fan_in + fan_out) as f64).sqrt()),
            Init::HeFanOut => (true, (2.0 / fan_out as f64).sqrt()),
            Init::UniformFanIn => (false, (1.0 / fan_in as f64).sqrt()),
        };
        (0..n).map(move |_| if normal { scale * rng.normal() } else { rng.uniform_in(-scale, scale) })
    }
}

impl FromStr for Init {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "lecun" | "random" => Ok(Init::Lecun),
            "he" | "kaiming" => Ok(Init::He),
            "xavier" | "glorot" => Ok(Init::Xavier),
            "he-fan-out" => Ok(Init::HeFanOut),
            "uniform-fan-in" | "uniform" => Ok(Init::UniformFanIn),
            _ => {
                Err(Error::arg("--init", format!("'{s}' is not an initialiser; expected lecun, he, xavier, he-fan-out or uniform-fan-in")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_initialiser_has_the_variance_of_its_formula() {
        let (fan_in, fan_out, n) = (50, 10, 100_000);
        // (init, variance by formula, kurtosis E[w⁴]/E[w²]²: 3 for a normal, 9/5 for a uniform)
        let cases = [
            (Init::Lecun, 1.0 / 50.0, 3.0),
            (Init::He, 2.0 / 50.0, 3.0),
            (Init::Xavier, 2.0 / 60.0, 1.8),
            (Init::HeFanOut, 2.0 / 10.0, 3.0),
            (Init::UniformFanIn, 1.0 / 150.0, 1.8),
        ];
        let mut r = Rng::new(0, 0);
        for (init, variance, kurtosis) in cases {
            let w: Vec<f64> = init.sample(&mut r, fan_in, fan_out, n).collect();
            let (mean, second) = (w.iter().sum::<f64>() / n as f64, w.iter().map(|x| x * x).sum::<f64>() / n as f64);
            // The mean of n squares has relative standard error √((kurtosis − 1)/n):
            // 0.45% for a normal, 0.28% for a uniform; 5 of them cannot fail by chance.
            let tolerance = 5.0 * ((kurtosis - 1.0) / n as f64).sqrt();
            assert!((second / variance - 1.0).abs() < tolerance, "{}: E[w²] {second} vs {variance}", init.name());
            assert!(mean.abs() < 5.0 * (variance / n as f64).sqrt(), "{}: mean {mean}", init.name());
            assert_eq!(init.name().parse::<Init>().unwrap(), init);
            assert_eq!(serde_json::to_value(init).unwrap(), init.name(), "config.json records the name --init takes");
        }
        assert_eq!("uniform".parse::<Init>().unwrap(), Init::UniformFanIn, "the old name still parses");
        assert!("nope".parse::<Init>().unwrap_err().to_string().contains("--init"));
    }
}
