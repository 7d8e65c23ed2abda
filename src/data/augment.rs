//! Per-example transforms of in-memory `[channels, height, width]` images: the
//! CIFAR recipe's pad, random crop back to size and horizontal flip, then
//! per-channel normalisation.
//!
//! Every random draw is a pure function of (seed, epoch, position in the
//! epoch), so a resumed run sees bit-identical batches and the parallel gather
//! gives the same result as a serial one.

use super::normalize::Normalize;
use crate::error::{Error, Result};
use crate::rng::{hash3, Rng};

/// How the border added before a random crop is filled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// Zeros (fb.resnet).
    #[default]
    Zero,
    /// The mirror image without repeating the edge, `… 2 1 | 0 1 2 …` (the
    /// paper's scripts; Torch's and PyTorch's "reflect").
    Reflect,
}

/// Pad by `pad` on every side, crop a random window of the original size, and
/// flip it left–right with probability 1/2 if `flip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadCropFlip {
    pub pad: usize,
    pub padding: Padding,
    pub flip: bool,
}

/// One example's draws: the crop's offset in the padded image and the flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub dy: usize,
    pub dx: usize,
    pub flip: bool,
}

impl PadCropFlip {
    /// The CIFAR recipe: pad 4, random 32×32 crop, flip with p = 0.5.
    pub fn cifar(padding: Padding) -> Self {
        PadCropFlip { pad: 4, padding, flip: true }
    }

    pub fn draw(&self, rng: &mut Rng) -> Placement {
        let span = 2 * self.pad + 1;
        let (dy, dx) = (rng.below(span), rng.below(span));
        Placement { dy, dx, flip: self.flip && rng.uniform() < 0.5 }
    }

    /// The source index of padded coordinate `p` (in `[0, n + 2·pad)`), or
    /// `None` for a zero-padded position.
    fn source(&self, p: usize, n: usize) -> Option<usize> {
        let i = p as isize - self.pad as isize;
        let n = n as isize;
        match self.padding {
            _ if (0..n).contains(&i) => Some(i as usize),
            Padding::Zero => None,
            // Transform::check guarantees pad < n, so one reflection lands inside.
            Padding::Reflect if i < 0 => Some((-i) as usize),
            Padding::Reflect => Some((2 * (n - 1) - i) as usize),
        }
    }

    /// Writes the crop at `at` of the padded `src` (`dims = [c, h, w]`) into `dst`.
    pub fn apply(&self, src: &[f32], dims: [usize; 3], at: Placement, dst: &mut [f32]) {
        let [channels, h, w] = dims;
        let cols: Vec<Option<usize>> = (0..w).map(|x| self.source(if at.flip { w - 1 - x } else { x } + at.dx, w)).collect();
        for c in 0..channels {
            let plane = &src[c * h * w..(c + 1) * h * w];
            for y in 0..h {
                let row = &mut dst[(c * h + y) * w..(c * h + y + 1) * w];
                match self.source(y + at.dy, h) {
                    Some(sy) => row.iter_mut().zip(&cols).for_each(|(d, sx)| *d = sx.map_or(0.0, |sx| plane[sy * w + sx])),
                    None => row.fill(0.0),
                }
            }
        }
    }
}

/// What a loader does to each example it gathers.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    pub augment: Option<PadCropFlip>,
    pub normalize: Option<Normalize>,
    /// The key of the random draws (derived from the run's seed by name).
    key: u64,
}

impl Transform {
    /// Augments (if `augment`) then normalises (if `normalize`), drawing from `seed`.
    pub fn new(augment: Option<PadCropFlip>, normalize: Option<Normalize>, seed: u64) -> Self {
        Transform { augment, normalize, key: Rng::named(seed, "data/augment").next_u64() }
    }

