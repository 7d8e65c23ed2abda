//! Layer-wise conditioning analysis (Huang et al., ECCV 2020, §3–4).

pub mod spectrum;

pub use spectrum::{Kronecker, Spectrum};
