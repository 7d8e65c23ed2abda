//! The allocator the binary and the benches run on: mimalloc, keeping the
//! pages it frees.
//!
//! By default mimalloc hands freed pages back to the OS 10–100 ms after a
//! free, and a training step that outlasts that faults its whole working set
//! in again, each page zeroed by the kernel: 2–3 s of every 25 s ResNet-1202
//! step on the development machine (592k minor faults and 37 s of system time
//! in three steps; 10k and 19 s without). The peak resident size is reached
//! every step anyway, so keeping the pages costs no memory.

use std::os::raw::{c_int, c_long};

pub use mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (mimalloc.h).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Tells mimalloc never to return freed pages to the OS. Only has an effect
/// where [`MiMalloc`] is the global allocator.
pub fn keep_freed_pages() {
    // SAFETY: sets a plain integer option, which mimalloc reads at each purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
