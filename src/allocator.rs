//! The allocator the binary and the benches run on: mimalloc, keeping the
//! pages it frees and taking them 4 KiB at a time.
//!
//! By default mimalloc hands freed pages back to the OS 10–100 ms after a
//! free, and a training step that outlasts that faults its whole working set
//! in again, each page zeroed by the kernel: 2–3 s of every 25 s ResNet-1202
//! step on the development machine (592k minor faults and 37 s of system time
//! in three steps; 10k and 19 s without). The peak resident size is reached
//! every step anyway, so keeping the pages costs no memory.
//!
//! mimalloc also asks for transparent huge pages (2 MiB). On the development
//! machines, VMs whose balloon reports free memory to the host, a free 2 MiB
//! block is one the host has taken back, so each huge page faults in fresh
//! host memory. Three ResNet-1202 steps at batch 128 spent 34–72 s in the
//! kernel with them and 10–13 s without (53 s on the session's first run),
//! their first step took 36–64 s against 19–23 s, and the peak resident size
//! was 12.8 GiB against 11.4. The steps after the first, and the criterion
//! benches, ran within their noise either way, so 4 KiB pages cost no speed.

use std::os::raw::{c_int, c_long};

pub use mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (mimalloc.h).
const MI_OPTION_PURGE_DELAY: c_int = 15;
/// `mi_option_allow_thp` in the same enum.
const MI_OPTION_ALLOW_THP: c_int = 43;

/// Tells mimalloc never to return freed pages to the OS, nor to ask for
/// huge pages, and tells Linux to give this process none (where THP is
/// "always" rather than "madvise"). mimalloc's settings only have an effect
/// where [`MiMalloc`] is the global allocator.
pub fn configure() {
    // SAFETY: each sets a plain integer option, which mimalloc reads at each
    // purge and each fresh mapping.
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        mi_option_set(MI_OPTION_ALLOW_THP, 0);
    }
    #[cfg(target_os = "linux")]
    no_huge_pages();
}

#[cfg(target_os = "linux")]
fn no_huge_pages() {
    extern "C" {
        fn prctl(option: c_int, ...) -> c_int;
    }
    /// `PR_SET_THP_DISABLE` in linux/prctl.h.
    const PR_SET_THP_DISABLE: c_int = 41;
    // SAFETY: sets a flag of this process; a kernel without it returns an
    // error, which leaves the process as it was and is fine to ignore.
    unsafe { prctl(PR_SET_THP_DISABLE, 1 as c_long, 0 as c_long, 0 as c_long, 0 as c_long) };
}

#[cfg(test)]
mod tests {
    extern "C" {
        fn mi_option_get(option: super::c_int) -> super::c_long;
    }

    #[test]
    fn configure_keeps_pages_and_turns_huge_pages_off() {
        use super::{MI_OPTION_ALLOW_THP as THP, MI_OPTION_PURGE_DELAY as PURGE};
        // SAFETY (all three blocks): reads plain integer options.
        // mimalloc v3's defaults (options.c), unlike their neighbours' in the
        // enum, show that the two indices name these options.
        assert_eq!(unsafe { (mi_option_get(PURGE), mi_option_get(THP)) }, (1000, 1));
        super::configure();
        assert_eq!(unsafe { (mi_option_get(PURGE), mi_option_get(THP)) }, (-1, 0));
        #[cfg(target_os = "linux")]
        {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            // Kernels since 5.0 show the flag; older ones still honour it.
            if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
                assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
            }
        }
    }
}
