//! safetensors files: an 8-byte little-endian header length, a JSON header
//! (each tensor's dtype, shape and byte range, and a `__metadata__` map of
//! strings), then the raw little-endian data. Written atomically, so a crash
//! mid-write leaves the previous file whole.

use crate::error::{Error, Result};
use crate::files::{not_a_file, write_atomic_with};
use crate::scalar::Scalar;
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One tensor's values in the file's element type.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
}

impl Values {
    pub fn dtype(&self) -> Dtype {
        match self {
            Values::F16(_) => Dtype::F16,
            Values::BF16(_) => Dtype::BF16,
            Values::F32(_) => Dtype::F32,
            Values::F64(_) => Dtype::F64,
            Values::I64(_) => Dtype::I64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Values::F16(v) => v.len(),
            Values::BF16(v) => v.len(),
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many values are NaN or infinite (none of an integer tensor).
    pub fn non_finite(&self) -> usize {
        match self {
            Values::F16(v) => v.iter().filter(|x| !x.is_finite()).count(),
            Values::BF16(v) => v.iter().filter(|x| !x.is_finite()).count(),
            Values::F32(v) => v.iter().filter(|x| !x.is_finite()).count(),
            Values::F64(v) => v.iter().filter(|x| !x.is_finite()).count(),
            Values::I64(_) => 0,
        }
    }

    /// Floating-point values widened (exactly) to f64; `None` for integers.
    pub fn to_f64s(&self) -> Option<Vec<f64>> {
        self.iter_f64().map(Iterator::collect)
    }

    /// [`Values::to_f64s`] one value at a time, so a caller converting them
    /// onward never holds a widened copy of them all.
    pub fn iter_f64(&self) -> Option<Box<dyn Iterator<Item = f64> + '_>> {
        match self {
            Values::F16(v) => Some(Box::new(v.iter().map(|x| x.to_f64()))),
            Values::BF16(v) => Some(Box::new(v.iter().map(|x| x.to_f64()))),
            Values::F32(v) => Some(Box::new(v.iter().map(|&x| x as f64))),
            Values::F64(v) => Some(Box::new(v.iter().copied())),
            Values::I64(_) => None,
        }
    }

    /// Writes the values little-endian, 8192 at a time, so no copy of them
    /// all as bytes is ever made.
    fn write_le(&self, out: &mut dyn Write) -> std::io::Result<()> {
        fn chunked<T, const N: usize>(v: &[T], le: fn(&T) -> [u8; N], out: &mut dyn Write) -> std::io::Result<()> {
            v.chunks(8192).try_for_each(|chunk| out.write_all(&chunk.iter().flat_map(le).collect::<Vec<u8>>()))
        }
        match self {
            Values::F16(v) => chunked(v, |x| x.to_le_bytes(), out),
            Values::BF16(v) => chunked(v, |x| x.to_le_bytes(), out),
            Values::F32(v) => chunked(v, |x| x.to_le_bytes(), out),
            Values::F64(v) => chunked(v, |x| x.to_le_bytes(), out),
            Values::I64(v) => chunked(v, |x| x.to_le_bytes(), out),
        }
    }

    fn from_le_bytes(dtype: Dtype, bytes: &[u8]) -> Option<Self> {
        fn le<const N: usize>(chunk: &[u8]) -> [u8; N] {
            let mut a = [0; N];
            a.copy_from_slice(chunk);
            a
        }
        Some(match dtype {
            Dtype::F16 => Values::F16(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes(le(c))).collect()),
            Dtype::BF16 => Values::BF16(bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes(le(c))).collect()),
            Dtype::F32 => Values::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(le(c))).collect()),
            Dtype::F64 => Values::F64(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(le(c))).collect()),
            Dtype::I64 => Values::I64(bytes.chunks_exact(8).map(|c| i64::from_le_bytes(le(c))).collect()),
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Values,
}

/// A tensor a file is written from: its shape and dtype up front, for the
/// header, and its values only when the writer comes to it, so a file can be
/// written from tensors that are not all on the host at once.
pub trait Entry {
    fn shape(&self) -> &[usize];
    fn dtype(&self) -> Dtype;
    fn values(&self) -> Result<Cow<'_, Values>>;
}

impl Entry for HostTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn dtype(&self) -> Dtype {
        self.values.dtype()
    }

    fn values(&self) -> Result<Cow<'_, Values>> {
        Ok(Cow::Borrowed(&self.values))
    }
}

/// A safetensors file's tensors by name and its `__metadata__`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, HostTensor>,
    pub metadata: BTreeMap<String, String>,
}

