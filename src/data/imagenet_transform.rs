//! ImageNet's per-example transforms, from a decoded photo to a normalised
//! `[3, size, size]` example.
//!
//! Train (fb.resnet's order): random-resized crop (torchvision's sampling,
//! 8–100% of the area, aspect 3/4–4/3 log-uniform, 10 attempts then a centre
//! crop), colour jitter (brightness, contrast, saturation in random order),
//! AlexNet's PCA lighting noise, normalisation, horizontal flip.
//! Eval: resize the shorter side to `resize`, centre crop `size`, normalise.
//!
//! The draws of an example are a pure function of (seed, epoch, position in
//! the epoch), so decoding in parallel or resuming changes nothing.

use super::jpeg::Rgb8;
use super::normalize::Normalize;
use super::resample::{resample, Window};
use crate::rng::{hash3, Rng};

/// The PCA of ImageNet's RGB pixels (fb.resnet, from AlexNet): eigenvalues and
/// eigenvectors (columns).
pub const PCA_EIGVAL: [f32; 3] = [0.2175, 0.0188, 0.0045];
pub const PCA_EIGVEC: [[f32; 3]; 3] = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]];

/// Luma weights of the grey image jitter blends towards (ITU-R 601).
const GREY: [f32; 3] = [0.299, 0.587, 0.114];

/// The random part of the train transform.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainAugment {
    /// Brightness, contrast and saturation factors are drawn from 1 ± `jitter`.
    pub jitter: f32,
    /// Standard deviation of the PCA lighting coefficients.
    pub lighting: f32,
}

impl TrainAugment {
    /// fb.resnet's ImageNet values.
    pub const RECIPE: TrainAugment = TrainAugment { jitter: 0.4, lighting: 0.1 };
}

#[derive(Clone, Debug, PartialEq)]
pub struct PhotoTransform {
    /// Side of the square output.
    pub size: usize,
    /// Eval: the shorter side is resized to this before the centre crop.
    pub resize: usize,
    /// `None` is the eval transform.
    pub train: Option<TrainAugment>,
    pub normalize: Option<Normalize>,
    key: u64,
}

impl PhotoTransform {
    /// Resize the shorter side to `resize` (at least `size`), centre-crop `size`.
    pub fn eval(size: usize, resize: usize, normalize: Option<Normalize>) -> Self {
        PhotoTransform { size, resize, train: None, normalize, key: 0 }
    }

    /// The randomised train transform, drawing from `seed`.
    pub fn train(size: usize, augment: TrainAugment, normalize: Option<Normalize>, seed: u64) -> Self {
        let key = Rng::named(seed, "data/imagenet/augment").next_u64();
        PhotoTransform { size, resize: size, train: Some(augment), normalize, key }
    }

    /// The example at `position` of epoch `epoch`, as `[3, size, size]` values.
    pub fn apply(&self, img: &Rgb8, epoch: usize, position: usize) -> Vec<f32> {
        let Some(aug) = self.train else {
            let mut out = resample(img, centre_window(img.width, img.height, self.size, self.resize), self.size, self.size);
            if let Some(n) = &self.normalize {
                n.apply(&mut out);
            }
            return out;
        };
        let mut rng = Rng::new(hash3(self.key, epoch as u64, position as u64), 0);
        let mut out = resample(img, random_resized_crop(img.width, img.height, &mut rng), self.size, self.size);
        color_jitter(&mut out, aug.jitter, &mut rng);
        lighting(&mut out, aug.lighting, &mut rng);
        if let Some(n) = &self.normalize {
            n.apply(&mut out);
        }
        if rng.uniform() < 0.5 {
            flip(&mut out, self.size);
        }
        out
    }
}

/// torchvision's `RandomResizedCrop.get_params` with scale (0.08, 1) and ratio (3/4, 4/3).
pub fn random_resized_crop(width: usize, height: usize, rng: &mut Rng) -> Window {
    let (w, h) = (width as f64, height as f64);
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let area = w * h * rng.uniform_in(0.08, 1.0);
        let aspect = rng.uniform_in(lo, hi).exp();
        let cw = (area * aspect).sqrt().round() as usize;
        let ch = (area / aspect).sqrt().round() as usize;
        if (1..=width).contains(&cw) && (1..=height).contains(&ch) {
            let y = rng.below(height - ch + 1);
            let x = rng.below(width - cw + 1);
            return Window { x: x as f64, y: y as f64, width: cw as f64, height: ch as f64 };
        }
    }
    // The fallback: the whole image, trimmed to the nearest allowed aspect.
    let ratio = w / h;
    let (cw, ch) = if ratio < 3.0 / 4.0 {
        (width, (w / (3.0 / 4.0)).round() as usize)
    } else if ratio > 4.0 / 3.0 {
        ((h * 4.0 / 3.0).round() as usize, height)
    } else {
        (width, height)
    };
    Window { x: ((width - cw) / 2) as f64, y: ((height - ch) / 2) as f64, width: cw as f64, height: ch as f64 }
}

