//! JPEG files to 8-bit RGB, whatever their colour space (greyscale and CMYK
//! files occur in ImageNet), with zune-jpeg.

use crate::error::{Error, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// A decoded image: `height` rows of `width` RGB triples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Decodes a JPEG held in memory; `path` only names it in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Rgb8> {
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(bytes, options);
    // A decoder bug on hostile bytes must cost one image, not the run.
    let pixels = catch_unwind(AssertUnwindSafe(|| decoder.decode()))
        .map_err(|_| Error::data(path, "the JPEG decoder crashed on this file"))?
        .map_err(|e| Error::data(path, format!("not a decodable JPEG: {e:?}")))?;
    let info = decoder.info().ok_or_else(|| Error::data(path, "JPEG headers missing"))?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    let area = width * height;
    // zune-jpeg converts colour spaces to RGB but leaves greyscale as one channel.
    let pixels = match pixels.len() {
        n if n == 3 * area && area > 0 => pixels,
        n if n == area && area > 0 => pixels.iter().flat_map(|&v| [v; 3]).collect(),
        n => return Err(Error::data(path, format!("decoded {n} bytes for a {width}×{height} image, expected 1 or 3 channels"))),
    };
    Ok(Rgb8 { width, height, pixels })
}

/// Reads and decodes a JPEG file.
pub fn read(path: &Path) -> Result<Rgb8> {
    let bytes = std::fs::read(path).map_err(|e| Error::data(path, format!("cannot read: {e}")))?;
    decode(path, &bytes)
}
