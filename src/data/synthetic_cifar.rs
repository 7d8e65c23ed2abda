//! A CIFAR-shaped stand-in (3×32×32, 10 classes, values in [0, 1]) for conv
//! nets when CIFAR is absent: the built-in strokes, padded to 32×32 and drawn
//! in a random ink colour on a random background tint with per-channel noise.
//! The class is in the shape alone, as in the greyscale set, so colour
//! statistics carry no label information.
//!
//! Example `i` depends only on `(synthetic::SEED, split, i)`, like the
//! greyscale set it is built from.

use super::synthetic::{self, SIDE};
use super::{Dataset, Split};
use crate::rng::Rng;
use rayon::prelude::*;

pub const NAME: &str = "synthetic-cifar";
pub const RGB_SIDE: usize = 32;
const PAD: usize = (RGB_SIDE - SIDE) / 2;
const NOISE: f64 = 0.05;

fn colour(grey: &Dataset, split: &str) -> Dataset {
    let key = Rng::named(synthetic::SEED, split).next_u64();
    let plane = RGB_SIDE * RGB_SIDE;
    let mut images = vec![0f32; grey.len() * 3 * plane];
    images.par_chunks_mut(3 * plane).enumerate().for_each(|(i, out)| {
        let mut rng = Rng::new(key, i as u64);
        let ink: Vec<f64> = (0..3).map(|_| rng.uniform_in(0.4, 1.0)).collect();
        let background: Vec<f64> = (0..3).map(|_| rng.uniform_in(0.0, 0.35)).collect();
        let strokes = grey.example(i);
        for (c, channel) in out.chunks_mut(plane).enumerate() {
            for (p, px) in channel.iter_mut().enumerate() {
                let (y, x) = (p / RGB_SIDE, p % RGB_SIDE);
                let inside = (PAD..PAD + SIDE).contains(&y) && (PAD..PAD + SIDE).contains(&x);
                let a = if inside { strokes[(y - PAD) * SIDE + x - PAD] as f64 } else { 0.0 };
                let v = background[c] * (1.0 - a) + ink[c] * a + NOISE * (rng.uniform() - 0.5);
                *px = v.clamp(0.0, 1.0) as f32;
            }
        }
    });
    Dataset { name: NAME.into(), images, labels: grey.labels.clone(), dims: vec![3, RGB_SIDE, RGB_SIDE], classes: grey.classes }
}

/// The first `train` training and `test` test examples.
pub fn generate(train: usize, test: usize) -> Split {
    let grey = synthetic::generate(train, test);
    Split { train: colour(&grey.train, "data/synthetic-cifar/train"), test: colour(&grey.test, "data/synthetic-cifar/test") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_like_cifar_with_the_strokes_inside() {
        let s = generate(64, 8);
        assert_eq!((s.train.dims.as_slice(), s.train.len(), s.test.len()), (&[3, 32, 32][..], 64, 8));
        assert!(s.train.images.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(s.train.labels, synthetic::generate(64, 0).train.labels);
        assert_eq!(s, generate(64, 8), "deterministic");
        // Where the greyscale stroke is full ink, every channel sits near its ink colour (≥ 0.4 − noise).
        let grey = synthetic::generate(64, 0).train;
        let (g, c) = (grey.example(5), s.train.example(5));
        let inked: Vec<usize> = (0..SIDE * SIDE).filter(|&p| g[p] >= 0.99).collect();
        assert!(!inked.is_empty());
        for p in inked {
            let (y, x) = (p / SIDE + PAD, p % SIDE + PAD);
            for ch in 0..3 {
                assert!(c[ch * 1024 + y * 32 + x] >= 0.37, "channel {ch} at ({y}, {x})");
            }
        }
    }
}
