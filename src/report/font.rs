//! The font every plot is drawn with, compiled in: plotters' `ab_glyph`
//! backend rasterises it directly, so rendering needs no system fonts or
//! fontconfig. DejaVu Sans covers the Greek and math symbols in the labels
//! (κ, λ, Σ, ∇, ‖); its licence is in `DejaVuSans-LICENSE.txt` beside it.

use crate::error::{Error, Result};
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

static DEJAVU_SANS: &[u8] = include_bytes!("DejaVuSans.ttf");

/// Makes "sans-serif" resolve to the embedded font; cheap after the first call.
pub fn register() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS).is_ok()) {
        Ok(())
    } else {
        Err(Error::data("src/report/DejaVuSans.ttf", "the embedded font is not a font ab_glyph can read"))
    }
}
