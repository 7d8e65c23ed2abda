//! Per-channel normalisation `(x − mean_c) / std_c` of RGB images with pixels
//! in [0, 1], and the statistics of the published training recipes.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    /// fb.resnet's CIFAR statistics, published on the 0–255 scale.
    pub const FB_RESNET_CIFAR: Normalize =
        Normalize { mean: [125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0], std: [63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0] };
    /// The tau-ResNet scripts' CIFAR statistics.
    pub const TAU_RESNET_CIFAR: Normalize = Normalize { mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.2010] };
    /// ImageNet's, as used by fb.resnet and torchvision.
    pub const IMAGENET: Normalize = Normalize { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

    /// The statistics by the name a command line uses: `fb-resnet`, `tau-resnet` or `imagenet`.
    pub fn named(name: &str) -> Result<Normalize> {
        match name {
            "fb-resnet" => Ok(Self::FB_RESNET_CIFAR),
            "tau-resnet" => Ok(Self::TAU_RESNET_CIFAR),
            "imagenet" => Ok(Self::IMAGENET),
            other => Err(Error::arg(
                "--normalize",
                format!("unknown statistics `{other}`; expected fb-resnet, tau-resnet or imagenet (or auto, none)"),
            )),
        }
    }

    /// The recipe's statistics for a dataset: fb.resnet's for CIFAR, ImageNet's
    /// for ImageNet, none for the greyscale sets.
    pub fn default_for(dataset: &str) -> Option<Normalize> {
        match dataset {
            "cifar10" | "cifar100" => Some(Self::FB_RESNET_CIFAR),
            "imagenet" => Some(Self::IMAGENET),
            _ => None,
        }
    }

    /// Normalises one `[3, h, w]` image in place.
    pub fn apply(&self, chw: &mut [f32]) {
        let plane = chw.len() / 3;
        for (c, values) in chw.chunks_exact_mut(plane.max(1)).take(3).enumerate() {
            // One division per channel, not per pixel.
            let (mean, inv) = (self.mean[c], 1.0 / self.std[c]);
            values.iter_mut().for_each(|v| *v = (*v - mean) * inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_the_formula_per_channel() {
        let n = Normalize::FB_RESNET_CIFAR;
        let mut img: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
        let orig = img.clone();
        n.apply(&mut img);
        for (i, (&got, &x)) in img.iter().zip(&orig).enumerate() {
            let c = i / 4;
            let want = (x - n.mean[c]) / n.std[c];
            assert!((got - want).abs() < 1e-5, "index {i}: {got} vs {want}");
        }
        // The 0–255 convention: a pixel at the mean byte maps to 0, one std above to 1.
        let mut at_mean = [125.3 / 255.0, 123.0 / 255.0, (113.9 + 66.7) / 255.0];
        n.apply(&mut at_mean);
        assert!(at_mean[0].abs() < 1e-6 && at_mean[1].abs() < 1e-6 && (at_mean[2] - 1.0).abs() < 1e-5, "{at_mean:?}");
    }

    #[test]
    fn names_and_defaults() {
        assert_eq!(Normalize::named("tau-resnet").unwrap(), Normalize::TAU_RESNET_CIFAR);
        assert_eq!(Normalize::named("imagenet").unwrap().std, [0.229, 0.224, 0.225]);
        let err = Normalize::named("zca").unwrap_err().to_string();
        assert!(err.contains("--normalize") && err.contains("zca") && err.contains("fb-resnet"), "{err}");
        assert_eq!(Normalize::default_for("cifar100"), Some(Normalize::FB_RESNET_CIFAR));
        assert_eq!(Normalize::default_for("mnist"), None);
    }
}
