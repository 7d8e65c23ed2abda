//! Sizes the command line asks for, checked before anything is allocated: a
//! product of dimensions that overflows, or that could not fit in the
//! memory this process may use (or, for values on a device, the device's
//! own), is an error naming what asked for it and the flags that set it, not
//! an overflow panic or an allocation abort.

use std::path::Path;

use crate::error::{Error, Result};

/// The elements of an array of `dims`, if it could fit in the memory this
/// process may use at 8 bytes (an f64, the widest element kappa stores)
/// each. `what` names the array, `flags` the options that set its size.
pub fn elements(what: &str, dims: &[usize], flags: &str) -> Result<usize> {
    let n = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    match exceeded(n.and_then(|n| n.checked_mul(8)), Limit::least()) {
        // Within the limit, so the count did not overflow.
        None => Ok(n.unwrap_or_default()),
        Some(limit) => {
            let shape = dims.iter().map(usize::to_string).collect::<Vec<_>>().join("×");
            Err(Error::arg(flags, format!("{what} of {shape} elements would not fit in {limit}; expected smaller sizes")))
        }
    }
}

/// Where the values being counted live.
#[derive(Clone, Debug, PartialEq)]
pub enum Memory {
    /// The host's: bound by the least of the limits that can be read here.
    Host,
    /// A device's own memory, `bytes` of it, on the device `name` (as
    /// `--device` gives it): the host's limits do not bind it.
    Device { name: String, bytes: usize },
}

/// Checks that `bytes` (`None` where counting them overflowed) could fit in
/// `memory`. `what` names what needs them, `flags` the options that set
/// their size.
pub fn bytes(memory: &Memory, what: &str, bytes: Option<usize>, flags: &str) -> Result<()> {
    match exceeded(bytes, Limit::of(memory)) {
        None => Ok(()),
        Some(limit) => {
            let need = bytes.map_or("more bytes than a usize counts".to_string(), |b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64));
            Err(Error::arg(flags, format!("{what} needs at least {need}, more than {limit}; expected smaller sizes")))
        }
    }
}

/// `limit`, if `bytes` (`None`: past counting) exceed it.
fn exceeded(bytes: Option<usize>, limit: Limit) -> Option<Limit> {
    bytes.is_none_or(|b| b > limit.bytes).then_some(limit)
}

/// A bound on the memory this process may use, and what sets it.
#[derive(Clone, Debug, PartialEq)]
struct Limit {
    bytes: usize,
    source: Source,
}

#[derive(Clone, Debug, PartialEq)]
enum Source {
    /// `MemTotal` in /proc/meminfo.
    Machine,
    /// The memory cgroup's limit: a container's, or a batch job's.
    Cgroup,
    /// `ulimit -v` (`RLIMIT_AS`).
    AddressSpace,
    /// None could be read: the largest allocation Rust allows.
    Unknown,
    /// The memory of the device named.
    Device(String),
}

impl Limit {
    fn of(memory: &Memory) -> Limit {
        match memory {
            Memory::Host => Limit::least(),
            Memory::Device { name, bytes } => Limit { bytes: *bytes, source: Source::Device(name.clone()) },
        }
    }

    /// The least of the limits that can be read here.
    fn least() -> Limit {
        let of = |source| move |bytes| Limit { bytes, source };
        [
            machine_memory().map(of(Source::Machine)),
            cgroup_limit().map(of(Source::Cgroup)),
            address_space_limit().map(of(Source::AddressSpace)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|l| l.bytes)
        .unwrap_or(Limit { bytes: isize::MAX as usize, source: Source::Unknown })
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = self.bytes as f64 / (1u64 << 30) as f64;
        match &self.source {
            Source::Machine => write!(f, "this machine's {gib:.1} GiB of memory"),
            Source::Cgroup => write!(f, "the {gib:.1} GiB of memory this process's cgroup allows"),
            Source::AddressSpace => write!(f, "the {gib:.1} GiB of address space `ulimit -v` allows"),
            Source::Unknown => write!(f, "the {gib:.1} GiB Rust can allocate"),
            Source::Device(name) => write!(f, "{name}'s {gib:.1} GiB of memory"),
        }
    }
}

fn machine_memory() -> Option<usize> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib = line.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse::<usize>().ok()?;
    kib.checked_mul(1024)
}

fn cgroup_limit() -> Option<usize> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit_in(&own, |path| std::fs::read_to_string(path).ok())
}

