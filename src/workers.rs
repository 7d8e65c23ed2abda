//! The thread pool the binary and the benches run on: rayon's global pool
//! with the calling (main) thread as its first worker.
//!
//! A parallel call made from outside the pool queues its job, wakes a worker
//! and puts the caller to sleep until the job is done; a training step makes
//! some 200 such calls (every product, element-wise pass and update). From a
//! worker the same call runs in place and the other workers steal from it.
//! Alternated step by step in one binary (2026-12-05, 2 cores, six rounds
//! of 30), the 20×256 MLP step took 51.7–54.5 ms at best from inside the
//! pool against 54.7–56.9 ms from outside; the ResNet-20 step, whose calls
//! are longer, was unchanged within the noise.
//!
//! The pool's size and every result are the same either way: the work is
//! cut into the same fixed chunks.

/// Makes the calling thread worker 0 of rayon's global pool, of
/// `RAYON_NUM_THREADS` workers (all the cores when it is unset or not a
/// positive number, as rayon reads it). Call it first thing in `main`.
///
/// A pool of one keeps rayon's default, a worker thread of its own: the
/// main thread runs no jobs while it waits outside rayon, so as the only
/// worker it would hang a parallel loop started on another thread while it
/// waits on that thread's results (the ImageNet prefetcher decodes on the
/// pool). Does nothing if the global pool already exists.
pub fn join_pool() {
    let threads =
        pool_size(std::env::var("RAYON_NUM_THREADS").ok().as_deref(), std::thread::available_parallelism().map_or(1, |n| n.get()));
    let builder = rayon::ThreadPoolBuilder::new().num_threads(threads);
    let builder = if threads > 1 { builder.use_current_thread() } else { builder };
    // An error means the pool already exists (or no thread could be
    // started, which rayon will report when it first needs one).
    let _ = builder.build_global();
}

/// The size rayon gives its global pool: a positive `RAYON_NUM_THREADS`,
/// else one worker per core.
fn pool_size(env: Option<&str>, cores: usize) -> usize {
    env.and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0).unwrap_or(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_reads_the_environment_as_rayon_does() {
        assert_eq!(pool_size(None, 2), 2);
        assert_eq!(pool_size(Some("3"), 2), 3);
        assert_eq!(pool_size(Some("0"), 2), 2);
        assert_eq!(pool_size(Some("many"), 4), 4);
        assert_eq!(pool_size(Some(" 3"), 1), 1);
    }
}
