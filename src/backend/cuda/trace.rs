//! A timeline of the device's stream, for `kappa profile gpu`: while it is
//! on, every kernel launch, library call (cuBLAS, cuDNN, cuSOLVER) and copy
//! is bracketed by two CUDA events, and [`Trace::finish`] hands back the time
//! between each pair, named. Off, the default, a span costs one relaxed load.
//!
//! Why events and not a profiler: the GPU machines have no Nsight Systems,
//! and the one question a step's slowness first asks, whether the device
//! waits for the host or the host for the device, needs only each op's time
//! on the stream against the step's.
//!
//! A span brackets its op on the stream, so when the device has drained the
//! queue and waits for the host, the span also holds the launch's own host
//! time (a few µs): in a launch-bound step the spans overstate the kernels.

use crate::error::{Error, Result};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaStream, DriverError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Spans whose events are read, and freed, at once: a ResNet-1202 step
/// launches tens of thousands of ops, and each span holds two events until
/// it is read. Reading waits for the stream, once per this many spans.
pub const HARVEST: usize = 4096;

/// Each span's name and seconds, in launch order.
pub type Spans = Vec<(&'static str, f64)>;

/// The spans of one traced stretch of work.
#[derive(Default)]
pub struct Trace {
    on: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Launched, their events not yet read.
    pending: Vec<Span>,
    /// Read.
    done: Spans,
    /// The first event call that failed; tracing stopped there, the work went on.
    failure: Option<String>,
}

struct Span {
    name: &'static str,
    start: CudaEvent,
    end: CudaEvent,
}

fn mark(stream: &CudaStream) -> std::result::Result<CudaEvent, DriverError> {
    stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
}

impl State {
    /// Reads every pending span once the stream has run them.
    fn harvest(&mut self) -> std::result::Result<(), DriverError> {
        if let Some(last) = self.pending.last() {
            last.end.synchronize()?;
        }
        for s in self.pending.drain(..) {
            self.done.push((s.name, s.start.elapsed_ms(&s.end)? as f64 / 1e3));
        }
        Ok(())
    }
}

impl Trace {
    /// Runs `work`, one op on `stream`, as the span `name` when tracing. An
    /// event call that fails ends the trace, never the work.
    pub fn span<R>(&self, stream: &CudaStream, name: &'static str, work: impl FnOnce() -> Result<R>) -> Result<R> {
        if !self.on.load(Ordering::Relaxed) {
            return work();
        }
        let start = match mark(stream) {
            Ok(e) => e,
            Err(e) => {
                self.fail(e);
                return work();
            }
        };
        let out = work()?;
        let recorded = mark(stream).and_then(|end| {
            let mut state = self.state();
            state.pending.push(Span { name, start, end });
            if state.pending.len() < HARVEST {
                return Ok(());
            }
            state.harvest()
        });
        if let Err(e) = recorded {
            self.fail(e);
        }
        Ok(out)
    }

    /// Starts a fresh trace.
    pub fn start(&self) {
        *self.state() = State::default();
        self.on.store(true, Ordering::Relaxed);
    }

    /// Stops tracing and returns each span's name and seconds, in launch
    /// order, once the stream has run them all; an error when an event call
    /// failed on the way.
    pub fn finish(&self) -> Result<Spans> {
        self.on.store(false, Ordering::Relaxed);
        let mut state = self.state();
        if let Err(e) = state.harvest() {
            state.failure.get_or_insert(e.to_string());
        }
        match state.failure.take() {
            Some(e) => Err(Error::Backend(format!("the trace's CUDA events: {e}"))),
            None => Ok(std::mem::take(&mut state.done)),
        }
    }

    fn fail(&self, e: DriverError) {
        self.on.store(false, Ordering::Relaxed);
        self.state().failure.get_or_insert(e.to_string());
    }

    // A panic while the lock was held leaves nothing half-written that matters:
    // at worst a span short.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
