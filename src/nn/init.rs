//! Weight initialisers, by fan-in/fan-out.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::scalar::Scalar;
use crate::tensor::Tensor;
use rayon::prelude::*;
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

/// Whether a new model's weights are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// Each layer's initialiser draws them in turn from the seed's `init` stream.
    Drawn,
    /// Zeros, for a model whose every tensor a checkpoint is about to
    /// overwrite (a resumed run, `--init-from`): drawing the 179 M weights
    /// of `--width 13000 --depth 3` takes 2.4 s.
    Zero,
}

/// What the layers of a new model take their random values from, in turn:
/// the seed's `init` stream, or nothing, where every value is zero.
pub struct Draws(Option<Rng>);

impl Draws {
    pub fn new(seed: u64, weights: Weights) -> Draws {
        Draws(match weights {
            Weights::Drawn => Some(Rng::named(seed, "init")),
            Weights::Zero => None,
        })
    }

    /// Draws from `rng`'s stream.
    pub fn from_rng(rng: Rng) -> Draws {
        Draws(Some(rng))
    }

    /// `n` values of U(lo, hi) in order, or zeros where nothing is drawn.
    pub fn uniform(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        match &mut self.0 {
            Some(rng) => (0..n).map(|_| rng.uniform_in(lo, hi)).collect(),
            None => vec![0.0; n],
        }
    }
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

    /// `n` weights, drawn one at a time as the caller takes them.
    pub fn sample(self, rng: &mut Rng, fan_in: usize, fan_out: usize, n: usize) -> impl Iterator<Item = f64> + '_ {
        let (normal, scale) = self.law(fan_in, fan_out);
        (0..n).map(move |_| if normal { scale * rng.normal() } else { rng.uniform_in(-scale, scale) })
    }

    /// Whether the weights are normal (else uniform), and their standard
    /// deviation (else the uniform's half-width).
    fn law(self, fan_in: usize, fan_out: usize) -> (bool, f64) {
        match self {
            Init::Lecun => (true, (1.0 / fan_in as f64).sqrt()),
            Init::He => (true, (2.0 / fan_in as f64).sqrt()),
            Init::Xavier => (false, (6.0 / (fan_in + fan_out) as f64).sqrt()),
            Init::HeFanOut => (true, (2.0 / fan_out as f64).sqrt()),
            Init::UniformFanIn => (false, (1.0 / fan_in as f64).sqrt()),
        }
    }

    /// A weight tensor of `shape` drawn as [`Init::sample`] draws it, in
    /// chunks side by side. A normal weight takes two 64-bit draws of `rng`
    /// and a uniform one, so each chunk starts its own copy of `rng` where
    /// that chunk's first weight's draws begin: the values do not depend on
    /// the thread count. The 179 M weights of `--width 13000 --depth 3` took
    /// 6.2 s drawn in order and take 2.4 s on the 2-core host (2026-12-06, to
    /// 0.7 GB resident, two runs each). Zeros where `draws` draws nothing.
    pub fn weights<B: Backend>(self, backend: &B, shape: &[usize], draws: &mut Draws, fan_in: usize, fan_out: usize) -> Result<Tensor<B>> {
        const CHUNK: usize = 1 << 16;
        let Some(rng) = &mut draws.0 else {
            return Tensor::zeros(backend, shape);
        };
        let per_weight = if self.law(fan_in, fan_out).0 { 2 } else { 1 };
        let mut host = vec![B::Elem::ZERO; shape.iter().product()];
        host.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
            let mut r = rng.clone();
            r.skip((c * CHUNK) as u64 * per_weight);
            let len = chunk.len();
            chunk.iter_mut().zip(self.sample(&mut r, fan_in, fan_out, len)).for_each(|(w, v)| *w = B::Elem::from_f64(v));
        });
        rng.skip(host.len() as u64 * per_weight);
        Tensor::new(backend, shape, backend.upload_owned(host)?)
    }
}

impl FromStr for Init {
    type Err = Error;
    fn from_str(s: &str) -> std::result::Result<Self, Error> {
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

    /// Drawn in chunks side by side, a weight tensor holds what one thread
    /// drawing in order gets, on any number of threads, and leaves the
    /// generator where that thread would: the next layer's draws are the same.
    #[test]
    fn weights_drawn_side_by_side_are_the_sequential_draws() {
        let be = crate::backend::cpu::Cpu::<f64>::new();
        // Three chunks and a part.
        let shape = [7, 30_000];
        for init in [Init::He, Init::Xavier] {
            let mut r = Rng::named(5, "init");
            let want: Vec<f64> = init.sample(&mut r, 3, 4, 210_000).collect();
            let next = r.next_u64();
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut draws = Draws::new(5, Weights::Drawn);
                let w = pool.install(|| init.weights(&be, &shape, &mut draws, 3, 4)).unwrap();
                assert!(w.to_f64s(&be).unwrap() == want, "{} on {threads} threads", init.name());
                assert_eq!(draws.0.unwrap().next_u64(), next, "{} on {threads} threads: where the generator stops", init.name());
            }
            let mut none = Draws::new(5, Weights::Zero);
            assert!(init.weights(&be, &shape, &mut none, 3, 4).unwrap().to_f64s(&be).unwrap().iter().all(|&w| w == 0.0));
            assert_eq!(none.uniform(3, 0.5, 1.0), [0.0; 3]);
        }
    }

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
