//! Crop a window of an RGB image and resize it, in one separable pass with a
//! triangle (bilinear) filter widened by the downscale factor, as PIL and
//! torchvision's antialiased resize do. Widening makes a downscale average
//! every source pixel instead of sampling a few and aliasing.

use super::jpeg::Rgb8;

/// A window of the source in pixels; fractional edges are allowed (a resize
/// followed by a centre crop is one such window of the original).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// For each output index along one axis: the first source index it reads and
/// the weights (summing to 1) of that and the following source indices.
fn taps(len: usize, start: f64, extent: f64, out: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = extent / out as f64;
    let radius = scale.max(1.0);
    (0..out)
        .map(|o| {
            let centre = start + (o as f64 + 0.5) * scale;
            let lo = (centre - radius).floor().max(0.0) as usize;
            let hi = ((centre + radius).ceil().max(0.0) as usize).min(len);
            let lo = lo.min(hi.saturating_sub(1));
            let weight = |s: usize| (1.0 - ((s as f64 + 0.5 - centre) / radius).abs()).max(0.0);
            // Trim the zero-weight ends (a pixel exactly one radius away).
            let lo = (lo..hi).find(|&s| weight(s) > 0.0).unwrap_or(lo);
            let hi = (lo..hi).rev().find(|&s| weight(s) > 0.0).map_or(lo + 1, |s| s + 1);
            let w: Vec<f64> = (lo..hi).map(weight).collect();
            let sum: f64 = w.iter().sum();
            // Only a window outside the image has no weight: take the nearest pixel.
            let w = if sum > 0.0 { w.into_iter().map(|v| (v / sum) as f32).collect() } else { vec![1.0] };
            (lo, w)
        })
        .collect()
}

/// The `window` of `img` resized to `out_h × out_w`, as `[3, out_h, out_w]`
/// values in [0, 1].
pub fn resample(img: &Rgb8, window: Window, out_w: usize, out_h: usize) -> Vec<f32> {
    let across = taps(img.width, window.x, window.width, out_w);
    let down = taps(img.height, window.y, window.height, out_h);
    let first = down.iter().map(|(lo, _)| *lo).min().unwrap_or(0);
    let last = down.iter().map(|(lo, w)| lo + w.len()).max().unwrap_or(0);
    // Horizontal pass over the rows the vertical pass reads: [row][channel][x].
    let mut rows = vec![0f32; (last - first) * 3 * out_w];
    for (r, row) in rows.chunks_exact_mut(3 * out_w).enumerate() {
        let src = &img.pixels[(first + r) * img.width * 3..(first + r + 1) * img.width * 3];
        for (x, (lo, w)) in across.iter().enumerate() {
            for c in 0..3 {
                row[c * out_w + x] = w.iter().enumerate().map(|(k, wk)| wk * src[(lo + k) * 3 + c] as f32).sum::<f32>() / 255.0;
            }
        }
    }
    let mut out = vec![0f32; 3 * out_h * out_w];
    for (y, (lo, w)) in down.iter().enumerate() {
        for c in 0..3 {
            let dst = &mut out[(c * out_h + y) * out_w..(c * out_h + y + 1) * out_w];
            for (k, wk) in w.iter().enumerate() {
                let src = &rows[((lo + k - first) * 3 + c) * out_w..((lo + k - first) * 3 + c + 1) * out_w];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += wk * s);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Red = x, green = y, blue = 7: a ramp the filter must reproduce.
    fn ramp(width: usize, height: usize) -> Rgb8 {
        let pixels = (0..height).flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, 7])).collect();
        Rgb8 { width, height, pixels }
    }

    #[test]
    fn weights_sum_to_one_and_widen_when_downscaling() {
        for (len, out) in [(10, 3), (3, 10), (224, 224), (500, 224)] {
            for (lo, w) in taps(len, 0.0, len as f64, out) {
                assert!(lo + w.len() <= len);
                assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
        // Halving: each output covers ±2 source pixels around its centre.
        let t = taps(100, 0.0, 100.0, 50);
        assert_eq!(t[10].0, 19);
        assert_eq!(t[10].1.len(), 4);
        // Identity size: exactly the one pixel.
        assert!(taps(8, 0.0, 8.0, 8).iter().enumerate().all(|(i, (lo, w))| *lo == i && w[0] == 1.0));
    }

    #[test]
    fn a_linear_ramp_is_resampled_at_the_window_coordinates() {
        let img = ramp(200, 120);
        // The window [40, 140) × [20, 80) to 50 × 30: output x samples source x 40 + 2·(o + 0.5) − 0.5.
        let out = resample(&img, Window { x: 40.0, y: 20.0, width: 100.0, height: 60.0 }, 50, 30);
        for y in 0..30 {
            for x in 0..50 {
                let (r, g, b) = (out[y * 50 + x], out[(30 + y) * 50 + x], out[(60 + y) * 50 + x]);
                assert!((r * 255.0 - (40.0 + 2.0 * x as f32 + 0.5)).abs() < 1e-3, "r at {x}: {}", r * 255.0);
                assert!((g * 255.0 - (20.0 + 2.0 * y as f32 + 0.5)).abs() < 1e-3, "g at {y}: {}", g * 255.0);
                assert!((b * 255.0 - 7.0).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn identity_window_copies_and_upscaling_interpolates() {
        let img = ramp(6, 4);
        let same = resample(&img, Window { x: 0.0, y: 0.0, width: 6.0, height: 4.0 }, 6, 4);
        let want: Vec<f32> = (0..3).flat_map(|c| (0..4).flat_map(move |y| (0..6).map(move |x| [x, y, 7][c] as f32 / 255.0))).collect();
        assert_eq!(same, want);
        // Doubling the window [2, 4) samples at x = 2.25, 2.75, 3.25, 3.75, reading
        // the neighbours outside the window; at the image's edge the filter clamps.
        for (x, want) in [(2.0, [1.75, 2.25, 2.75, 3.25]), (0.0, [0.0, 0.25, 0.75, 1.25])] {
            let up = resample(&img, Window { x, y: 0.0, width: 2.0, height: 4.0 }, 4, 4);
            let got: Vec<f32> = up[..4].iter().map(|v| v * 255.0).collect();
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-4, "window at {x}: {got:?}");
            }
        }
    }
}
