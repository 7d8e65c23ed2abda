//! Argument checks every backend makes alike, on buffer lengths, so each
//! device reports a shape error the same way.

use super::{ChannelShape, Window};
use crate::error::{Error, Result};

/// `x` must hold `s.len()` elements and each per-channel vector `s.channels`.
pub(crate) fn channels(op: &'static str, x_len: usize, s: ChannelShape, per_channel: impl IntoIterator<Item = usize>) -> Result<()> {
    if x_len != s.len() || per_channel.into_iter().any(|n| n != s.channels) {
        return Err(Error::shape(op, format!("{s:?} does not fit a buffer of {x_len}")));
    }
    Ok(())
}

/// One label per row, each below `classes`.
pub(crate) fn labels(labels: &[u32], rows: usize, classes: usize) -> Result<()> {
    if labels.len() != rows {
        return Err(Error::shape("softmax_xent", format!("{} labels for {rows} rows", labels.len())));
    }
    match labels.iter().find(|&&y| y as usize >= classes) {
        Some(y) => Err(Error::shape("softmax_xent", format!("label {y} out of range for {classes} classes"))),
        None => Ok(()),
    }
}

/// A conv's input, filter and output lengths for window `g`; returns `(oh, ow)`.
pub(crate) fn conv(op: &'static str, g: &Window, x_len: usize, w_len: usize, y_len: usize, c_out: usize) -> Result<(usize, usize)> {
    let (oh, ow) = g.out(op)?;
    let want = (g.n * g.image_len(), c_out * g.patch_len(), g.n * c_out * oh * ow);
    if (x_len, w_len, y_len) != want {
        return Err(Error::shape(
            op,
            format!(
                "{g:?} with {c_out} output channels needs input {}, filter {}, output {}; got {x_len}, {w_len}, {y_len}",
                want.0, want.1, want.2
            ),
        ));
    }
    Ok((oh, ow))
}

/// A pooling op's input and output lengths for window `g`; returns `(oh, ow)`.
pub(crate) fn pool(op: &'static str, g: &Window, x_len: usize, y_len: usize) -> Result<(usize, usize)> {
    let (oh, ow) = g.out(op)?;
    if x_len != g.n * g.image_len() || y_len != g.n * g.c * oh * ow {
        return Err(Error::shape(
            op,
            format!("{g:?} needs input {} and output {}; got {x_len}, {y_len}", g.n * g.image_len(), g.n * g.c * oh * ow),
        ));
    }
    Ok((oh, ow))
}
