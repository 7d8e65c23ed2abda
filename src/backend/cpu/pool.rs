//! Max and average pooling on the CPU, one channel plane per task.

use crate::backend::Window;
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use rayon::prelude::*;

/// The input positions `(iy, ix)` of output `(oy, ox)`'s window, padding excluded.
fn window_cells(g: &Window, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
    let (y0, x0) = ((oy * g.stride) as isize - g.pad as isize, (ox * g.stride) as isize - g.pad as isize);
    let rows = (y0.max(0) as usize)..((y0 + g.kh as isize).clamp(0, g.h as isize) as usize);
    let cols = (x0.max(0) as usize)..((x0 + g.kw as isize).clamp(0, g.w as isize) as usize);
    rows.flat_map(move |iy| cols.clone().map(move |ix| iy * g.w + ix))
}

/// Runs `f(input plane, output plane)` over every `(image, channel)` plane pair.
fn planes<T: Scalar>(input: &[T], in_plane: usize, out: &mut [T], out_plane: usize, f: impl Fn(&[T], &mut [T]) + Sync) {
    if in_plane > 0 && out_plane > 0 {
        out.par_chunks_mut(out_plane).zip(input.par_chunks(in_plane)).for_each(|(o, i)| f(i, o));
    }
}

pub fn max_pool2d<T: Scalar>(x: &[T], g: Window) -> Result<Vec<T>> {
    let (oh, ow) = g.out("max_pool2d")?;
    let mut y = vec![T::ZERO; g.n * g.c * oh * ow];
    super::super::checks::pool("max_pool2d", &g, x.len(), y.len())?;
    planes(x, g.h * g.w, &mut y, oh * ow, |x, y| {
        for (o, y) in y.iter_mut().enumerate() {
            let mut cells = window_cells(&g, o / ow, o % ow);
            // A window wholly inside the padding has no input: it reads zero.
            *y = cells.next().map_or(T::ZERO, |first| cells.fold(x[first], |m, i| if x[i] > m { x[i] } else { m }));
        }
    });
    Ok(y)
}

/// Each output's gradient goes to the first cell of its window that holds the maximum.
pub fn max_pool2d_backward<T: Scalar>(dy: &[T], x: &[T], y: &[T], g: Window) -> Result<Vec<T>> {
    let (oh, ow) = super::super::checks::pool("max_pool2d_backward", &g, x.len(), dy.len())?;
    if y.len() != dy.len() {
        return Err(Error::shape("max_pool2d_backward", format!("output {} and its gradient {}", y.len(), dy.len())));
    }
    let mut dx = vec![T::ZERO; x.len()];
    let plane = g.h * g.w;
    dx.par_chunks_mut(plane.max(1)).enumerate().for_each(|(p, dx)| {
        let (x, y, dy) = (&x[p * plane..(p + 1) * plane], &y[p * oh * ow..(p + 1) * oh * ow], &dy[p * oh * ow..(p + 1) * oh * ow]);
        for o in 0..oh * ow {
            if let Some(i) = window_cells(&g, o / ow, o % ow).find(|&i| x[i] == y[o]) {
                dx[i] += dy[o];
            }
        }
    });
    Ok(dx)
}

/// Mean over the `kh·kw` cells, padding counted as zeros (PyTorch's
/// `count_include_pad`). A 1×1 window with stride `s` subsamples.
pub fn avg_pool2d<T: Scalar>(x: &[T], g: Window) -> Result<Vec<T>> {
    let (oh, ow) = g.out("avg_pool2d")?;
    let mut y = vec![T::ZERO; g.n * g.c * oh * ow];
    super::super::checks::pool("avg_pool2d", &g, x.len(), y.len())?;
    let inv = T::from_f64(1.0 / (g.kh * g.kw) as f64);
    planes(x, g.h * g.w, &mut y, oh * ow, |x, y| {
        if subsamples(&g) {
            // One cell per window (its mean is itself): copy every stride-th cell of every stride-th row.
            for (row, y) in y.chunks_exact_mut(ow).enumerate() {
                let src = &x[row * g.stride * g.w..];
                y.iter_mut().zip(src.iter().step_by(g.stride)).for_each(|(y, &v)| *y = v);
            }
            return;
        }
        for (o, y) in y.iter_mut().enumerate() {
            *y = window_cells(&g, o / ow, o % ow).map(|i| x[i]).sum::<T>() * inv;
        }
    });
    Ok(y)
}

/// A 1×1 unpadded window: the strided subsample of the type-A shortcut.
fn subsamples(g: &Window) -> bool {
    g.kh == 1 && g.kw == 1 && g.pad == 0
}

