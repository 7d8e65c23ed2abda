//! The `kappa` binary: the command line lives in the library, [`kappa::cli`].

// Training frees and reallocates the same activation sizes every step;
// mimalloc keeps those pages mapped instead of faulting them in again.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kappa::cli::main()
}
