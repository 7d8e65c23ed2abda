//! TensorBoard's event files, encoded by hand. The Rust crates for them are
//! unmaintained (tensorboard-rs, last released in 2022, drags in protobuf 2
//! and an image codec; syntaxdot-summary writes scalars only), and the part
//! of the format kappa needs is a few dozen lines:
//!
//! A file is a sequence of TFRecords, each
//! `u64 length | u32 masked CRC-32C of the length's 8 bytes | data | u32 masked CRC-32C of the data`,
//! little-endian, with mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8; the
//! mask keeps a CRC of data that itself holds CRCs from looking like one.
//!
//! Each record's data is a protobuf `Event` (tensorflow/core/util/event.proto):
//! 1 `wall_time` double, 2 `step` int64, 3 `file_version` string, 5 `summary`.
//! A `Summary` (tensorflow/core/framework/summary.proto) repeats field 1,
//! `Value`: 1 `tag`, 2 `simple_value` float (a scalar), 8 `tensor`, 9
//! `metadata`. Text is a `TensorProto` of dtype 7 (DT_STRING), an empty
//! (scalar) shape in field 2 and the UTF-8 bytes in `string_val` (field 8),
//! with metadata naming the plugin that shows it: `plugin_data` (1) →
//! `plugin_name` (1) = "text". The first event of a file carries
//! `file_version` "brain.Event:2", which readers look for.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table entry per byte value.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

pub fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| CRC32C_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

/// The CRC as TFRecord stores it.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const BYTES: u8 = 2;
const FIXED32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u8) {
    varint(out, field << 3 | wire as u64);
}

fn bytes(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    key(out, field, BYTES);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// An `Event` at `step` whose body (file_version or summary) `body` writes.
fn event(step: usize, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let wall_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let mut e = Vec::new();
    key(&mut e, 1, FIXED64);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut e, 2, VARINT);
    varint(&mut e, step as u64);
    body(&mut e);
    e
}

/// An event whose summary holds the one `Value` that `value` writes after its tag.
fn summary(step: usize, tag: &str, value: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    bytes(&mut v, 1, tag.as_bytes());
    value(&mut v);
    let mut s = Vec::new();
    bytes(&mut s, 1, &v);
    event(step, |e| bytes(e, 5, &s))
}

/// One event file, flushed on request so TensorBoard sees a running job.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new `DIR/events.out.tfevents.<seconds>.<host>.<pid>.<n>` (created
    /// with its directory; TensorBoard reads every file whose name holds
    /// `tfevents`), opened with the file-version event.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::data(dir, format!("cannot create the TensorBoard directory: {e}")))?;
        let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "localhost".into(), |h| h.trim().to_string());
        for n in 0.. {
            let path = dir.join(format!("events.out.tfevents.{seconds}.{host}.{}.{n}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let mut w = EventWriter { path, out: BufWriter::new(file) };
                    w.record(&event(0, |e| bytes(e, 3, b"brain.Event:2")))?;
                    w.flush()?;
                    return Ok(w);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::data(&path, format!("cannot create the event file: {e}"))),
            }
        }
        unreachable!("some file name is free")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut framed = Vec::with_capacity(data.len() + 16);
        framed.extend_from_slice(&len);
        framed.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        framed.extend_from_slice(data);
        framed.extend_from_slice(&masked_crc32c(data).to_le_bytes());
        self.out.write_all(&framed).map_err(|e| Error::data(&self.path, e.to_string()))
    }

    /// A scalar point; TensorBoard keeps scalars as f32.
    pub fn scalar(&mut self, tag: &str, step: usize, value: f64) -> Result<()> {
        self.record(&summary(step, tag, |v| {
            key(v, 2, FIXED32);
            v.extend_from_slice(&(value as f32).to_le_bytes());
        }))
    }

    /// A text entry (markdown), shown by TensorBoard's text dashboard.
    pub fn text(&mut self, tag: &str, step: usize, text: &str) -> Result<()> {
        self.record(&summary(step, tag, |v| {
            let mut tensor = Vec::new();
            key(&mut tensor, 1, VARINT);
            varint(&mut tensor, 7);
            bytes(&mut tensor, 2, &[]);
            bytes(&mut tensor, 8, text.as_bytes());
            bytes(v, 8, &tensor);
            let mut plugin = Vec::new();
            bytes(&mut plugin, 1, b"text");
            let mut metadata = Vec::new();
            bytes(&mut metadata, 1, &plugin);
            bytes(v, 9, &metadata);
        }))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::data(&self.path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // The CRC catalogue's check value, and RFC 3720's (iSCSI) test vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
    }

    #[test]
    fn varints_take_seven_bits_a_byte_low_first() {
        let enc = |v: u64| {
            let mut out = Vec::new();
            varint(&mut out, v);
            out
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(300), [0xAC, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }
}
