//! `kappa::data::fetch` against a local HTTP/1.1 server serving fixtures.

use kappa::data::fetch::{fetch, fetch_archive, Archive, Remote};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Serves `routes` (request path → body), 404 for anything else, and records
/// every requested path. Stops when dropped.
struct Server {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(routes: &[(&str, &[u8])]) -> Server {
        let routes: HashMap<String, Vec<u8>> = routes.iter().map(|(p, b)| (p.to_string(), b.to_vec())).collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (hits2, stop2) = (Arc::clone(&hits), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve(stream, &routes, &hits2);
                }
            }
        });
        Server { addr, hits, stop, thread: Some(thread) }
    }

    fn mirror(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}/", self.addr)
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, routes: &HashMap<String, Vec<u8>>, hits: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 1 << 16 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or_default().to_string();
    hits.lock().unwrap().push(path.clone());
    let response = match routes.get(&path) {
        Some(body) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        }
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&response);
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kappa-fetch-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A manifest entry for `content` (the fields are `&'static str`, so leak).
fn remote(file: &str, content: &[u8]) -> Remote {
    Remote {
        file: Box::leak(file.to_string().into_boxed_str()),
        sha256: Box::leak(sha_hex(content).into_boxed_str()),
        bytes: content.len() as u64,
    }
}

/// Sorted names of the directory's entries.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Fixture contents: big enough to arrive in several reads.
fn content(tag: &str, len: usize) -> Vec<u8> {
    tag.bytes().cycle().take(len).collect()
}

#[test]
fn fetch_lands_verified_files_without_leftovers() {
    let (a, b) = (content("alpha", 200_000), content("beta", 3_000));
    let server = Server::start(&[("/m/a.bin", &a), ("/m/b.bin", &b)]);
    let dir = TempDir::new("ok");
    let target = dir.0.join("nested");
    let mut seen: HashMap<String, Vec<(u64, Option<u64>)>> = HashMap::new();
    let paths = fetch(&[remote("a.bin", &a), remote("b.bin", &b)], &[server.mirror("m")], &target, |file, done, total| {
        seen.entry(file.to_string()).or_default().push((done, total))
    })
    .unwrap();
    assert_eq!(paths, vec![target.join("a.bin"), target.join("b.bin")]);
    assert_eq!(std::fs::read(&paths[0]).unwrap(), a);
    assert_eq!(std::fs::read(&paths[1]).unwrap(), b);
    assert_eq!(listing(&target), vec!["a.bin", "b.bin"]);
    let a_progress = &seen["a.bin"];
    assert!(a_progress.windows(2).all(|w| w[0].0 < w[1].0), "progress must grow");
    assert_eq!(a_progress.last(), Some(&(200_000, Some(200_000))));
    assert_eq!(server.hits(), vec!["/m/a.bin", "/m/b.bin"]);
}

#[test]
fn checksum_mismatch_errors_and_keeps_the_existing_file() {
    let (genuine, tampered) = (content("genuine", 5_000), content("tampered", 5_000));
    let server = Server::start(&[("/m/a.bin", &tampered)]);
    let dir = TempDir::new("mismatch");
    std::fs::write(dir.0.join("a.bin"), b"old local copy").unwrap();
    let manifest = [remote("a.bin", &genuine)];
    let err = fetch(&manifest, &[server.mirror("m")], &dir.0, |_, _, _| {}).unwrap_err().to_string();
    for needle in ["a.bin", "mismatch", &sha_hex(&genuine), &sha_hex(&tampered)] {
        assert!(err.contains(needle), "error lacks `{needle}`: {err}");
    }
    assert_eq!(listing(&dir.0), vec!["a.bin"], "no partial file may remain");
    assert_eq!(std::fs::read(dir.0.join("a.bin")).unwrap(), b"old local copy");
}

#[test]
fn oversized_download_is_cut_off_and_rejected() {
    let genuine = content("genuine", 5_000);
    let mut padded = genuine.clone();
    padded.extend(content("junk", 100_000));
    let server = Server::start(&[("/m/a.bin", &padded)]);
    let dir = TempDir::new("oversized");
    let mut largest = 0;
    let err = fetch(&[remote("a.bin", &genuine)], &[server.mirror("m")], &dir.0, |_, done, _| largest = largest.max(done))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a.bin") && err.contains("mismatch"), "{err}");
    assert_eq!(largest, 5_001, "reading must stop one byte past the expected size");
    assert!(listing(&dir.0).is_empty());
}

#[test]
fn missing_file_on_first_mirror_falls_back_to_the_second() {
    let a = content("alpha", 10_000);
    let server = Server::start(&[("/good/a.bin", &a)]);
    let dir = TempDir::new("fallback");
    let mirrors = [server.mirror("gone"), server.mirror("good")];
    let paths = fetch(&[remote("a.bin", &a)], &mirrors, &dir.0, |_, _, _| {}).unwrap();
    assert_eq!(std::fs::read(&paths[0]).unwrap(), a);
    assert_eq!(server.hits(), vec!["/gone/a.bin", "/good/a.bin"]);
}

