//! Downloads dataset files from mirrors, verified by SHA-256.
//!
//! A download streams into `dir/.<file>.part` while it is hashed, and only a
//! verified file is renamed into place (atomically, on one file system). So an
//! interrupted or corrupt download never leaves a file under the real name,
//! and a file already there is replaced only by a verified one. A tarball
//! (CIFAR) is extracted the same way: into `dir/.<folder>.part`, checked, then
//! renamed to `dir/<folder>`.

use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
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

/// A tarball of which only the listed members are extracted, into `dir/<folder>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Archive {
    pub remote: Remote,
    /// The folder holding the members inside the tarball, kept on extraction.
    pub folder: &'static str,
    /// Member file names and their sizes in bytes.
    pub members: &'static [(&'static str, u64)],
}

/// The CIFAR binary tarballs, as published by their authors. The SHA-256 sums
/// are TensorFlow Datasets' (`url_checksums/cifar10.txt`, `cifar100.txt`);
/// the authors publish MD5s, c32a1d4ab5d03f1284b67883e8d87530 and
/// 03b5dce01913d631647c71ecec9e9cb8. Member sizes are records × record size.
pub const CIFAR10: Archive = Archive {
    remote: Remote {
        file: "cifar-10-binary.tar.gz",
        sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        bytes: 170_052_171,
    },
    folder: "cifar-10-batches-bin",
    members: &[
        ("data_batch_1.bin", 30_730_000),
        ("data_batch_2.bin", 30_730_000),
        ("data_batch_3.bin", 30_730_000),
        ("data_batch_4.bin", 30_730_000),
        ("data_batch_5.bin", 30_730_000),
        ("test_batch.bin", 30_730_000),
    ],
};

pub const CIFAR100: Archive = Archive {
    remote: Remote {
        file: "cifar-100-binary.tar.gz",
        sha256: "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
        bytes: 168_513_733,
    },
    folder: "cifar-100-binary",
    members: &[("train.bin", 153_700_000), ("test.bin", 30_740_000)],
};

/// Where CIFAR is published.
pub const CIFAR_MIRRORS: &[&str] = &["https://www.cs.toronto.edu/~kriz/"];

/// What a dataset's download consists of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Download {
    /// Files kept as downloaded.
    Files(&'static [Remote]),
    /// One tarball, extracted.
    Archive(&'static Archive),
}

/// A downloadable dataset: its files and where to get them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub download: Download,
    pub mirrors: &'static [&'static str],
}

impl Manifest {
    /// The dataset's mirrors as owned strings, the form [`fetch`](Self::fetch) takes.
    pub fn default_mirrors(&self) -> Vec<String> {
        self.mirrors.iter().map(|m| m.to_string()).collect()
    }

    /// Downloads (and extracts) the dataset into `dir`; see [`fetch`] and [`fetch_archive`].
    pub fn fetch(&self, mirrors: &[String], dir: &Path, progress: impl FnMut(&str, u64, Option<u64>)) -> Result<Vec<PathBuf>> {
        match self.download {
            Download::Files(files) => fetch(files, mirrors, dir, progress),
            Download::Archive(archive) => fetch_archive(archive, mirrors, dir, progress),
        }
    }
}

/// The manifest of a downloadable dataset.
pub fn manifest(name: &str) -> Result<Manifest> {
    match name {
        "mnist" => Ok(Manifest { download: Download::Files(MNIST), mirrors: MNIST_MIRRORS }),
        "cifar10" => Ok(Manifest { download: Download::Archive(&CIFAR10), mirrors: CIFAR_MIRRORS }),
        "cifar100" => Ok(Manifest { download: Download::Archive(&CIFAR100), mirrors: CIFAR_MIRRORS }),
        other => Err(Error::arg("NAME", format!("cannot fetch `{other}`; downloadable datasets: mnist, cifar10, cifar100"))),
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
    let agent = prepare(mirrors)?;
    in_dir(dir, || files.iter().map(|remote| fetch_one(&agent, remote, mirrors, dir, &mut progress)).collect())
}

/// Checks there is a mirror and that each is an http(s) URL with a host,
/// and builds the HTTP agent.
fn prepare(mirrors: &[String]) -> Result<ureq::Agent> {
    if mirrors.is_empty() {
        return Err(Error::arg("--mirror", "no mirror to download from"));
    }
    for m in mirrors {
        let bad = |why: String| Error::arg("--mirror", format!("'{}' is not an http:// or https:// URL: {why}", shown(m).escape_debug()));
        if !(m.starts_with("http://") || m.starts_with("https://")) {
            return Err(bad("it does not start with either".into()));
        }
        let uri: ureq::http::Uri = m.parse().map_err(|e| bad(format!("{e}")))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("it names no host".into()));
        }
        // `Uri` reads a port past u16 as none at all, so look for its colon after the host.
        let host_port = uri.authority().map_or("", |a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h));
        if host_port.rsplit_once(']').map_or(host_port, |(_, p)| p).contains(':') && uri.port_u16().is_none() {
            return Err(bad("its port is not a number from 0 to 65535".into()));
        }
        // The file's name is appended to the base, which a query or fragment would swallow.
        if uri.query().is_some() || m.contains('#') {
            return Err(bad("a base URL to append file names to takes no query or fragment".into()));
        }
    }
    Ok(ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into())
}

