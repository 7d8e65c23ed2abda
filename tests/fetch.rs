//! `kappa::data::fetch` against a local HTTP/1.1 server serving fixtures.

use kappa::data::fetch::{fetch, Remote};
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
}
