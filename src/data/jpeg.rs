//! JPEG files to 8-bit RGB, whatever their colour space (greyscale and CMYK
//! files occur in ImageNet), with zune-jpeg.

use crate::error::{Error, Result};
use crate::files::read_file;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use zune_jpeg::errors::DecodeErrors;
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

/// The most pixels decoded per byte of file. Every 8×8 block costs at least
/// about a bit (its DC code; end-of-band runs can skip the rest), so the most
/// compressible file an encoder writes, a flat greyscale progressive one,
/// holds about 512 pixels per byte. Twice that is accepted; a header claiming
/// more (16384×16384 pixels in a few hundred bytes) is refused before the
/// decoder allocates its buffers.
const PIXELS_PER_BYTE: usize = 1024;

/// The decoder pads each side to whole MCUs, at most 32 pixels (sampling 4).
const MCU: usize = 32;

/// Refuses dimensions that `len` bytes of JPEG cannot honestly hold.
fn check_size(path: &Path, width: usize, height: usize, len: usize) -> Result<()> {
    let padded = width.next_multiple_of(MCU) * height.next_multiple_of(MCU);
    if padded > PIXELS_PER_BYTE.saturating_mul(len) {
        return Err(Error::data(
            path,
            format!("declares {width}×{height} pixels, more than a {len}-byte JPEG can hold (at most {PIXELS_PER_BYTE} per byte)"),
        ));
    }
    Ok(())
}

/// Runs a decoder step; its error, or a panic inside it, becomes an error
/// naming `path`, since a decoder bug on hostile bytes must cost one image,
/// not the run.
fn guarded<T>(path: &Path, step: impl FnOnce() -> std::result::Result<T, DecodeErrors>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(step))
        .map_err(|_| Error::data(path, "the JPEG decoder crashed on this file"))?
        .map_err(|e| Error::data(path, format!("not a decodable JPEG: {e:?}")))
}

/// Decodes a JPEG held in memory; `path` only names it in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Rgb8> {
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(bytes, options);
    guarded(path, || decoder.decode_headers())?;
    let info = decoder.info().ok_or_else(|| Error::data(path, "JPEG headers missing"))?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    check_size(path, width, height, bytes.len())?;
    let pixels = guarded(path, || decoder.decode())?;
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
    let bytes = read_file(path).map_err(|e| Error::data(path, format!("cannot read: {e}")))?;
    decode(path, &bytes)
}
