//! What the fuzz targets share: a cap on any single allocation, a scratch
//! folder where each input becomes the file (or folder) kappa reads, the
//! verdict on a reader's error, and the small run whose checkpoints and
//! state dicts the targets load.

pub mod cap;
pub mod idx;
pub mod scratch;
pub mod tiny;
pub mod verdict;

#[global_allocator]
static ALLOCATOR: cap::Capped = cap::Capped;
