//! The folder where inputs become files: one per process under the temp
//! directory (`scripts/fuzz` points TMPDIR at memory), reused by every input.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process's scratch folder, made on first use.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kappa-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make the scratch folder {}: {e}", dir.display()));
        dir
    })
}

/// Writes `bytes` to `name` (a path relative to [`dir`], folders made as
/// needed) and returns the file's path.
pub fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir().join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot make {}: {e}", parent.display()));
    }
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}
