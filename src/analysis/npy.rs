//! A minimal writer for NumPy's .npy format (version 1.0), for spectra.

use crate::error::{Error, Result};
use std::path::Path;

/// Writes a 1-D little-endian f64 array; `numpy.load` reads it back.
pub fn write_f64(path: &Path, values: &[f64]) -> Result<()> {
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}", values.len());
    // Magic (6) + version (2) + length (2) + header must be a multiple of 64, ending in '\n'.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut bytes = Vec::with_capacity(total + 8 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    values.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    std::fs::write(path, bytes).map_err(|e| Error::data(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_is_aligned_and_data_follows() {
        let path = std::env::temp_dir().join(format!("kappa-npy-{}.npy", std::process::id()));
        super::write_f64(&path, &[1.5, -2.0, 3.25]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert!(std::str::from_utf8(&bytes[10..10 + header_len]).unwrap().contains("'shape': (3,)"));
        let data = &bytes[10 + header_len..];
        assert_eq!(data.len(), 24);
        assert_eq!(f64::from_le_bytes(data[8..16].try_into().unwrap()), -2.0);
        std::fs::remove_file(path).unwrap();
    }
}
