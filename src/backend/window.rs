//! The geometry of a sliding window over an NCHW activation: what a
//! convolution, a pooling layer and a conv layer's patch statistics share.

use crate::error::{Error, Result};

/// A `kh×kw` window moved by `stride` over an `n×c×h×w` activation padded
/// with `pad` zeros on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

/// Output height and width of a window, or `None` when it does not fit.
pub fn window_out(h: usize, w: usize, kh: usize, kw: usize, stride: usize, pad: usize) -> Option<(usize, usize)> {
    if stride == 0 || kh == 0 || kw == 0 || h + 2 * pad < kh || w + 2 * pad < kw {
        return None;
    }
    Some(((h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kw) / stride + 1))
}

impl Window {
    /// A `k×k` window over an activation of shape `[n, c, h, w]`.
    pub fn square(shape: &[usize], k: usize, stride: usize, pad: usize) -> Result<Self> {
        match *shape {
            [n, c, h, w] => {
                let g = Window { n, c, h, w, kh: k, kw: k, stride, pad };
                g.out(if k == 1 { "1×1 window" } else { "window" })?;
                Ok(g)
            }
            _ => Err(Error::shape("window", format!("needs an [N, C, H, W] input, got {shape:?}"))),
        }
    }

    /// Output height and width, or a shape error naming `op`.
    pub fn out(&self, op: &'static str) -> Result<(usize, usize)> {
        window_out(self.h, self.w, self.kh, self.kw, self.stride, self.pad).ok_or_else(|| {
            Error::shape(op, format!("a {}×{} window (stride {}, pad {}) does not fit {self:?}", self.kh, self.kw, self.stride, self.pad))
        })
    }

    /// Output positions per image (`oh·ow`); 0 when the window does not fit.
    pub fn out_area(&self) -> usize {
        window_out(self.h, self.w, self.kh, self.kw, self.stride, self.pad).map_or(0, |(oh, ow)| oh * ow)
    }

    /// Values in one image's input (`c·h·w`).
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Values in one patch (`c·kh·kw`): the dimension of a conv layer's Σx.
    pub fn patch_len(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Patches over the whole batch (`n·oh·ow`): the samples of a conv layer's Σx.
    pub fn patches(&self) -> usize {
        self.n * self.out_area()
    }

    /// A 1×1 window with stride 1 and no padding reads the input as it is.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// The same window over an output-shaped activation of `c` channels,
    /// one sample per position: how Σ∇h reads a conv layer's output-gradient.
    pub fn pointwise_over_output(&self, c: usize) -> Result<Window> {
        let (oh, ow) = self.out("window")?;
        Ok(Window { n: self.n, c, h: oh, w: ow, kh: 1, kw: 1, stride: 1, pad: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes() {
        assert_eq!(window_out(8, 8, 3, 3, 1, 1), Some((8, 8)));
        assert_eq!(window_out(7, 6, 3, 3, 2, 1), Some((4, 3)));
        assert_eq!(window_out(2, 2, 5, 5, 1, 0), None);
        assert_eq!(window_out(4, 4, 1, 1, 0, 0), None);
        let g = Window::square(&[2, 3, 7, 6], 3, 2, 1).unwrap();
        assert_eq!((g.out_area(), g.patch_len(), g.patches()), (12, 27, 24));
        let p = g.pointwise_over_output(5).unwrap();
        assert_eq!((p.n, p.c, p.h, p.w, p.patch_len(), p.patches()), (2, 5, 4, 3, 5, 24));
        assert!(p.is_pointwise() && !g.is_pointwise());
        assert!(Window::square(&[2, 3, 7], 3, 1, 1).unwrap_err().to_string().contains("[N, C, H, W]"));
        assert!(Window::square(&[1, 1, 2, 2], 5, 1, 0).is_err());
    }
}
