//! Reading logged numbers back. serde_json writes a NaN or an infinity as
//! `null`, and an older log may lack a field that a newer one writes, so a
//! float read from a run directory may be `null` or absent: either reads as
//! NaN, the value that stands for "not a number" in memory too.

use serde::{Deserialize, Deserializer};

/// A float that may be `null`; pair it with a `#[serde(default)]` giving NaN
/// for an absent one.
pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A float read back as known: `None` for the NaN that stands for `null` or absent.
pub fn known(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// The default of a float field a log lacks.
pub fn nan() -> f64 {
    f64::NAN
}
