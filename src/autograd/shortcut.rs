//! The parameter-free type-A shortcut of the CIFAR ResNets: subsample by the
//! stride, then pad the channels with zeros to the branch's width.

use super::tape::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    /// `[N, C, ...]` → `[N, before + C + after, ...]`, the new channels zero.
    pub fn pad_channels(&mut self, x: Var, before: usize, after: usize) -> Result<Var> {
        let s = self.value(x).channel_shape()?;
        let be = self.backend().clone();
        let mut shape = self.shape(x).to_vec();
        shape[1] = before + s.channels + after;
        let y = Tensor::new(&be, &shape, be.pad_channels(self.value(x).buf(), s, before, after)?)?;
        let x_shape = self.shape(x).to_vec();
        let wide = crate::backend::ChannelShape { channels: shape[1], ..s };
        Ok(self.push(
            y,
            vec![x],
            Box::new(move |be, dy| Ok(vec![Some(Tensor::new(be, &x_shape, be.narrow_channels(dy.buf(), wide, before, s.channels)?)?)])),
        ))
    }

    /// Option A of He et al.: `x[:, :, ::stride, ::stride]` with `(out − C)/2`
    /// zero channels on each side (PyTorch CIFAR ResNets' `planes // 4` padding).
    pub fn shortcut_a(&mut self, x: Var, stride: usize, out_channels: usize) -> Result<Var> {
        let c = self.value(x).channel_shape()?.channels;
        if out_channels < c || !(out_channels - c).is_multiple_of(2) {
            return Err(Error::shape("shortcut_a", format!("cannot pad {c} channels evenly to {out_channels}")));
        }
        let sub = if stride == 1 { x } else { self.avg_pool2d(x, 1, stride, 0)? };
        let side = (out_channels - c) / 2;
        if side == 0 {
            return Ok(sub);
        }
        self.pad_channels(sub, side, side)
    }
}