pub fn avg_pool2d_backward<T: Scalar>(dy: &[T], g: Window) -> Result<Vec<T>> {
    let (oh, ow) = g.out("avg_pool2d_backward")?;
    let mut dx = vec![T::ZERO; g.n * g.image_len()];
    super::super::checks::pool("avg_pool2d_backward", &g, dx.len(), dy.len())?;
    let inv = T::from_f64(1.0 / (g.kh * g.kw) as f64);
    let plane = g.h * g.w;
    if plane > 0 {
        dx.par_chunks_mut(plane).zip(dy.par_chunks(oh * ow)).for_each(|(dx, dy)| {
            if subsamples(&g) {
                for (row, dy) in dy.chunks_exact(ow).enumerate() {
                    let dst = &mut dx[row * g.stride * g.w..];
                    dst.iter_mut().step_by(g.stride).zip(dy).for_each(|(dx, &d)| *dx += d);
                }
                return;
            }
            for (o, &d) in dy.iter().enumerate() {
                window_cells(&g, o / ow, o % ow).for_each(|i| dx[i] += d * inv);
            }
        });
    }
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cases_by_hand() {
        // One 3×3 plane, 2×2 windows, stride 1 → 2×2 output.
        let x = [1.0, 5.0, 2.0, 4.0, 3.0, 9.0, 0.0, 7.0, 6.0];
        let g = Window { n: 1, c: 1, h: 3, w: 3, kh: 2, kw: 2, stride: 1, pad: 0 };
        let y = max_pool2d(&x, g).unwrap();
        assert_eq!(y, vec![5.0, 9.0, 7.0, 9.0]);
        // 9 is the max of two windows: its cell collects both gradients.
        let dx = max_pool2d_backward(&[1.0, 2.0, 3.0, 4.0], &x, &y, g).unwrap();
        assert_eq!(dx, vec![0.0, 1.0, 0.0, 0.0, 0.0, 6.0, 0.0, 3.0, 0.0]);
        assert_eq!(avg_pool2d(&x, g).unwrap(), vec![13.0 / 4.0, 19.0 / 4.0, 14.0 / 4.0, 25.0 / 4.0]);
        // Padding 1 with a 3×3 window, stride 2: corners see 4 cells, divided by 9.
        let p = Window { kh: 3, kw: 3, stride: 2, pad: 1, ..g };
        let avg = avg_pool2d(&x, p).unwrap();
        assert!(avg.iter().zip([13.0f64, 19.0, 14.0, 25.0]).all(|(a, s)| (a - s / 9.0).abs() < 1e-15), "{avg:?}");
        assert_eq!(max_pool2d(&x, p).unwrap(), vec![5.0, 9.0, 7.0, 9.0]);
        // A 1×1 window with stride 2 subsamples, and its adjoint scatters back.
        let s = Window { kh: 1, kw: 1, stride: 2, pad: 0, ..g };
        assert_eq!(avg_pool2d(&x, s).unwrap(), vec![1.0, 2.0, 0.0, 6.0]);
        assert_eq!(avg_pool2d_backward(&[1.0, 2.0, 3.0, 4.0], s).unwrap(), vec![1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 4.0]);
    }

    #[test]
    fn strided_subsample_of_non_square_planes_and_its_adjoint() {
        // Uneven sizes, so the last row and column of each plane are or are not sampled.
        for (h, w, stride) in [(3, 5, 2), (4, 7, 3), (5, 4, 2), (2, 2, 3)] {
            let g = Window { n: 2, c: 3, h, w, kh: 1, kw: 1, stride, pad: 0 };
            let (oh, ow) = g.out("test").unwrap();
            let x: Vec<f64> = (0..g.n * g.c * h * w).map(|i| (i * 7 % 11) as f64 - 5.0).collect();
            let y = avg_pool2d(&x, g).unwrap();
            let want: Vec<f64> = (0..g.n * g.c)
                .flat_map(|p| (0..oh * ow).map(move |o| (p, o / ow * stride, o % ow * stride)))
                .map(|(p, iy, ix)| x[p * h * w + iy * w + ix])
                .collect();
            assert_eq!(y, want, "{h}×{w} stride {stride}");
            // The backward map is the adjoint: ⟨S x, d⟩ = ⟨x, Sᵀ d⟩.
            let d: Vec<f64> = (0..y.len()).map(|i| (i * 5 % 9) as f64 - 4.0).collect();
            let dx = avg_pool2d_backward(&d, g).unwrap();
            let lhs: f64 = y.iter().zip(&d).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{h}×{w} stride {stride}");
            assert_eq!(dx.iter().filter(|&&v| v != 0.0).count(), d.iter().filter(|&&v| v != 0.0).count());
        }
    }

    #[test]
    fn shape_errors_name_the_op() {
        let g = Window { n: 1, c: 2, h: 3, w: 3, kh: 2, kw: 2, stride: 1, pad: 0 };
        assert!(max_pool2d(&[0.0f64; 9], g).unwrap_err().to_string().contains("max_pool2d"));
        assert!(avg_pool2d_backward(&[0.0f64; 3], g).unwrap_err().to_string().contains("avg_pool2d_backward"));
    }
}
