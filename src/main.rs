//! The `kappa` binary: the command line lives in the library, [`kappa::cli`].

#[global_allocator]
static ALLOC: kappa::allocator::MiMalloc = kappa::allocator::MiMalloc;

fn main() -> std::process::ExitCode {
    kappa::allocator::configure();
    kappa::workers::join_pool();
    kappa::cli::main()
}
