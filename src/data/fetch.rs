//! Downloads dataset files from mirrors, verified by SHA-256.
//!
//! A download streams into `dir/.<file>.part` while it is hashed, and only a
//! verified file is renamed into place (atomically, on one file system). So an
//! interrupted or corrupt download never leaves a file under the real name,
//! and a file already there is replaced only by a verified one.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One file of a dataset and what it must hash to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    pub file: &'static str,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: &'static str,
    /// Size in bytes; downloads are cut off past it.
    pub bytes: u64,
}

/// The four canonical gzip-compressed MNIST IDX files.
pub const MNIST: &[Remote] = &[
    Remote {
        file: "train-images-idx3-ubyte.gz",
        sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        bytes: 9_912_422,
    },
    Remote {
        file: "train-labels-idx1-ubyte.gz",
        sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        bytes: 28_881,
    },
    Remote {
        file: "t10k-images-idx3-ubyte.gz",
        sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        bytes: 1_648_877,
    },
    Remote { file: "t10k-labels-idx1-ubyte.gz", sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", bytes: 4_542 },
];

/// Mirrors of MNIST, tried in order (yann.lecun.com no longer serves it).
pub const MNIST_MIRRORS: &[&str] =
    &["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"];

/// [`MNIST_MIRRORS`] as owned strings, the form [`fetch`] takes.
pub fn default_mirrors() -> Vec<String> {
    MNIST_MIRRORS.iter().map(|m| m.to_string()).collect()
}

/// The files of a downloadable dataset.
pub fn dataset_files(name: &str) -> Result<&'static [Remote]> {
    match name {
        "mnist" => Ok(MNIST),
        other => Err(Error::arg("DATASET", format!("cannot fetch `{other}`; downloadable datasets: mnist"))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::data(path, format!("cannot open: {e}")))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| Error::data(path, format!("cannot read: {e}")))?;
    Ok(hex(&hasher.finalize()))
}

/// Why one mirror failed: the network or server (try the next mirror) or the
/// local disk (no mirror can help).
enum Failure {
    Remote(String),
    Local(Error),
}

/// Downloads every file of `files` into `dir` (created if missing), trying
/// `mirrors` in order, and returns the files' paths.
///
/// Files already present with the right SHA-256 are kept and not downloaded.
/// `progress(file, bytes_so_far, total)` is called as data arrives (and once,
/// complete, for a file already present); `total` is the server's
/// Content-Length, else the manifest's size.
pub fn fetch(files: &[Remote], mirrors: &[String], dir: &Path, mut progress: impl FnMut(&str, u64, Option<u64>)) -> Result<Vec<PathBuf>> {
    if mirrors.is_empty() {
        return Err(Error::arg("--mirror", "no mirror to download from"));
    }
    fs::create_dir_all(dir).map_err(|e| Error::data(dir, format!("cannot create directory: {e}")))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    files.iter().map(|remote| fetch_one(&agent, remote, mirrors, dir, &mut progress)).collect()
}

fn fetch_one(
    agent: &ureq::Agent,
    remote: &Remote,
    mirrors: &[String],
    dir: &Path,
    progress: &mut impl FnMut(&str, u64, Option<u64>),
) -> Result<PathBuf> {
    let target = dir.join(remote.file);
    let expected = remote.sha256.to_ascii_lowercase();
    if target.is_file() && sha256_file(&target)? == expected {
        progress(remote.file, remote.bytes, Some(remote.bytes));
        return Ok(target);
    }
    let part = dir.join(format!(".{}.part", remote.file));
    let mut failures = Vec::new();
    for mirror in mirrors {
        let url = format!("{}/{}", mirror.trim_end_matches('/'), remote.file);
        match download(agent, &url, remote, &part, progress) {
            Ok(actual) if actual == expected => {
                return fs::rename(&part, &target).map(|()| target.clone()).map_err(|e| {
                    let _ = fs::remove_file(&part);
                    Error::data(&target, format!("cannot move the verified download into place: {e}"))
                });
            }
            Ok(actual) => failures.push(format!("{url}: sha256 mismatch (expected {expected}, actual {actual})")),
            Err(Failure::Remote(why)) => failures.push(why),
            Err(Failure::Local(err)) => {
                let _ = fs::remove_file(&part);
                return Err(err);
            }
        }
        // Best effort: the part file does not exist if the request itself failed.
        let _ = fs::remove_file(&part);
    }
    Err(Error::data(&target, format!("download failed from every mirror: {}", failures.join("; "))))
}

/// Streams `url` into `part`, hashing as it goes; returns the hex digest.
fn download(
    agent: &ureq::Agent,
    url: &str,
    remote: &Remote,
    part: &Path,
    progress: &mut impl FnMut(&str, u64, Option<u64>),
) -> std::result::Result<String, Failure> {
    // Ask for the bytes as stored: a transparently decompressed .gz would not verify.
    let mut response = agent.get(url).header("Accept-Encoding", "identity").call().map_err(|e| Failure::Remote(format!("{url}: {e}")))?;
    let body = response.body_mut();
    let total = body.content_length().or(Some(remote.bytes));
    // One byte past the expected size is enough to fail the checksum, and
    // stops a misbehaving server from filling the disk.
    let mut reader = body.as_reader().take(remote.bytes.saturating_add(1));
    let local = |e: io::Error| Failure::Local(Error::data(part, format!("cannot write: {e}")));
    let mut out = File::create(part).map_err(local)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut so_far = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Remote(format!("{url}: {e}"))),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(local)?;
        so_far += n as u64;
        progress(remote.file, so_far, total);
    }
    out.sync_all().map_err(local)?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_input() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(hex(&Sha256::digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn manifest_lookup() {
        assert_eq!(dataset_files("mnist").unwrap().len(), 4);
        let err = dataset_files("cifar10").unwrap_err().to_string();
        assert!(err.contains("cifar10") && err.contains("mnist"), "{err}");
    }
}
