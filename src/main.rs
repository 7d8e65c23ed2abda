//! The `kappa` binary: the command line lives in the library, [`kappa::cli`].

use std::os::raw::{c_int, c_long};

// Training frees and reallocates the same activation sizes every step;
// mimalloc keeps those pages mapped instead of faulting them in again.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (mimalloc.h).
const MI_OPTION_PURGE_DELAY: c_int = 15;

fn main() -> std::process::ExitCode {
    // By default mimalloc hands freed pages back to the OS after 10-100 ms, and
    // a step that outlasts that faults its whole working set in again, zeroed
    // by the kernel: 2-3 s of every 25 s ResNet-1202 step. The peak resident
    // size is reached every step anyway, so keeping it costs no memory.
    // SAFETY: sets a plain integer option; called before any other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    kappa::cli::main()
}
