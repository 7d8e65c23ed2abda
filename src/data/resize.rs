//! Centre crop, then resize by area averaging (a box filter).
//!
//! Each output pixel is the mean of the source area it covers, each source
//! pixel weighted by its overlap. For the paper's downscaling (MNIST's centre
//! 20×20 to 12×12) this is the usual anti-aliased choice, and it preserves an
//! image's mean intensity exactly. Weights are computed in integer units of
//! 1/(crop·out) pixel, so they are exact rationals, not rounded coordinates.

use super::Dataset;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// For each output index along one axis: the source indices it covers and
/// their weights (summing to 1).
fn axis_weights(src: usize, out: usize) -> Vec<Vec<(usize, f32)>> {
    (0..out)
        .map(|o| {
            // Output pixel o covers [o·src, (o+1)·src) and source pixel s covers
            // [s·out, (s+1)·out), both in units of 1/out source pixels.
            let (lo, hi) = (o * src, (o + 1) * src);
            (lo / out..hi.div_ceil(out))
                .map(|s| {
                    let overlap = hi.min((s + 1) * out) - lo.max(s * out);
                    (s, overlap as f32 / src as f32)
                })
                .collect()
        })
        .collect()
}

/// A crop-and-resize plan for single-channel `height × width` images.
#[derive(Clone, Debug)]
pub struct CropResize {
    width: usize,
    height: usize,
    crop: usize,
    out: usize,
    top: usize,
    left: usize,
    weights: Vec<Vec<(usize, f32)>>,
}

impl CropResize {
    /// Plans the centre `crop × crop` window (rounded towards the top left when
    /// the margin is odd), resized to `out × out`.
    pub fn new(height: usize, width: usize, crop: usize, out: usize) -> Result<Self> {
        if crop == 0 || out == 0 {
            return Err(Error::arg("--crop-resize", format!("crop {crop} and size {out} must both be positive")));
        }
        if crop > height || crop > width {
            return Err(Error::arg("--crop-resize", format!("crop {crop} is larger than the {height}×{width} images")));
        }
        // Weights need (out+1)·crop and images out·out; refuse sizes that overflow.
        if out.checked_add(1).and_then(|o| o.checked_mul(crop)).is_none() || out.checked_mul(out).is_none() {
            return Err(Error::arg("--crop-resize", format!("output size {out} is too large")));
        }
        Ok(CropResize { width, height, crop, out, top: (height - crop) / 2, left: (width - crop) / 2, weights: axis_weights(crop, out) })
    }

    /// Resizes one image: `src` has `height·width` values, `dst` `out·out`.
    /// Panics if the lengths are otherwise (a caller bug, not bad data).
    pub fn apply(&self, src: &[f32], dst: &mut [f32]) {
        assert_eq!(src.len(), self.height * self.width, "source image size");
        assert_eq!(dst.len(), self.out * self.out, "destination image size");
        let (crop, out) = (self.crop, self.out);
        // Separable: resize each cropped row, then each column of the result.
        let mut tmp = vec![0f32; crop * out];
        for r in 0..crop {
            let start = (self.top + r) * self.width + self.left;
            let row = &src[start..start + crop];
            for (o, ws) in self.weights.iter().enumerate() {
                tmp[r * out + o] = ws.iter().map(|&(s, w)| w * row[s]).sum();
            }
        }
        for (o, ws) in self.weights.iter().enumerate() {
            for c in 0..out {
                dst[o * out + c] = ws.iter().map(|&(s, w)| w * tmp[s * out + c]).sum();
            }
        }
    }
}

