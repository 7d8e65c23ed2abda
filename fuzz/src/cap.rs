//! A global allocator that aborts (a crash libFuzzer records) on any single
//! allocation larger than the current input justifies, e.g. a header
//! claiming 2³² images that is trusted before the file's size is checked.
//!
//! libFuzzer's own `-malloc_limit_mb` hooks a sanitizer's allocator, so it
//! does nothing in these sanitizer-free builds, and `-rss_limit_mb` misses a
//! huge allocation that is never touched; hence the cap is enforced here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Outside an input (the seed generator, libFuzzer's start-up) nothing is capped.
static CAP: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Bytes one allocation may take while kappa reads an input of `len` bytes.
/// The floor covers fixed costs (decoder tables, thread pools, the small
/// model); 4096 per input byte covers the largest honest expansion, a JPEG's
/// pixels: at most 512 pixels per byte of a valid file (one 1-bit code per
/// 8×8 block), at 3 bytes each, plus the decoder's per-pixel buffers.
pub fn cap_for(len: usize) -> usize {
    (16 << 20) + 4096 * len
}

/// Caps the allocations made for an input of `len` bytes.
pub fn input(len: usize) {
    CAP.store(cap_for(len), Ordering::Relaxed);
}

pub struct Capped;

fn check(size: usize) {
    let cap = CAP.load(Ordering::Relaxed);
    if size > cap {
        // Formatting integers to stderr allocates nothing, so this cannot recurse.
        let _ = writeln!(std::io::stderr(), "kappa-fuzz: an allocation of {size} bytes exceeds the cap of {cap} for this input");
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}
