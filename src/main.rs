//! The `kappa` binary: the command line lives in the library, [`kappa::cli`].

#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

fn main() -> std::process::ExitCode {
    // A reader that closes the pipe (`kappa … | head`) ends the process at its
    // next print, quietly, as it ends any Unix tool; Rust's default ignores
    // SIGPIPE, and the failed print then panics.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    kappa::allocator::configure();
    kappa::workers::join_pool();
    kappa::cli::main()
}