/// The least memory limit of the cgroups that `/proc/self/cgroup` (`own`)
/// names, reading their files with `read`. Under cgroup v2 (`0::/path`) a
/// parent's `memory.max` binds its children too, so each ancestor counts;
/// under v1 the memory hierarchy's `memory.limit_in_bytes` is read where the
/// path is visible, and at its root inside a container, where it is not.
fn cgroup_limit_in(own: &str, read: impl Fn(&Path) -> Option<String>) -> Option<usize> {
    let limit = |path: &Path| read(path)?.trim().parse::<usize>().ok();
    own.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let path = Path::new(path.trim_start_matches('/'));
            if controllers.is_empty() {
                path.ancestors().filter_map(|a| limit(&Path::new("/sys/fs/cgroup").join(a).join("memory.max"))).min()
            } else if controllers.split(',').any(|c| c == "memory") {
                let root = Path::new("/sys/fs/cgroup/memory");
                limit(&root.join(path).join("memory.limit_in_bytes")).or_else(|| limit(&root.join("memory.limit_in_bytes")))
            } else {
                None
            }
        })
        .min()
}

#[cfg(target_os = "linux")]
fn address_space_limit() -> Option<usize> {
    extern "C" {
        fn getrlimit(resource: std::os::raw::c_int, limit: *mut [u64; 2]) -> std::os::raw::c_int;
    }
    /// `RLIMIT_AS` in Linux's asm-generic/resource.h.
    const RLIMIT_AS: std::os::raw::c_int = 9;
    let mut limit = [0u64; 2];
    // SAFETY: getrlimit writes the soft and hard limits, two u64s on 64-bit Linux.
    let read = unsafe { getrlimit(RLIMIT_AS, &mut limit) } == 0;
    // RLIM_INFINITY is all ones.
    (read && limit[0] != u64::MAX).then(|| usize::try_from(limit[0]).unwrap_or(usize::MAX))
}

#[cfg(not(target_os = "linux"))]
fn address_space_limit() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_or_outgrow_memory_are_errors_naming_the_flags() {
        assert_eq!(elements("weights", &[256, 784], "--width").unwrap(), 256 * 784);
        assert_eq!(elements("nothing", &[], "--width").unwrap(), 1);
        for dims in [vec![usize::MAX, 2], vec![Limit::least().bytes / 8 + 1]] {
            let e = elements("weights", &dims, "--width").unwrap_err().to_string();
            assert!(e.contains("--width") && e.contains("weights of") && e.contains("GiB of"), "{e}");
        }
    }

    #[test]
    fn bytes_past_the_limit_are_errors_naming_the_flags() {
        assert!(bytes(&Memory::Host, "a model", Some(1 << 20), "--width").is_ok());
        let limit = Limit::least().bytes;
        for need in [Some(limit + 1), None] {
            let e = bytes(&Memory::Host, "a model", need, "--width").unwrap_err().to_string();
            assert!(e.contains("--width") && e.contains("a model needs at least") && e.contains(", more than "), "{e}");
        }
        // A device's own memory binds alone, above or below the host's.
        let device = |bytes| Memory::Device { name: "cuda:1".into(), bytes };
        assert!(bytes(&device(limit + 2), "a model", Some(limit + 1), "--width").is_ok());
        let e = bytes(&device(3 << 30), "a model", Some((3 << 30) + 1), "--width").unwrap_err().to_string();
        assert!(e.contains("a model needs at least 3.0 GiB, more than cuda:1's 3.0 GiB of memory"), "{e}");
    }

    #[test]
    fn a_cgroup_limit_is_read_from_the_process_own_cgroups() {
        fn files<'a>(entries: &'a [(&str, &str)]) -> impl Fn(&Path) -> Option<String> + 'a {
            move |p| entries.iter().find(|(path, _)| Path::new(path) == p).map(|(_, text)| text.to_string())
        }
        // v2: the parent's limit binds a child that sets none ("max").
        let v2 = [("/sys/fs/cgroup/job/step/memory.max", "max\n"), ("/sys/fs/cgroup/job/memory.max", "8589934592\n")];
        assert_eq!(cgroup_limit_in("0::/job/step\n", files(&v2)), Some(8 << 30));
        // v1: the process's own memory cgroup, else the hierarchy's root.
        let v1 = [("/sys/fs/cgroup/memory/batch/memory.limit_in_bytes", "4294967296\n")];
        assert_eq!(cgroup_limit_in("4:memory:/batch\n2:cpu,cpuacct:/batch\n", files(&v1)), Some(4 << 30));
        let container = [("/sys/fs/cgroup/memory/memory.limit_in_bytes", "2147483648")];
        assert_eq!(cgroup_limit_in("5:cpuset,memory:/docker/abc\n", files(&container)), Some(2 << 30));
        assert_eq!(cgroup_limit_in("0::/\n", files(&[])), None);
        assert_eq!(cgroup_limit_in("garbage", files(&v2)), None);
    }

    #[test]
    fn the_least_limit_names_its_source() {
        let least = Limit::least();
        assert!(least.bytes <= machine_memory().unwrap_or(usize::MAX));
        let cgroup = Limit { bytes: 3 << 30, source: Source::Cgroup };
        assert_eq!(cgroup.to_string(), "the 3.0 GiB of memory this process's cgroup allows");
        let ulimit = Limit { bytes: 1 << 29, source: Source::AddressSpace };
        assert_eq!(ulimit.to_string(), "the 0.5 GiB of address space `ulimit -v` allows");
    }
}