/// The first name a safetensors header gives twice. JSON allows it, and
/// both serde_json's map and the crate's keep one of the two entries, so
/// the other's tensor would vanish or its bytes read as a gap. `None` where
/// the header is not a JSON object of that shape: the crate says why.
fn repeated_name(bytes: &[u8]) -> Option<String> {
    struct FirstRepeat(Option<String>);
    impl<'de> serde::Deserialize<'de> for FirstRepeat {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Keys;
            impl<'de> serde::de::Visitor<'de> for Keys {
                type Value = FirstRepeat;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> std::result::Result<FirstRepeat, M::Error> {
                    let mut seen = std::collections::HashSet::new();
                    while let Some(name) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        if !seen.insert(name.clone()) {
                            return Ok(FirstRepeat(Some(name)));
                        }
                    }
                    Ok(FirstRepeat(None))
                }
            }
            d.deserialize_map(Keys)
        }
    }
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    serde_json::from_slice::<FirstRepeat>(bytes.get(8..8usize.checked_add(len)?)?).ok()?.0
}

/// What is wrong with a safetensors header the crate refused, said with
/// the tensor's name where the crate's own message names none: the first
/// tensor whose bytes do not follow the previous tensor's (the format lays
/// them back to back), else the first whose shape and dtype disagree with
/// the bytes its `data_offsets` span, else data that ends elsewhere than
/// the last tensor. `None` if the header does not parse
/// as JSON or none of these is wrong.
fn header_problem(bytes: &[u8]) -> Option<String> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let data = bytes.len().checked_sub(8usize.checked_add(len)?)? as u64;
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..8 + len)?).ok()?;
    let tensors: Vec<(&String, &serde_json::Value)> = header.as_object()?.iter().filter(|(name, _)| *name != "__metadata__").collect();
    let offsets = |info: &serde_json::Value| -> Option<(u64, u64)> {
        let pair: Vec<u64> = info["data_offsets"].as_array()?.iter().map(serde_json::Value::as_u64).collect::<Option<_>>()?;
        Some((*pair.first()?, *pair.get(1)?))
    };
    // The crate's order: where each tensor's bytes lie, then how many it needs, then the file's end.
    let mut spans: Vec<(u64, u64, &String)> = tensors.iter().filter_map(|&(name, info)| offsets(info).map(|(s, e)| (s, e, name))).collect();
    spans.sort();
    let mut end = 0;
    for (start, stop, name) in spans {
        if start != end {
            let why = if start < end { "overlapping the tensor before it" } else { "leaving a gap after the tensor before it" };
            return Some(format!(
                "tensor {}'s data starts at byte {start}, {why}, which ends at {end}; expected the tensors back to back",
                name.escape_debug()
            ));
        }
        end = stop;
    }
    let misfit = tensors.iter().find_map(|&(name, info)| {
        let dtype = info["dtype"].as_str()?;
        let width: u64 = match dtype {
            "F16" | "BF16" => 2,
            "F32" => 4,
            "F64" | "I64" => 8,
            _ => return None,
        };
        let shape: Vec<u64> = info["shape"].as_array()?.iter().map(serde_json::Value::as_u64).collect::<Option<_>>()?;
        let (start, end) = offsets(info)?;
        let spanned = end.checked_sub(start)?;
        let needed = shape.iter().try_fold(width, |n, &d| n.checked_mul(d));
        (needed != Some(spanned)).then(|| {
            let needed = needed.map_or("more bytes than a u64 counts".into(), |n| format!("{n} bytes"));
            format!("tensor {} of shape {shape:?} in {dtype} needs {needed}, but its data_offsets span {spanned}", name.escape_debug())
        })
    });
    misfit.or_else(|| {
        (end != data).then(|| format!("the tensors' data ends at byte {end}, but the file holds {data} bytes after its header"))
    })
}

impl TensorFile {
    /// Every tensor of the file at `path`, parsed ([`MappedFile`] for one at a time).
    pub fn read(path: &Path) -> Result<Self> {
        let mut file = MappedFile::open(path)?;
        let mut tensors = BTreeMap::new();
        while let Some((name, tensor)) = file.take_first() {
            tensors.insert(name, tensor?);
        }
        Ok(TensorFile { tensors, metadata: file.metadata })
    }

    /// The file's bytes, as [`TensorFile::write`] writes them.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        write_to(&mut bytes, &self.metadata, &self.tensors).map_err(|e| Error::shape("safetensors", e.to_string()))?;
        Ok(bytes)
    }

    /// Writes the file atomically (see [`write`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        write(path, &self.metadata, &self.tensors)
    }
}