#[test]
fn corrupt_first_mirror_falls_back_and_replaces_a_bad_local_file() {
    let (a, bad) = (content("alpha", 10_000), content("bad", 10_000));
    let server = Server::start(&[("/bad/a.bin", &bad), ("/good/a.bin", &a)]);
    let dir = TempDir::new("bad-then-good");
    std::fs::write(dir.0.join("a.bin"), b"stale").unwrap();
    let mirrors = [server.mirror("bad"), server.mirror("good")];
    fetch(&[remote("a.bin", &a)], &mirrors, &dir.0, |_, _, _| {}).unwrap();
    assert_eq!(std::fs::read(dir.0.join("a.bin")).unwrap(), a);
    assert_eq!(listing(&dir.0), vec!["a.bin"]);
}

#[test]
fn every_mirror_failing_names_the_file_and_each_failure() {
    let server = Server::start(&[]);
    let dir = TempDir::new("all-404");
    let mirrors = [server.mirror("one"), server.mirror("two")];
    let err = fetch(&[remote("a.bin", b"x")], &mirrors, &dir.0, |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains(&dir.0.join("a.bin").display().to_string()), "{err}");
    assert!(err.contains("/one/a.bin") && err.contains("/two/a.bin") && err.contains("404"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(listing(&dir.0).is_empty());
    // Folders the fetch created are removed again; the one it was given already existed and stays.
    let fresh = dir.0.join("new").join("mnist");
    fetch(&[remote("a.bin", b"x")], &mirrors, &fresh, |_, _, _| {}).unwrap_err();
    assert!(dir.0.is_dir() && !dir.0.join("new").exists(), "{:?}", listing(&dir.0));
}

#[test]
fn verified_files_already_present_are_not_downloaded_again() {
    let (a, b) = (content("alpha", 4_000), content("beta", 4_000));
    let server = Server::start(&[("/m/a.bin", &a), ("/m/b.bin", &b)]);
    let dir = TempDir::new("present");
    std::fs::write(dir.0.join("a.bin"), &a).unwrap();
    let manifest = [remote("a.bin", &a), remote("b.bin", &b)];
    let mirrors = [server.mirror("m")];
    fetch(&manifest, &mirrors, &dir.0, |_, _, _| {}).unwrap();
    assert_eq!(server.hits(), vec!["/m/b.bin"]);
    fetch(&manifest, &mirrors, &dir.0, |_, _, _| {}).unwrap();
    assert_eq!(server.hits(), vec!["/m/b.bin"], "a second fetch must download nothing");
    assert_eq!(std::fs::read(dir.0.join("b.bin")).unwrap(), b);
}

#[test]
fn no_mirrors_is_an_argument_error() {
    let dir = TempDir::new("no-mirrors");
    let err = fetch(&[remote("a.bin", b"x")], &[], &dir.0, |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("mirror"), "{err}");
    for bad in
        ["file:///tmp", "", "example.org/mnist", "http://[::1/", "http:///mnist", "http://127.0.0.1:99999/", "http://h/?x=1", "http://h/#f"]
    {
        let target = dir.0.join("target");
        let err = fetch(&[remote("a.bin", b"x")], &[bad.to_string()], &target, |_, _, _| {}).unwrap_err().to_string();
        assert!(err.contains("--mirror") && err.contains("http:// or https://"), "{bad}: {err}");
        assert!(!target.exists(), "{bad}: a refused mirror creates nothing");
    }
}

#[test]
fn a_mirror_password_is_never_shown() {
    let dir = TempDir::new("mirror-password");
    // Port 1 on the loopback refuses the connection at once.
    for mirror in ["http://ann:s3cret@127.0.0.1:1/m/", "ftp://ann:s3cret@example.org/m/"] {
        let err = fetch(&[remote("a.bin", b"x")], &[mirror.to_string()], &dir.0, |_, _, _| {}).unwrap_err().to_string();
        assert!(err.contains("ann:***@") && !err.contains("s3cret"), "{err}");
    }
}

/// A gzipped tarball of `(path, contents)` entries.
fn tarball(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`; write the raw name to build hostile entries too.
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A CIFAR-10-shaped archive manifest for the fixture tarball `tgz` with the given members.
fn archive(tgz: &[u8], members: &[(&str, u64)]) -> Archive {
    let members: Vec<(&'static str, u64)> = members.iter().map(|&(n, s)| (&*Box::leak(n.to_string().into_boxed_str()), s)).collect();
    Archive {
        remote: remote("cifar-10-binary.tar.gz", tgz),
        folder: "cifar-10-batches-bin",
        members: Box::leak(members.into_boxed_slice()),
    }
}

/// One CIFAR-10 record per file, labelled by the file's index.
fn cifar10_files() -> Vec<(String, Vec<u8>)> {
    let names = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"];
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut record = vec![i as u8];
            record.extend((0..3072).map(|p| (p % 251) as u8));
            (format!("cifar-10-batches-bin/{n}"), record)
        })
        .collect()
}

#[test]
fn archive_is_extracted_verified_and_loadable() {
    let files = cifar10_files();
    let mut entries: Vec<(&str, &[u8])> = vec![("./cifar-10-batches-bin/readme.html", b"<html>")];
    entries.extend(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    entries.push(("cifar-10-batches-bin/../../escaped.bin", b"never written"));
    let tgz = tarball(&entries);
    let members: Vec<(&str, u64)> = files.iter().map(|(p, b)| (&p["cifar-10-batches-bin/".len()..], b.len() as u64)).collect();
    let manifest = archive(&tgz, &members);
    let server = Server::start(&[("/kriz/cifar-10-binary.tar.gz", &tgz)]);
    let root = TempDir::new("archive");
    let dir = root.0.join("data");
    let paths = fetch_archive(&manifest, &[server.mirror("kriz")], &dir, |_, _, _| {}).unwrap();
    assert_eq!(paths.len(), 6);
    assert_eq!(paths[5], dir.join("cifar-10-batches-bin/test_batch.bin"));
    for (path, (_, bytes)) in paths.iter().zip(&files) {
        assert_eq!(&std::fs::read(path).unwrap(), bytes);
    }
    assert_eq!(listing(&dir), vec!["cifar-10-batches-bin"], "the tarball is deleted and nothing else is left");
    assert_eq!(listing(&dir.join("cifar-10-batches-bin")).len(), 6, "only the members are extracted");
    assert_eq!(listing(&root.0), vec!["data"], "nothing escapes the folder");
    let split = kappa::data::load("cifar10", Some(&dir), &kappa::data::LoadOptions::default()).unwrap();
    assert_eq!((split.train.labels.clone(), split.test.labels.clone()), (vec![0, 1, 2, 3, 4], vec![5]));

    // Complete and of the right sizes: nothing is downloaded again.
    fetch_archive(&manifest, &[server.mirror("kriz")], &dir, |_, _, _| {}).unwrap();
    assert_eq!(server.hits().len(), 1);
    // A damaged member makes the next fetch download and replace the folder.
    std::fs::write(&paths[2], b"short").unwrap();
    fetch_archive(&manifest, &[server.mirror("kriz")], &dir, |_, _, _| {}).unwrap();
    assert_eq!(server.hits().len(), 2);
    assert_eq!(std::fs::read(&paths[2]).unwrap(), files[2].1);
    assert_eq!(listing(&dir), vec!["cifar-10-batches-bin"]);
}

#[test]
fn archive_missing_or_mis_sized_members_fail_without_partial_files() {
    let files = cifar10_files();
    let entries: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let tgz = tarball(&entries[..5]);
    let server = Server::start(&[("/m/cifar-10-binary.tar.gz", &tgz)]);
    let members: Vec<(&str, u64)> = files.iter().map(|(p, b)| (&p["cifar-10-batches-bin/".len()..], b.len() as u64)).collect();
    let dir = TempDir::new("archive-missing");
    let err = fetch_archive(&archive(&tgz, &members), &[server.mirror("m")], &dir.0, |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("cifar-10-binary.tar.gz") && err.contains("no member cifar-10-batches-bin/test_batch.bin"), "{err}");
    // The verified tarball stays (no need to download it again); no partial extraction does.
    assert_eq!(listing(&dir.0), vec!["cifar-10-binary.tar.gz"]);

    let mut wrong = members.clone();
    wrong[1].1 += 1;
    let err = fetch_archive(&archive(&tgz, &wrong), &[server.mirror("m")], &dir.0, |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("data_batch_2.bin") && err.contains("3073 bytes, expected 3074"), "{err}");
    assert_eq!(listing(&dir.0), vec!["cifar-10-binary.tar.gz"]);
    assert_eq!(server.hits().len(), 1, "the verified tarball was reused");
}

#[test]
fn archive_checksum_mismatch_extracts_nothing() {
    let files = cifar10_files();
    let entries: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let (genuine, tampered) = (tarball(&entries), tarball(&entries[1..]));
    let server = Server::start(&[("/m/cifar-10-binary.tar.gz", &tampered)]);
    let dir = TempDir::new("archive-mismatch");
    let err = fetch_archive(&archive(&genuine, &[("test_batch.bin", 3073)]), &[server.mirror("m")], &dir.0, |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(listing(&dir.0).is_empty());
}
