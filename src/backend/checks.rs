//! Argument checks every backend makes alike, on buffer lengths, so each
//! device reports a shape error the same way.

use super::ChannelShape;
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
