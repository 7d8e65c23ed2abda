//! The CPU backend: rayon for data parallelism, the `gemm` crate for matrix
//! products. Generic over the element type, so `Cpu<f64>` runs the very same
//! code paths in double precision for gradient checks.

mod batch_norm;
mod channel;
mod conv;
mod covariance;
mod direct;
mod direct_data;
mod direct_filter;
mod eigen;
pub mod gemm;
mod gram;
pub mod lanes;
mod microkernel;
mod pair_copies;
pub mod parallel;
pub mod patch_gram;
pub mod peaks;
mod pool;
mod row_dots;
mod softmax;
mod transpose;
mod tridiagonal;
pub mod tridiagonalise;
mod update;
mod winograd;
mod winograd_lanes;

use super::{AdamHyper, Backend, BatchStats, ChannelShape, Device, Gemm, GramJob, SgdHyper, Window};
use crate::error::{Error, Result};
use crate::rng;
use crate::scalar::Scalar;
use std::marker::PhantomData;

/// The CPU device, computing in `T`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu<T>(PhantomData<T>);

impl<T> Cpu<T> {
    pub fn new() -> Self {
        Cpu(PhantomData)
    }
}

impl<T: Scalar> Cpu<T> {
    /// Every image's patch matrix, `[n, c·kh·kw, oh·ow]`, as the im2col
    /// convolutions unfold it: the twin of the device's im2col kernel.
    pub fn im2col(&self, x: &[T], g: Window) -> Result<Vec<T>> {
        conv::unfold(x, g)
    }

    /// The adjoint of [`Cpu::im2col`]: patch-matrix gradients summed onto the input grid.
    pub fn col2im(&self, cols: &[T], g: Window) -> Result<Vec<T>> {
        conv::fold(cols, g)
    }
}

#[inline(always)]
fn relu<T: Scalar>(v: T) -> T {
    if v > T::ZERO {
        v
    } else {
        T::ZERO
    }
}

fn same_len<T>(op: &'static str, a: &[T], b: &[T]) -> Result<()> {
    if a.len() == b.len() {
        Ok(())
    } else {
        Err(Error::shape(op, format!("lengths {} and {}", a.len(), b.len())))
    }
}

fn check_channels<T>(op: &'static str, x: &[T], s: ChannelShape, per_channel: &[&[T]]) -> Result<()> {
    super::checks::channels(op, x.len(), s, per_channel.iter().map(|p| p.len()))
}

impl<T: Scalar> Backend for Cpu<T> {
    type Elem = T;
    type Buf = Vec<T>;

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn len(&self, buf: &Vec<T>) -> usize {
        buf.len()
    }

    fn full(&self, len: usize, value: f64) -> Result<Vec<T>> {
        Ok(vec![T::from_f64(value); len])
    }

    fn upload(&self, host: &[T]) -> Result<Vec<T>> {
        Ok(host.to_vec())
    }

    fn upload_owned(&self, host: Vec<T>) -> Result<Vec<T>> {
        Ok(host)
    }

    fn download(&self, buf: &Vec<T>) -> Result<Vec<T>> {
        Ok(buf.clone())
    }

    fn overwrite(&self, buf: &mut Vec<T>, fill: &mut dyn FnMut(usize, &mut [T])) -> Result<()> {
        fill(0, buf);
        Ok(())
    }

    fn gemm(&self, a: &Vec<T>, b: &Vec<T>, c: &mut Vec<T>, g: Gemm) -> Result<()> {
        gemm::gemm(a, b, c, g)
    }

    fn matmul(&self, a: &Vec<T>, b: &Vec<T>, g: Gemm) -> Result<Vec<T>> {
        gemm::matmul(a, b, g)
    }

    fn add(&self, a: &Vec<T>, b: &Vec<T>) -> Result<Vec<T>> {
        same_len("add", a, b)?;
        Ok(parallel::zip(a, b, |x, y| x + y))
    }

    fn sub(&self, a: &Vec<T>, b: &Vec<T>) -> Result<Vec<T>> {
        same_len("sub", a, b)?;
        Ok(parallel::zip(a, b, |x, y| x - y))
    }

    fn mul(&self, a: &Vec<T>, b: &Vec<T>) -> Result<Vec<T>> {
        same_len("mul", a, b)?;
        Ok(parallel::zip(a, b, |x, y| x * y))
    }

    fn scale(&self, a: &Vec<T>, s: f64) -> Result<Vec<T>> {
        let s = T::from_f64(s);
        Ok(parallel::map(a, |x| x * s))
    }

    fn axpy(&self, y: &mut Vec<T>, alpha: f64, x: &Vec<T>) -> Result<()> {
        same_len("axpy", y, x)?;
        let alpha = T::from_f64(alpha);
        parallel::for_each_chunk(y, |start, ys| {
            let x = &x[start..start + ys.len()];
            for (y, &x) in ys.iter_mut().zip(x) {
                *y += alpha * x;
            }
        });
        Ok(())
    }

