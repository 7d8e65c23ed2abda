//! Between device buffers and host tensors, in the backend's element type, so
//! a checkpoint holds exactly the values the run computed with.

use super::file::{Entry, Floats, HostTensor, Values};
use crate::backend::Backend;
use crate::error::Result;
use crate::scalar::Scalar;
use safetensors::Dtype;
use std::borrow::Cow;

/// The file dtype of the backend's element type (F32 or F64).
pub fn run_dtype<B: Backend>() -> Dtype {
    if std::mem::size_of::<B::Elem>() == 8 {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

/// A buffer's values on the host; f32 widened to f64 and back is exact.
/// Each conversion maps a type to one of its own size, so the collect
/// reuses the download's allocation: a checkpoint holds one host copy.
pub fn host_tensor<B: Backend>(backend: &B, shape: &[usize], buf: &B::Buf) -> Result<HostTensor> {
    let v = backend.download(buf)?;
    let values = match run_dtype::<B>() {
        Dtype::F64 => Values::F64(v.into_iter().map(Scalar::to_f64).collect()),
        _ => Values::F32(v.into_iter().map(|x| x.to_f64() as f32).collect()),
    };
    Ok(HostTensor { shape: shape.to_vec(), values })
}

/// A tensor as a checkpoint stores it: a buffer of the backend, brought to
/// the host only when it is read or written, one at a time; or a value made
/// on the host (an i64 count).
pub enum Stored<'a, B: Backend> {
    Device { backend: &'a B, shape: &'a [usize], buf: &'a B::Buf },
    Host(HostTensor),
}

impl<B: Backend> Entry for Stored<'_, B> {
    fn shape(&self) -> &[usize] {
        match self {
            Stored::Device { shape, .. } => shape,
            Stored::Host(t) => t.shape(),
        }
    }

    fn dtype(&self) -> Dtype {
        match self {
            Stored::Device { .. } => run_dtype::<B>(),
            Stored::Host(t) => t.dtype(),
        }
    }

    fn values(&self) -> Result<Cow<'_, Values>> {
        match self {
            Stored::Device { backend, shape, buf } => Ok(Cow::Owned(host_tensor(*backend, shape, buf)?.values)),
            Stored::Host(t) => t.values(),
        }
    }
}

/// Overwrites `buf` with `values`, read where they lie in their file and
/// rounded to the backend's type; their pages go back once read.
pub fn overwrite_from<B: Backend>(backend: &B, buf: &mut B::Buf, values: Floats) -> Result<()> {
    backend.overwrite(buf, &mut |start, chunk| values.read_into(start, chunk))
}