/// Runs `body` with `dir` created if missing. Where `body` fails, the
/// folders this created are removed again if still empty (never one that
/// holds a file), so a failed download leaves no trace behind.
fn in_dir<T>(dir: &Path, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let created: Vec<&Path> = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).collect();
    fs::create_dir_all(dir).map_err(|e| Error::data(dir, format!("cannot create directory: {e}")))?;
    let result = body();
    if result.is_err() {
        // Deepest first; `remove_dir` refuses a folder that is not empty.
        created.iter().try_for_each(fs::remove_dir).ok();
    }
    result
}

/// Downloads `archive`'s tarball into `dir` as [`fetch`] does, extracts its
/// members into `dir/<folder>/` (checking their sizes), deletes the tarball
/// and returns the members' paths. If extraction fails the verified tarball
/// is kept, so a retry does not download it again.
///
/// A folder already holding every member at its size is kept and nothing is
/// downloaded. Extraction goes to `dir/.<folder>.part`, renamed into place only
/// once complete; entries other than the members (and any path escaping the
/// folder) are never written.
pub fn fetch_archive(
    archive: &Archive,
    mirrors: &[String],
    dir: &Path,
    mut progress: impl FnMut(&str, u64, Option<u64>),
) -> Result<Vec<PathBuf>> {
    let target = dir.join(archive.folder);
    let paths: Vec<PathBuf> = archive.members.iter().map(|(name, _)| target.join(name)).collect();
    let complete = archive.members.iter().zip(&paths).all(|(&(_, size), p)| fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == size));
    if complete {
        progress(archive.remote.file, archive.remote.bytes, Some(archive.remote.bytes));
        return Ok(paths);
    }
    let agent = prepare(mirrors)?;
    let tarball = in_dir(dir, || fetch_one(&agent, &archive.remote, mirrors, dir, &mut progress))?;
    let part = dir.join(format!(".{}.part", archive.folder));
    let extracted = extract(&tarball, archive, &part).and_then(|()| replace_dir(&part, &target));
    if extracted.is_err() {
        let _ = fs::remove_dir_all(&part);
    }
    extracted?;
    fs::remove_file(&tarball).map_err(|e| Error::data(&tarball, format!("cannot delete the extracted tarball: {e}")))?;
    Ok(paths)
}

/// Writes `archive`'s members from the gzipped `tarball` into the fresh directory `out`.
fn extract(tarball: &Path, archive: &Archive, out: &Path) -> Result<()> {
    let bad = |e: io::Error| Error::data(tarball, format!("cannot read the tarball: {e}"));
    if out.exists() {
        fs::remove_dir_all(out).map_err(|e| Error::data(out, format!("cannot clear a stale extraction: {e}")))?;
    }
    fs::create_dir_all(out).map_err(|e| Error::data(out, format!("cannot create directory: {e}")))?;
    let file = File::open(tarball).map_err(|e| Error::data(tarball, format!("cannot open: {e}")))?;
    let mut tar = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let mut found = vec![false; archive.members.len()];
    for entry in tar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        // `./folder/member` and `folder/member` alike; nothing else matches.
        let path = entry.path().map_err(bad)?.into_owned();
        let parts: Vec<&std::ffi::OsStr> = path
            .components()
            .filter(|c| *c != Component::CurDir)
            .map(|c| match c {
                Component::Normal(n) => n,
                _ => std::ffi::OsStr::new("/"),
            })
            .collect();
        let [folder, name] = parts.as_slice() else { continue };
        let Some(k) = archive.members.iter().position(|(m, _)| *folder == archive.folder && *name == *m) else { continue };
        if !entry.header().entry_type().is_file() || found[k] {
            continue;
        }
        let (member, size) = archive.members[k];
        let dest = out.join(member);
        let mut w = File::create(&dest).map_err(|e| Error::data(&dest, format!("cannot write: {e}")))?;
        // One byte past the expected size is enough to reject it.
        let written = io::copy(&mut entry.take(size + 1), &mut w).map_err(bad)?;
        if written != size {
            return Err(Error::data(tarball, format!("member {}/{member} has {written} bytes, expected {size}", archive.folder)));
        }
        w.sync_all().map_err(|e| Error::data(&dest, format!("cannot write: {e}")))?;
        found[k] = true;
    }
    if let Some(k) = found.iter().position(|f| !f) {
        return Err(Error::data(tarball, format!("has no member {}/{}", archive.folder, archive.members[k].0)));
    }
    Ok(())
}