/// A safetensors file memory-mapped, its header checked when opened and
/// each tensor parsed only when taken, its pages then handed back: a reader
/// that goes a tensor at a time never holds the file's values all at once.
pub struct MappedFile {
    path: PathBuf,
    map: memmap2::Mmap,
    pub metadata: BTreeMap<String, String>,
    /// The tensors not yet taken.
    entries: BTreeMap<String, Place>,
}

impl MappedFile {
    pub fn open(path: &Path) -> Result<Self> {
        let cannot = |e: std::io::Error| Error::data(path, format!("cannot read: {e}"));
        if let Some(problem) = not_a_file(path) {
            return Err(cannot(std::io::Error::new(std::io::ErrorKind::InvalidInput, problem)));
        }
        let file = std::fs::File::open(path).map_err(cannot)?;
        // SAFETY: the map is read-only. Another process truncating the file
        // while it is mapped could fault, which no reader of a shared file
        // can prevent; kappa replaces its checkpoints by renaming, never in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(cannot)?;
        let (metadata, entries) = header(&map).map_err(|detail| Error::data(path, detail))?;
        Ok(MappedFile { path: path.to_path_buf(), map, metadata, entries })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensors not yet taken, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|(_, shape, _)| &shape[..])
    }

    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.entries.get(name).map(|(dtype, _, _)| *dtype)
    }

    /// Tensor `name`'s float values, read where they lie in the map
    /// ([`Floats`]); `None` if the file has no such tensor (or it was taken
    /// already), an error naming the file if its values are not floating point.
    pub fn floats(&self, name: &str) -> Option<Result<Floats<'_>>> {
        let (dtype, _, bytes) = self.entries.get(name)?;
        Some(match dtype {
            Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64 => Ok(Floats { map: &self.map, dtype: *dtype, bytes: bytes.clone() }),
            _ => Err(Error::data(
                &self.path,
                format!("{} is {dtype}; expected floating-point values (F16, BF16, F32 or F64)", name.escape_debug()),
            )),
        })
    }

    /// Forgets tensor `name`, as if it were taken: read through [`MappedFile::floats`].
    pub fn forget(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// Tensor `name`'s values, parsed from the map, whose pages under them
    /// then go back to the kernel; `None` if the file has no such tensor
    /// (or it was taken already).
    pub fn take(&mut self, name: &str) -> Option<Result<HostTensor>> {
        let entry = self.entries.remove(name)?;
        Some(self.parse(name, entry))
    }

    /// [`MappedFile::take`] of the first tensor left, by name.
    pub fn take_first(&mut self) -> Option<(String, Result<HostTensor>)> {
        let (name, entry) = self.entries.pop_first()?;
        let tensor = self.parse(&name, entry);
        Some((name, tensor))
    }

    fn parse(&self, name: &str, (dtype, shape, bytes): Place) -> Result<HostTensor> {
        let values = Values::from_le_bytes(dtype, &self.map[bytes.clone()]).ok_or_else(|| {
            Error::data(&self.path, format!("tensor {} is {dtype}; kappa reads F16, BF16, F32, F64 and I64 tensors", name.escape_debug()))
        });
        release(&self.map, bytes);
        Ok(HostTensor { shape, values: values? })
    }
}

/// A float tensor's values where they lie in a [`MappedFile`], read in
/// place: a loader writes them straight into its own buffers, so no host
/// copy of the tensor is made. Its pages go back to the kernel when it is
/// dropped, as a taken tensor's do.
pub struct Floats<'a> {
    map: &'a memmap2::Mmap,
    dtype: Dtype,
    bytes: Range<usize>,
}

impl Floats<'_> {
    /// How many values are NaN or infinite, and how many more turn infinite
    /// rounded to `T` (an f64 past f32's range).
    pub fn unfit<T: Scalar>(&self) -> (usize, usize) {
        let (mut non_finite, mut overflowed) = (0, 0);
        self.each(0..self.len(), |v| {
            non_finite += usize::from(!v.is_finite());
            overflowed += usize::from(v.is_finite() && !T::from_f64(v).to_f64().is_finite());
        });
        (non_finite, overflowed)
    }

    /// Values `start..start + out.len()`, rounded to `T`, into `out`.
    pub fn read_into<T: Scalar>(&self, start: usize, out: &mut [T]) {
        let mut i = 0;
        self.each(start..start + out.len(), |v| {
            out[i] = T::from_f64(v);
            i += 1;
        });
    }

    fn len(&self) -> usize {
        self.bytes.len() / (self.dtype.bitsize() / 8)
    }

    /// `f` of values `range`, widened (exactly) to f64, in order: the dtype
    /// is matched once, not per value.
    fn each(&self, range: Range<usize>, mut f: impl FnMut(f64)) {
        let width = self.dtype.bitsize() / 8;
        let bytes = &self.map[self.bytes.start + range.start * width..self.bytes.start + range.end * width];
        fn le<const N: usize>(c: &[u8]) -> [u8; N] {
            c.try_into().expect("chunks of N bytes")
        }
        match self.dtype {
            Dtype::F16 => bytes.chunks_exact(2).for_each(|c| f(half::f16::from_le_bytes(le(c)).to_f64())),
            Dtype::BF16 => bytes.chunks_exact(2).for_each(|c| f(half::bf16::from_le_bytes(le(c)).to_f64())),
            Dtype::F32 => bytes.chunks_exact(4).for_each(|c| f(f32::from_le_bytes(le(c)) as f64)),
            _ => bytes.chunks_exact(8).for_each(|c| f(f64::from_le_bytes(le(c)))),
        }
    }
}

