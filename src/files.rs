//! Small file utilities shared by the layers that read the files a user names
//! and write run directories.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// What is wrong with `path` as a file to read, when it exists but is not a
/// regular file; `None` when it is one or does not exist.
pub fn not_a_file(path: &Path) -> Option<&'static str> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        Some("is a directory, not a file")
    } else if !meta.is_file() {
        Some("is not a regular file but a device, pipe or socket")
    } else {
        None
    }
}

/// `std::fs::read` for a path a user names: a device such as `/dev/zero` is
/// refused rather than read until memory runs out, and a pipe rather than
/// waited on.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    if let Some(problem) = not_a_file(path) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, problem));
    }
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `NAME.tmp` next to `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to [`tmp_path`], flushes it to disk and renames it over
/// `path`, so `path` holds either its old contents or the new ones, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// [`write_atomic`] of what `write` writes, through a buffer: for a file
/// written in parts that are never all in memory at once.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    let written = File::create(&tmp).and_then(|f| {
        let mut out = BufWriter::with_capacity(1 << 20, f);
        write(&mut out)?;
        out.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()
    });
    if let Err(e) = written {
        // Best effort: a half-written temporary is of no use to anyone.
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::data(&tmp, format!("cannot write ({e}); {} is left as it was", path.display())));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::data(path, format!("cannot replace it with {}: {e}", tmp.display())))?;
    // The rename itself survives a crash only once the directory is on disk.
    #[cfg(unix)]
    {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::data(dir, format!("cannot sync the directory: {e}")))?;
    }
    Ok(())
}