/// Applies the crop and resize to every channel of every example of a
/// `[channels, height, width]` dataset.
pub fn crop_resize_dataset(ds: &Dataset, crop: usize, out: usize) -> Result<Dataset> {
    let &[channels, height, width] = ds.dims.as_slice() else {
        return Err(Error::arg("--crop-resize", format!("needs images shaped [channels, height, width], {} has {:?}", ds.name, ds.dims)));
    };
    let plan = CropResize::new(height, width, crop, out)?;
    let total = crate::size::elements(&format!("{}'s resized images", ds.name), &[ds.len(), channels, out, out], "--crop-resize")?;
    let mut images = vec![0f32; total];
    images.par_chunks_mut(out * out).zip(ds.images.par_chunks(height * width)).for_each(|(dst, src)| plan.apply(src, dst));
    Ok(Dataset { name: ds.name.clone(), images, labels: ds.labels.clone(), dims: vec![channels, out, out], classes: ds.classes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_to_two_weights_by_hand() {
        // Output 0 covers source [0, 1.5): 1 of pixel 0 and 0.5 of pixel 1.
        let w = axis_weights(3, 2);
        assert_eq!(w[0], vec![(0, 2.0 / 3.0), (1, 1.0 / 3.0)]);
        assert_eq!(w[1], vec![(1, 1.0 / 3.0), (2, 2.0 / 3.0)]);
    }

    #[test]
    fn centre_crop_and_resize_by_hand() {
        // 5×5 image with value 10·r + c; the centre 3×3 crop is rows/cols 1..4:
        //   11 12 13
        //   21 22 23
        //   31 32 33
        // Rows resized 3→2 with weights (2/3, 1/3), (1/3, 2/3):
        //   11.333 12.667 / 21.333 22.667 / 31.333 32.667
        // then columns the same way:
        //   (2·11.333 + 21.333)/3 = 14.667, (2·12.667 + 22.667)/3 = 16
        //   (21.333 + 2·31.333)/3 = 28,     (22.667 + 2·32.667)/3 = 29.333
        let src: Vec<f32> = (0..25).map(|i| (10 * (i / 5) + i % 5) as f32).collect();
        let plan = CropResize::new(5, 5, 3, 2).unwrap();
        let mut dst = [0f32; 4];
        plan.apply(&src, &mut dst);
        let want = [14.0 + 2.0 / 3.0, 16.0, 28.0, 29.0 + 1.0 / 3.0];
        for (d, w) in dst.iter().zip(want) {
            assert!((d - w).abs() < 1e-4, "{dst:?} vs {want:?}");
        }
    }

    #[test]
    fn two_by_two_blocks_are_averaged_and_identity_is_exact() {
        let src: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let mut dst = [0f32; 4];
        CropResize::new(4, 4, 4, 2).unwrap().apply(&src, &mut dst);
        assert_eq!(dst, [2.5, 4.5, 10.5, 12.5]);
        let mut same = [0f32; 16];
        CropResize::new(4, 4, 4, 4).unwrap().apply(&src, &mut same);
        assert_eq!(same.to_vec(), src);
    }

    #[test]
    fn mnist_geometry_preserves_the_mean_of_the_crop() {
        let src: Vec<f32> = (0..28 * 28).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let mut dst = vec![0f32; 144];
        CropResize::new(28, 28, 20, 12).unwrap().apply(&src, &mut dst);
        let crop_mean: f32 = (4..24).flat_map(|r| (4..24).map(move |c| (r, c))).map(|(r, c)| src[r * 28 + c]).sum::<f32>() / 400.0;
        let out_mean = dst.iter().sum::<f32>() / 144.0;
        assert!((crop_mean - out_mean).abs() < 1e-5, "{crop_mean} {out_mean}");
    }

    #[test]
    fn bad_geometry_is_an_argument_error() {
        for (crop, out) in [(0, 12), (20, 0), (29, 12)] {
            let err = CropResize::new(28, 28, crop, out).unwrap_err().to_string();
            assert!(err.contains("--crop-resize"), "{err}");
        }
        let ds = Dataset { name: "flat".into(), images: vec![0.0; 4], labels: vec![0], dims: vec![4], classes: 1 };
        let err = crop_resize_dataset(&ds, 2, 2).unwrap_err().to_string();
        assert!(err.contains("[channels, height, width]"), "{err}");
    }
}