/// The source window that "resize the shorter side to `resize`, then crop the
/// centre `size × size`" shows.
pub fn centre_window(width: usize, height: usize, size: usize, resize: usize) -> Window {
    let side = size as f64 * width.min(height) as f64 / resize as f64;
    Window { x: (width as f64 - side) / 2.0, y: (height as f64 - side) / 2.0, width: side, height: side }
}

fn blend_towards(chw: &mut [f32], alpha: f32, target: impl Fn(usize) -> f32) {
    let plane = chw.len() / 3;
    for (i, v) in chw.iter_mut().enumerate() {
        *v = alpha * *v + (1.0 - alpha) * target(i % plane);
    }
}

fn grey(chw: &[f32]) -> Vec<f32> {
    let plane = chw.len() / 3;
    (0..plane).map(|p| (0..3).map(|c| GREY[c] * chw[c * plane + p]).sum()).collect()
}

/// Scales towards black.
fn brightness(chw: &mut [f32], alpha: f32) {
    blend_towards(chw, alpha, |_| 0.0);
}

/// Blends towards the mean grey level.
fn contrast(chw: &mut [f32], alpha: f32) {
    let g = grey(chw);
    let mean = g.iter().sum::<f32>() / g.len().max(1) as f32;
    blend_towards(chw, alpha, |_| mean);
}

/// Blends each pixel towards its own grey level.
fn saturation(chw: &mut [f32], alpha: f32) {
    let g = grey(chw);
    blend_towards(chw, alpha, |p| g[p]);
}

/// fb.resnet's `ColorJitter`: the three adjustments in random order, each with
/// a factor uniform in 1 ± `var`.
fn color_jitter(chw: &mut [f32], var: f32, rng: &mut Rng) {
    let mut order = [0, 1, 2];
    rng.shuffle(&mut order);
    for op in order {
        let alpha = 1.0 + rng.uniform_in(-var as f64, var as f64) as f32;
        match op {
            0 => brightness(chw, alpha),
            1 => contrast(chw, alpha),
            _ => saturation(chw, alpha),
        }
    }
}

/// The RGB shift of AlexNet's lighting noise for coefficients `alpha`.
fn lighting_shift(alpha: [f32; 3]) -> [f32; 3] {
    PCA_EIGVEC.map(|row| (0..3).map(|j| row[j] * alpha[j] * PCA_EIGVAL[j]).sum())
}

/// Adds `eigvec · (alpha ∘ eigval)` to every pixel, with `alpha ~ N(0, std²)`.
fn lighting(chw: &mut [f32], std: f32, rng: &mut Rng) {
    if std == 0.0 {
        return;
    }
    let shift = lighting_shift([0; 3].map(|_| std * rng.normal() as f32));
    let plane = chw.len() / 3;
    for (c, values) in chw.chunks_exact_mut(plane).enumerate() {
        values.iter_mut().for_each(|v| *v += shift[c]);
    }
}