    fn relu(&self, x: &Vec<T>) -> Result<Vec<T>> {
        Ok(parallel::map(x, relu))
    }

    fn add_relu(&self, a: &Vec<T>, b: &Vec<T>) -> Result<Vec<T>> {
        same_len("add_relu", a, b)?;
        // One pass: the sum is never stored, saving a write and a read of it.
        Ok(parallel::zip(a, b, |x, y| relu(x + y)))
    }

    fn relu_backward(&self, grad: &Vec<T>, y: &Vec<T>) -> Result<Vec<T>> {
        same_len("relu_backward", grad, y)?;
        Ok(parallel::zip(grad, y, |g, y| if y > T::ZERO { g } else { T::ZERO }))
    }

    fn dropout_mask(&self, len: usize, p: f64, seed: u64, stream: u64) -> Result<Vec<T>> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::arg("dropout p", format!("{p} is not in [0, 1)")));
        }
        let keep = T::from_f64(1.0 / (1.0 - p));
        let mut out = vec![T::ZERO; len];
        parallel::for_each_chunk(&mut out, |start, o| {
            for (i, o) in o.iter_mut().enumerate() {
                let u = rng::unit_f64(rng::hash3(seed, stream, (start + i) as u64));
                *o = if u < p { T::ZERO } else { keep };
            }
        });
        Ok(out)
    }

    fn add_channel_bias(&self, x: &Vec<T>, bias: &Vec<T>, s: ChannelShape) -> Result<Vec<T>> {
        check_channels("add_channel_bias", x, s, &[bias])?;
        Ok(channel::add_bias(x, bias, s))
    }

    fn channel_sum(&self, x: &Vec<T>, s: ChannelShape) -> Result<Vec<T>> {
        check_channels("channel_sum", x, s, &[])?;
        Ok(channel::channel_sum(x, s))
    }

    fn batch_norm_train(
        &self,
        x: &Vec<T>,
        gamma: &Vec<T>,
        beta: &Vec<T>,
        s: ChannelShape,
        eps: f64,
    ) -> Result<(Vec<T>, BatchStats<Vec<T>>)> {
        check_channels("batch_norm", x, s, &[gamma, beta])?;
        Ok(batch_norm::batch_norm_train(x, gamma, beta, s, eps))
    }

    fn batch_norm_train_relu(
        &self,
        x: &Vec<T>,
        gamma: &Vec<T>,
        beta: &Vec<T>,
        z: Option<&Vec<T>>,
        s: ChannelShape,
        eps: f64,
    ) -> Result<(Vec<T>, BatchStats<Vec<T>>)> {
        check_channels("batch_norm", x, s, &[gamma, beta])?;
        if let Some(z) = z {
            same_len("batch_norm_train_relu", x, z)?;
        }
        Ok(batch_norm::batch_norm_train_relu(x, gamma, beta, z.map(|z| &z[..]), s, eps))
    }

    fn batch_norm_eval(
        &self,
        x: &Vec<T>,
        gamma: &Vec<T>,
        beta: &Vec<T>,
        mean: &Vec<T>,
        var: &Vec<T>,
        s: ChannelShape,
        eps: f64,
    ) -> Result<Vec<T>> {
        check_channels("batch_norm_eval", x, s, &[gamma, beta, mean, var])?;
        Ok(batch_norm::batch_norm_eval(x, gamma, beta, mean, var, s, eps))
    }

    fn batch_norm_backward(
        &self,
        dy: &Vec<T>,
        x: &Vec<T>,
        gamma: &Vec<T>,
        mean: &Vec<T>,
        inv_std: &Vec<T>,
        s: ChannelShape,
    ) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        check_channels("batch_norm_backward", x, s, &[gamma, mean, inv_std])?;
        same_len("batch_norm_backward", dy, x)?;
        Ok(batch_norm::batch_norm_backward(dy, x, gamma, mean, inv_std, s))
    }

    fn pad_channels(&self, x: &Vec<T>, s: ChannelShape, before: usize, after: usize) -> Result<Vec<T>> {
        check_channels("pad_channels", x, s, &[])?;
        Ok(channel::pad_channels(x, s, before, after))
    }

    fn narrow_channels(&self, x: &Vec<T>, s: ChannelShape, start: usize, len: usize) -> Result<Vec<T>> {
        check_channels("narrow_channels", x, s, &[])?;
        if start + len > s.channels {
            return Err(Error::shape("narrow_channels", format!("channels {start}..{} of {}", start + len, s.channels)));
        }
        Ok(channel::narrow_channels(x, s, start, len))
    }

    fn conv2d(&self, x: &Vec<T>, w: &Vec<T>, g: Window, c_out: usize) -> Result<Vec<T>> {
        conv::conv2d(x, w, g, c_out)
    }

    fn conv2d_backward_data(&self, dy: &Vec<T>, w: &Vec<T>, g: Window, c_out: usize) -> Result<Vec<T>> {
        conv::conv2d_backward_data(dy, w, g, c_out)
    }

    fn conv2d_backward_filter(&self, dy: &Vec<T>, x: &Vec<T>, g: Window, c_out: usize) -> Result<Vec<T>> {
        conv::conv2d_backward_filter(dy, x, g, c_out)
    }

    fn max_pool2d(&self, x: &Vec<T>, g: Window) -> Result<Vec<T>> {
        pool::max_pool2d(x, g)
    }

    fn max_pool2d_backward(&self, dy: &Vec<T>, x: &Vec<T>, y: &Vec<T>, g: Window) -> Result<Vec<T>> {
        pool::max_pool2d_backward(dy, x, y, g)
    }

    fn avg_pool2d(&self, x: &Vec<T>, g: Window) -> Result<Vec<T>> {
        pool::avg_pool2d(x, g)
    }

    fn avg_pool2d_backward(&self, dy: &Vec<T>, g: Window) -> Result<Vec<T>> {
        pool::avg_pool2d_backward(dy, g)
    }

    fn sum(&self, x: &Vec<T>) -> Result<f64> {
        Ok(parallel::sum_chunks(x.len(), |r| x[r].iter().map(|v| v.to_f64()).sum()))
    }

    fn dot(&self, a: &Vec<T>, b: &Vec<T>) -> Result<f64> {
        same_len("dot", a, b)?;
        Ok(parallel::sum_chunks(a.len(), |r| a[r.clone()].iter().zip(&b[r]).map(|(x, y)| x.to_f64() * y.to_f64()).sum()))
    }

    fn softmax_xent(&self, logits: &Vec<T>, labels: &[u32], classes: usize) -> Result<(Vec<T>, f64)> {
        if classes == 0 || !logits.len().is_multiple_of(classes) {
            return Err(Error::shape("softmax_xent", format!("{} logits for {classes} classes", logits.len())));
        }
        super::checks::labels(labels, logits.len() / classes, classes)?;
        Ok(softmax::softmax_xent(logits, labels, classes))
    }

    fn softmax_xent_backward(&self, probs: &Vec<T>, labels: &[u32], classes: usize, scale: f64) -> Result<Vec<T>> {
        super::checks::labels(labels, probs.len() / classes.max(1), classes)?;
        Ok(softmax::softmax_xent_backward(probs, labels, classes, scale))
    }

    fn gram_lower(&self, acc: &mut Vec<T>, x: &Vec<T>, rows: usize, cols: usize, alpha: f64) -> Result<()> {
        covariance::gram_lower(acc, x, rows, cols, alpha)
    }

    fn gram_lower_many(&self, jobs: &mut [GramJob<'_, Vec<T>>]) -> Result<()> {
        let jobs = jobs.iter_mut().map(|j| GramJob { acc: &mut j.acc[..], x: &j.x[..], rows: j.rows, cols: j.cols, alpha: j.alpha });
        covariance::gram_lower_many(jobs.collect())
    }

    fn gram_lower_patches(&self, acc: &mut Vec<T>, x: &Vec<T>, g: Window, alpha: f64) -> Result<()> {
        covariance::gram_lower_patches(acc, x, g, alpha)
    }

    fn eigvalsh(&self, mats: &[(&Vec<T>, usize)]) -> Result<Vec<Vec<f64>>> {
        eigen::eigvalsh(mats)
    }

    fn count_positive(&self, x: &Vec<T>, rows: usize, cols: usize) -> Result<Vec<u32>> {
        covariance::count_positive(x, rows, cols)
    }

    fn sample_labels(&self, logits: &Vec<T>, classes: usize, seed: u64, stream: u64) -> Result<Vec<u32>> {
        softmax::sample_labels(logits, classes, seed, stream)
    }

    fn sgd_step(&self, param: &mut Vec<T>, grad: &Vec<T>, velocity: &mut Vec<T>, h: &SgdHyper) -> Result<()> {
        same_len("sgd_step", param, grad)?;
        same_len("sgd_step", param, velocity)?;
        update::sgd(param, grad, velocity, h);
        Ok(())
    }

    fn adam_step(&self, param: &mut Vec<T>, grad: &Vec<T>, m: &mut Vec<T>, v: &mut Vec<T>, h: &AdamHyper) -> Result<()> {
        same_len("adam_step", param, grad)?;
        same_len("adam_step", param, m)?;
        same_len("adam_step", param, v)?;
        update::adam(param, grad, m, v, h);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values the caller is done with become the buffer as they are: a
    /// model's weights, drawn on the host, are never copied to be uploaded.
    #[test]
    fn upload_owned_keeps_the_allocation() {
        let host: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let at = host.as_ptr();
        let buf = Cpu::<f32>::new().upload_owned(host).unwrap();
        assert_eq!((buf.as_ptr(), buf.len(), buf[999]), (at, 1000, 999.0));
    }
}
