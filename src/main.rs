//! The `kappa` binary: the command line lives in the library, [`kappa::cli`].

#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

fn main() -> std::process::ExitCode {
    kappa::allocator::keep_freed_pages();
    kappa::workers::join_pool();
    kappa::cli::main()
}