/// Mirrors every row of a `[3, size, size]` image.
fn flip(chw: &mut [f32], size: usize) {
    chw.chunks_exact_mut(size).for_each(|row| row.reverse());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(width: usize, height: usize) -> Rgb8 {
        let pixels = (0..width * height * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        Rgb8 { width, height, pixels }
    }

    #[test]
    fn random_crops_respect_area_aspect_and_bounds() {
        let mut rng = Rng::new(1, 2);
        for (w, h) in [(500, 375), (64, 48), (40, 300)] {
            for _ in 0..500 {
                let win = random_resized_crop(w, h, &mut rng);
                assert!(win.x >= 0.0 && win.y >= 0.0 && win.x + win.width <= w as f64 && win.y + win.height <= h as f64, "{win:?}");
                let frac = win.width * win.height / (w * h) as f64;
                assert!(frac <= 1.0 && frac > 0.05, "{win:?}");
                let aspect = win.width / win.height;
                // Rounding to whole pixels can stretch the aspect slightly on small crops.
                assert!((0.7..1.43).contains(&aspect) || frac > 0.5, "{win:?}");
            }
        }
    }

    #[test]
    fn a_sliver_falls_back_to_the_centre_crop_of_allowed_aspect() {
        // Any sampled crop of at least 8% of 1000×10 is taller than 10 pixels.
        let win = random_resized_crop(1000, 10, &mut Rng::new(3, 0));
        assert_eq!(win, Window { x: 493.0, y: 0.0, width: 13.0, height: 10.0 });
        let win = random_resized_crop(10, 1000, &mut Rng::new(3, 0));
        assert_eq!(win, Window { x: 0.0, y: 493.0, width: 10.0, height: 13.0 });
    }

    #[test]
    fn centre_window_of_resize_and_crop() {
        // 400×300 resized to 256 on the short side is ×256/300; 224 of that is 262.5 source pixels.
        let win = centre_window(400, 300, 224, 256);
        assert!((win.width - 262.5).abs() < 1e-9 && (win.height - 262.5).abs() < 1e-9);
        assert!((win.x - 68.75).abs() < 1e-9 && (win.y - 18.75).abs() < 1e-9);
    }

    #[test]
    fn jitter_adjustments_keep_what_they_should() {
        let base: Vec<f32> = (0..48).map(|i| ((i * 13) % 17) as f32 / 17.0).collect();
        let mut b = base.clone();
        brightness(&mut b, 0.5);
        assert!(b.iter().zip(&base).all(|(x, y)| (x - 0.5 * y).abs() < 1e-6));
        let mut c = base.clone();
        contrast(&mut c, 1.3);
        let mean = |v: &[f32]| grey(v).iter().sum::<f32>() / 16.0;
        assert!((mean(&c) - mean(&base)).abs() < 1e-5, "contrast keeps the mean grey");
        assert_ne!(c, base);
        let mut s = base.clone();
        saturation(&mut s, 0.0);
        let g = grey(&base);
        assert!((0..48).all(|i| (s[i] - g[i % 16]).abs() < 1e-6), "saturation 0 is greyscale");
        let mut same = base.clone();
        color_jitter(&mut same, 0.0, &mut Rng::new(0, 0));
        assert!(same.iter().zip(&base).all(|(x, y)| (x - y).abs() < 1e-6), "jitter 0 is the identity");
    }

    #[test]
    fn lighting_shifts_each_channel_by_the_pca_formula() {
        let base = vec![0.5f32; 12];
        let mut lit = base.clone();
        let mut rng = Rng::new(9, 9);
        lighting(&mut lit, 0.1, &mut rng.clone());
        let alpha = [0; 3].map(|_| 0.1 * rng.normal() as f32);
        for c in 0..3 {
            // Written out: Σ_j eigvec[c][j]·alpha[j]·eigval[j].
            let want = PCA_EIGVEC[c][0] * alpha[0] * 0.2175 + PCA_EIGVEC[c][1] * alpha[1] * 0.0188 + PCA_EIGVEC[c][2] * alpha[2] * 0.0045;
            assert!(want.abs() > 1e-5);
            for p in 0..4 {
                assert!((lit[c * 4 + p] - 0.5 - want).abs() < 1e-6, "channel {c}");
            }
        }
    }

    #[test]
    fn eval_is_deterministic_and_train_is_keyed_by_epoch_and_position() {
        let img = photo(60, 45);
        let eval = PhotoTransform::eval(16, 20, Some(Normalize::IMAGENET));
        assert_eq!(eval.apply(&img, 0, 0).len(), 3 * 16 * 16);
        assert_eq!(eval.apply(&img, 0, 0), eval.apply(&img, 5, 9));
        let train = PhotoTransform::train(16, TrainAugment::RECIPE, Some(Normalize::IMAGENET), 4);
        let again = PhotoTransform::train(16, TrainAugment::RECIPE, Some(Normalize::IMAGENET), 4);
        assert_eq!(train.apply(&img, 2, 7), again.apply(&img, 2, 7));
        assert_ne!(train.apply(&img, 2, 7), train.apply(&img, 3, 7));
        assert_ne!(train.apply(&img, 2, 7), train.apply(&img, 2, 8));
    }

    #[test]
    fn flip_mirrors_rows() {
        let mut v: Vec<f32> = (0..12).map(|i| i as f32).collect();
        flip(&mut v, 2);
        assert_eq!(v, vec![1.0, 0.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0, 9.0, 8.0, 11.0, 10.0]);
    }
}
