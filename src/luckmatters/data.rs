//! The Gaussian inputs: every coordinate i.i.d. N(0, std²). The original
//! notes that std 10 (not 1) is needed for the samples to reach every
//! teacher ReLU's active and inactive side, i.e. "cover the corners".

use crate::rng::Rng;

/// `n` samples of dimension `d`, row-major, drawn from the named stream of
/// `seed`, so every set (train per epoch, eval) is a pure function of its name.
pub fn gaussian(seed: u64, name: &str, n: usize, d: usize, std: f64) -> Vec<f64> {
    let mut rng = Rng::named(seed, name);
    (0..n * d).map(|_| std * rng.normal()).collect()
}

/// The stream name of the training set used in `epoch`: one fixed set, or a
/// fresh one every epoch when regenerating.
pub fn train_stream(epoch: usize, regenerate: bool) -> String {
    let round = if regenerate { epoch } else { 0 };
    format!("luckmatters/train/{round}")
}