    /// Checks that examples of `dims` (from dataset `name`) can be transformed.
    pub fn check(&self, name: &str, dims: &[usize]) -> Result<()> {
        let &[channels, h, w] = dims else {
            return Err(Error::arg("--augment", format!("needs images shaped [channels, height, width], {name} has {dims:?}")));
        };
        if self.normalize.is_some() && channels != 3 {
            return Err(Error::arg("--normalize", format!("per-channel statistics are for RGB images, {name} has {channels} channel(s)")));
        }
        if let Some(a) = self.augment {
            if a.padding == Padding::Reflect && (a.pad >= h || a.pad >= w) {
                return Err(Error::arg(
                    "--padding",
                    format!("reflecting {} pixels needs images larger than that, {name} is {h}×{w}", a.pad),
                ));
            }
        }
        Ok(())
    }

    /// The draws of the example at `position` of epoch `epoch`.
    pub fn placement(&self, epoch: usize, position: usize) -> Option<Placement> {
        self.augment.map(|a| a.draw(&mut Rng::new(hash3(self.key, epoch as u64, position as u64), 0)))
    }

    /// Transforms one example (`dims` as accepted by [`check`](Self::check)) into `dst`.
    pub fn apply(&self, src: &[f32], dims: &[usize], epoch: usize, position: usize, dst: &mut [f32]) {
        match (self.augment, self.placement(epoch, position)) {
            (Some(a), Some(at)) => a.apply(src, [dims[0], dims[1], dims[2]], at, dst),
            _ => dst.copy_from_slice(src),
        }
        if let Some(n) = &self.normalize {
            n.apply(dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×5×6 image whose values are all distinct and non-zero.
    fn image() -> (Vec<f32>, [usize; 3]) {
        ((0..60).map(|i| 1.0 + i as f32).collect(), [2, 5, 6])
    }

    fn at(src: &[f32], dims: [usize; 3], c: usize, y: usize, x: usize) -> f32 {
        src[(c * dims[1] + y) * dims[2] + x]
    }

    #[test]
    fn crop_is_the_image_shifted_with_zero_border() {
        let (src, dims) = image();
        let aug = PadCropFlip { pad: 2, padding: Padding::Zero, flip: false };
        let mut dst = vec![f32::NAN; 60];
        // Offset (1, 3) in the padded image: output (y, x) shows source (y − 1, x + 1).
        aug.apply(&src, dims, Placement { dy: 1, dx: 3, flip: false }, &mut dst);
        for c in 0..2 {
            for y in 0..5 {
                for x in 0..6 {
                    let (sy, sx) = (y as isize - 1, x as isize + 1);
                    let want = if (0..5).contains(&sy) && (0..6).contains(&sx) { at(&src, dims, c, sy as usize, sx as usize) } else { 0.0 };
                    assert_eq!(at(&dst, dims, c, y, x), want, "c {c} y {y} x {x}");
                }
            }
        }
    }

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let (src, dims) = image();
        let aug = PadCropFlip { pad: 2, padding: Padding::Reflect, flip: false };
        let mut dst = vec![0.0; 60];
        // The top-left corner of the padded image: row −2 → 2, column −2 → 2.
        aug.apply(&src, dims, Placement { dy: 0, dx: 0, flip: false }, &mut dst);
        assert_eq!(at(&dst, dims, 1, 0, 0), at(&src, dims, 1, 2, 2));
        assert_eq!(at(&dst, dims, 1, 1, 1), at(&src, dims, 1, 1, 1));
        assert_eq!(at(&dst, dims, 0, 0, 3), at(&src, dims, 0, 2, 1));
        // The bottom-right: row 6 (two past the last, 4) → 2, row 5 → 3, column 7 → 3.
        aug.apply(&src, dims, Placement { dy: 4, dx: 4, flip: false }, &mut dst);
        assert_eq!(at(&dst, dims, 0, 4, 5), at(&src, dims, 0, 2, 3));
        assert_eq!(at(&dst, dims, 0, 3, 3), at(&src, dims, 0, 3, 5));
        assert_eq!(at(&dst, dims, 0, 2, 5), at(&src, dims, 0, 4, 3));
        assert!(dst.iter().all(|&v| v != 0.0), "reflection leaves no zeros");
    }

    #[test]
    fn flip_reverses_each_row_of_the_crop() {
        let (src, dims) = image();
        let aug = PadCropFlip { pad: 2, padding: Padding::Zero, flip: true };
        let (mut plain, mut flipped) = (vec![0.0; 60], vec![0.0; 60]);
        aug.apply(&src, dims, Placement { dy: 2, dx: 2, flip: false }, &mut plain);
        assert_eq!(plain, src, "the centred crop is the identity");
        aug.apply(&src, dims, Placement { dy: 2, dx: 2, flip: true }, &mut flipped);
        for row in 0..10 {
            let want: Vec<f32> = src[row * 6..(row + 1) * 6].iter().rev().copied().collect();
            assert_eq!(&flipped[row * 6..(row + 1) * 6], want.as_slice());
        }
    }

    #[test]
    fn draws_cover_every_offset_and_flip_half_the_time() {
        let t = Transform::new(Some(PadCropFlip::cifar(Padding::Zero)), None, 5);
        let draws: Vec<Placement> = (0..4000).map(|i| t.placement(0, i).unwrap()).collect();
        for off in 0..=8 {
            assert!(draws.iter().any(|p| p.dy == off) && draws.iter().any(|p| p.dx == off), "offset {off} never drawn");
        }
        assert!(draws.iter().all(|p| p.dy <= 8 && p.dx <= 8));
        let flips = draws.iter().filter(|p| p.flip).count();
        assert!((1800..2200).contains(&flips), "{flips} flips of 4000");
    }

    #[test]
    fn draws_are_a_function_of_seed_epoch_and_position() {
        let make = |seed| Transform::new(Some(PadCropFlip::cifar(Padding::Reflect)), Some(Normalize::TAU_RESNET_CIFAR), seed);
        let (a, b) = (make(1), make(1));
        let dims = [3, 32, 32];
        let src: Vec<f32> = (0..3072).map(|i| (i % 251) as f32 / 250.0).collect();
        let run = |t: &Transform, epoch, position| {
            let mut dst = vec![0.0; 3072];
            t.apply(&src, &dims, epoch, position, &mut dst);
            dst
        };
        assert_eq!(run(&a, 3, 17), run(&b, 3, 17));
        let seq = |t: &Transform, epoch| (0..64).map(|p| t.placement(epoch, p).unwrap()).collect::<Vec<_>>();
        assert_eq!(seq(&a, 3), seq(&b, 3));
        assert_ne!(seq(&a, 3), seq(&a, 4), "another epoch draws anew");
        assert_ne!(seq(&a, 3), seq(&make(2), 3), "another seed draws anew");
    }

    #[test]
    fn normalisation_follows_augmentation() {
        let t = Transform::new(None, Some(Normalize::FB_RESNET_CIFAR), 0);
        let src = vec![0.5f32; 12];
        let mut dst = vec![0.0; 12];
        t.apply(&src, &[3, 2, 2], 0, 0, &mut dst);
        let n = Normalize::FB_RESNET_CIFAR;
        for (i, v) in dst.iter().enumerate() {
            assert!((v - (0.5 - n.mean[i / 4]) / n.std[i / 4]).abs() < 1e-6);
        }
    }

    #[test]
    fn unsuitable_shapes_are_argument_errors() {
        let reflect = Transform::new(Some(PadCropFlip { pad: 4, padding: Padding::Reflect, flip: true }), None, 0);
        let err = reflect.check("tiny", &[3, 4, 8]).unwrap_err().to_string();
        assert!(err.contains("--padding") && err.contains("4×8"), "{err}");
        assert!(reflect.check("ok", &[3, 5, 5]).is_ok());
        let err = reflect.check("flat", &[784]).unwrap_err().to_string();
        assert!(err.contains("flat") && err.contains("[784]"), "{err}");
        let norm = Transform::new(None, Some(Normalize::IMAGENET), 0);
        let err = norm.check("mnist", &[1, 28, 28]).unwrap_err().to_string();
        assert!(err.contains("--normalize") && err.contains("1 channel"), "{err}");
    }
}