/// Moves the directory `from` to `to`, replacing whatever `to` held.
fn replace_dir(from: &Path, to: &Path) -> Result<()> {
    let moved = |e: io::Error| Error::data(to, format!("cannot move the extracted files into place: {e}"));
    if to.exists() {
        let old = to.with_file_name(format!(".{}.old", to.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
        let _ = fs::remove_dir_all(&old);
        fs::rename(to, &old).map_err(moved)?;
        fs::rename(from, to).map_err(moved)?;
        // Best effort: the new files are in place either way.
        let _ = fs::remove_dir_all(&old);
        return Ok(());
    }
    fs::rename(from, to).map_err(moved)
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
        let shown_url = shown(&url);
        match download(agent, &url, &shown_url, remote, &part, progress) {
            Ok(actual) if actual == expected => {
                return fs::rename(&part, &target).map(|()| target.clone()).map_err(|e| {
                    let _ = fs::remove_file(&part);
                    Error::data(&target, format!("cannot move the verified download into place: {e}"))
                });
            }
            Ok(actual) => failures.push(format!("{shown_url}: sha256 mismatch (expected {expected}, actual {actual})")),
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

/// `url` with the password of its user info, if any, replaced by `***`, as
/// errors and messages show it.
fn shown(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority = &url[start..url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i)];
    match authority.rsplit_once('@').and_then(|(info, _)| info.split_once(':')) {
        Some((user, password)) => {
            let from = start + user.len() + 1;
            format!("{}***{}", &url[..from], &url[from + password.len()..]).into()
        }
        None => url.into(),
    }
}

/// Streams `url` into `part`, hashing as it goes; returns the hex digest.
/// Failures name it as `shown`, without its password, even where the HTTP
/// client's own message quotes it.
fn download(
    agent: &ureq::Agent,
    url: &str,
    shown: &str,
    remote: &Remote,
    part: &Path,
    progress: &mut impl FnMut(&str, u64, Option<u64>),
) -> std::result::Result<String, Failure> {
    // Ask for the bytes as stored: a transparently decompressed .gz would not verify.
    let mut response = agent
        .get(url)
        .header("Accept-Encoding", "identity")
        .call()
        .map_err(|e| Failure::Remote(format!("{shown}: {}", e.to_string().replace(url, shown))))?;
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
            Err(e) => return Err(Failure::Remote(format!("{shown}: {e}"))),
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
    fn a_mirror_is_shown_without_its_password() {
        assert_eq!(shown("http://ann:s3cret@host:8080/data/a.bin"), "http://ann:***@host:8080/data/a.bin");
        assert_eq!(shown("https://ann:p@ss:w@rd@host/"), "https://ann:***@host/");
        assert_eq!(shown("http://ann@host/a:b@c"), "http://ann@host/a:b@c");
        assert_eq!(shown("http://host:80/x"), "http://host:80/x");
        assert_eq!(shown("ftp://u:pw@h/"), "ftp://u:***@h/");
    }

    #[test]
    fn manifest_lookup() {
        assert_eq!(manifest("mnist").unwrap().download, Download::Files(MNIST));
        assert_eq!(manifest("cifar100").unwrap().download, Download::Archive(&CIFAR100));
        assert_eq!(manifest("cifar10").unwrap().default_mirrors(), vec!["https://www.cs.toronto.edu/~kriz/".to_string()]);
        let err = manifest("imagenet").unwrap_err().to_string();
        assert!(err.contains("imagenet") && err.contains("mnist, cifar10, cifar100"), "{err}");
    }

    #[test]
    fn cifar_member_sizes_are_whole_records() {
        use crate::data::cifar::Cifar;
        for (archive, set) in [(&CIFAR10, Cifar::Ten), (&CIFAR100, Cifar::Hundred)] {
            assert_eq!(archive.folder, set.folder());
            let names: Vec<&str> = archive.members.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, [set.train_files(), set.test_files()].concat());
            for &(name, size) in archive.members {
                // CIFAR-100's train.bin holds all 50,000 training images; every other file 10,000.
                let records = if name == "train.bin" { 50_000 } else { 10_000 };
                assert_eq!(size, (records * set.record_len()) as u64, "{name}");
            }
        }
    }
}
