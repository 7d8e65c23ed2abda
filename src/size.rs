//! Sizes the command line asks for, checked before anything is allocated: a
//! product of dimensions that overflows, or that could not fit in the
//! machine's memory, is an error naming what asked for it and the flags that
//! set it, not an overflow panic or an allocation abort.

use crate::error::{Error, Result};

/// The elements of an array of `dims`, if it could fit in this machine's
/// memory at 8 bytes (an f64, the widest element kappa stores) each.
/// `what` names the array, `flags` the options that set its size.
pub fn elements(what: &str, dims: &[usize], flags: &str) -> Result<usize> {
    let n = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let memory = memory_bytes();
    match n {
        Some(n) if n <= memory / 8 => Ok(n),
        _ => {
            let shape = dims.iter().map(usize::to_string).collect::<Vec<_>>().join("×");
            let gib = memory as f64 / (1u64 << 30) as f64;
            let detail =
                format!("{what} of {shape} elements would not fit in this machine's {gib:.1} GiB of memory; expected smaller sizes");
            Err(Error::arg(flags, detail))
        }
    }
}

/// This machine's memory in bytes (`MemTotal` in /proc/meminfo), or the
/// largest allocation Rust allows where that cannot be read.
fn memory_bytes() -> usize {
    let kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse::<usize>().ok()
    });
    kib.and_then(|k| k.checked_mul(1024)).unwrap_or(isize::MAX as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_or_outgrow_memory_are_errors_naming_the_flags() {
        assert_eq!(elements("weights", &[256, 784], "--width").unwrap(), 256 * 784);
        assert_eq!(elements("nothing", &[], "--width").unwrap(), 1);
        for dims in [vec![usize::MAX, 2], vec![memory_bytes() / 8 + 1]] {
            let e = elements("weights", &dims, "--width").unwrap_err().to_string();
            assert!(e.contains("--width") && e.contains("weights of") && e.contains("GiB of memory"), "{e}");
        }
    }
}