impl Drop for Floats<'_> {
    fn drop(&mut self) {
        release(self.map, self.bytes.clone());
    }
}

/// Hands the pages under `bytes` of `map` back to the kernel, so a tensor's
/// bytes leave the process's memory once its values are parsed.
fn release(map: &memmap2::Mmap, bytes: Range<usize>) {
    #[cfg(unix)]
    // SAFETY: the map is read-only and backed by the file, so dropping its
    // pages changes nothing it reads: a later read maps the file's bytes in
    // again. Failing, the pages only stay resident.
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, bytes.start, bytes.len()) };
}

/// Where a tensor lies in a mapped file: its dtype, shape and bytes.
type Place = (Dtype, Vec<usize>, Range<usize>);

/// A file's metadata, and each tensor's place by name.
type Header = (BTreeMap<String, String>, BTreeMap<String, Place>);

/// The header of a safetensors file's bytes, checked as the crate checks
/// it, with kappa's own words for what it finds wrong.
fn header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let not_safetensors = |e: safetensors::SafeTensorError| {
        // The crate's messages quote tensor names from the file, which may hold newlines.
        let detail = e.to_string();
        format!("not a safetensors file (8-byte little-endian header length, JSON header, tensor data): {}", detail.escape_debug())
    };
    if let Some(name) = repeated_name(bytes) {
        return Err(format!("the header names tensor {} twice; expected each name once", name.escape_debug()));
    }
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| header_problem(bytes).unwrap_or_else(|| not_safetensors(e)))?;
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let st = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
    let entries = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
            (name, (view.dtype(), view.shape().to_vec(), start..start + view.data().len()))
        })
        .collect();
    Ok((metadata, entries))
}

/// Writes `tensors` and `metadata` as a safetensors file, atomically (see
/// [`write_atomic_with`]) and a tensor at a time (see [`write_to`]).
pub fn write<E: Entry>(path: &Path, metadata: &BTreeMap<String, String>, tensors: &BTreeMap<String, E>) -> Result<()> {
    write_atomic_with(path, |out| write_to(out, metadata, tensors))
}

/// The header (padded with spaces to 8 bytes, as the crate pads its own),
/// then each tensor's bytes, fetched one tensor at a time. So writing holds
/// one tensor's values beyond what the caller holds, never the whole file.
/// Widest dtype first, then by name, as the crate lays them out: each
/// value then starts at a multiple of its width, which readers that map
/// the file in place need.
fn write_to<E: Entry>(out: &mut dyn Write, metadata: &BTreeMap<String, String>, tensors: &BTreeMap<String, E>) -> std::io::Result<()> {
    let mut order: Vec<(&String, &E)> = tensors.iter().collect();
    order.sort_by_key(|(name, t)| (std::cmp::Reverse(t.dtype().bitsize()), *name));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut offset = 0usize;
    for (name, t) in &order {
        let end = offset + t.shape().iter().product::<usize>() * t.dtype().bitsize() / 8;
        header.insert((*name).clone(), serde_json::json!({ "dtype": t.dtype(), "shape": t.shape(), "data_offsets": [offset, end] }));
        offset = end;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    text.extend(std::iter::repeat_n(' ', text.len().next_multiple_of(8) - text.len()));
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())?;
    for (name, t) in order {
        let values = t.values().map_err(std::io::Error::other)?;
        if values.len() != t.shape().iter().product::<usize>() || values.dtype() != t.dtype() {
            let detail =
                format!("tensor {name} of shape {:?} in {} came as {} values in {}", t.shape(), t.dtype(), values.len(), values.dtype());
            return Err(std::io::Error::other(detail));
        }
        values.write_le(out)?;
    }
    Ok(())
}
