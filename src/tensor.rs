//! A tensor: a shape and a shared, immutable-by-default device buffer.
//!
//! Cloning a tensor shares the buffer (an `Arc`), which is how the tape keeps
//! what backward needs without copying; [`Tensor::buf_mut`] copies on write.

use crate::backend::{Backend, ChannelShape};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use std::sync::Arc;

pub struct Tensor<B: Backend> {
    shape: Vec<usize>,
    buf: Arc<B::Buf>,
}

impl<B: Backend> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Tensor { shape: self.shape.clone(), buf: Arc::clone(&self.buf) }
    }
}

impl<B: Backend> std::fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

impl<B: Backend> Tensor<B> {
    pub fn new(backend: &B, shape: &[usize], buf: B::Buf) -> Result<Self> {
        let n: usize = shape.iter().product();
        if backend.len(&buf) != n {
            return Err(Error::shape("tensor", format!("shape {shape:?} needs {n} elements, buffer has {}", backend.len(&buf))));
        }
        Ok(Tensor { shape: shape.to_vec(), buf: Arc::new(buf) })
    }

    /// From host values of any float type, converted to the backend's element type.
    pub fn from_f64s(backend: &B, shape: &[usize], data: impl IntoIterator<Item = f64>) -> Result<Self> {
        let host: Vec<B::Elem> = data.into_iter().map(B::Elem::from_f64).collect();
        Tensor::new(backend, shape, backend.upload_owned(host)?)
    }

    pub fn from_f32s(backend: &B, shape: &[usize], data: &[f32]) -> Result<Self> {
        Tensor::from_f64s(backend, shape, data.iter().map(|&v| v as f64))
    }

    pub fn full(backend: &B, shape: &[usize], value: f64) -> Result<Self> {
        Tensor::new(backend, shape, backend.full(shape.iter().product(), value)?)
    }

    pub fn zeros(backend: &B, shape: &[usize]) -> Result<Self> {
        Tensor::full(backend, shape, 0.0)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rows and columns when viewed as a matrix whose rows are the first axis.
    pub fn rows_cols(&self) -> (usize, usize) {
        let rows = self.shape.first().copied().unwrap_or(1);
        (rows, self.numel().checked_div(rows).unwrap_or(0))
    }

    /// The per-channel layout of a `[N, C, ...]` tensor: outer N, channels C,
    /// inner the product of the rest.
    pub fn channel_shape(&self) -> Result<ChannelShape> {
        match self.shape[..] {
            [outer, channels, ref rest @ ..] => Ok(ChannelShape { outer, channels, inner: rest.iter().product() }),
            _ => Err(Error::shape("channel op", format!("needs [N, C, ...], got {:?}", self.shape))),
        }
    }

    pub fn buf(&self) -> &B::Buf {
        &self.buf
    }

    /// Where the buffer lives: tensors that share one (clones, reshapes) give the same address.
    pub(crate) fn buffer_address(&self) -> usize {
        Arc::as_ptr(&self.buf) as *const () as usize
    }

    /// The buffer, copied only if another tensor shares it.
    pub fn into_buf(self) -> B::Buf {
        Arc::unwrap_or_clone(self.buf)
    }

    /// Mutable access, copying the buffer first if another tensor shares it.
    pub fn buf_mut(&mut self) -> &mut B::Buf {
        Arc::make_mut(&mut self.buf)
    }

    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.numel() {
            return Err(Error::shape("reshape", format!("{:?} to {shape:?}", self.shape)));
        }
        Ok(Tensor { shape: shape.to_vec(), buf: Arc::clone(&self.buf) })
    }

    /// The values on the host, widened to f64.
    pub fn to_f64s(&self, backend: &B) -> Result<Vec<f64>> {
        Ok(backend.download(&self.buf)?.into_iter().map(Scalar::to_f64).collect())
    }

    /// The single value of a one-element tensor.
    pub fn scalar(&self, backend: &B) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape("scalar", format!("tensor of shape {:?}", self.shape)));
        }
        Ok(self.to_f64s(backend)?[0])
    }
}
