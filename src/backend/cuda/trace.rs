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
use std::sync::{Mutex, MutexGuard};

/// The spans of one traced stretch of work, in launch order.
#[derive(Default)]
pub struct Trace {
    on: AtomicBool,
    spans: Mutex<Vec<Span>>,
}

struct Span {
    name: &'static str,
    start: CudaEvent,
    end: CudaEvent,
}

fn event_error(e: DriverError) -> Error {
    Error::Backend(format!("CUDA events (trace): {e}"))
}

fn mark(stream: &CudaStream) -> Result<CudaEvent> {
    stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(event_error)
}

impl Trace {
    /// Runs `work`, one op on `stream`, as the span `name` when tracing.
    pub fn span<R>(&self, stream: &CudaStream, name: &'static str, work: impl FnOnce() -> Result<R>) -> Result<R> {
        if !self.on.load(Ordering::Relaxed) {
            return work();
        }
        let start = mark(stream)?;
        let out = work()?;
        let end = mark(stream)?;
        self.locked()?.push(Span { name, start, end });
        Ok(out)
    }

    /// Starts a fresh trace.
    pub fn start(&self) -> Result<()> {
        self.locked()?.clear();
        self.on.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Stops tracing and returns each span's name and seconds, in launch
    /// order, once the stream has run them all.
    pub fn finish(&self) -> Result<Vec<(&'static str, f64)>> {
        self.on.store(false, Ordering::Relaxed);
        let spans = std::mem::take(&mut *self.locked()?);
        if let Some(last) = spans.last() {
            last.end.synchronize().map_err(event_error)?;
        }
        spans.iter().map(|s| Ok((s.name, s.start.elapsed_ms(&s.end).map_err(event_error)? as f64 / 1e3))).collect()
    }

    fn locked(&self) -> Result<MutexGuard<'_, Vec<Span>>> {
        self.spans.lock().map_err(|_| Error::Backend("the trace was poisoned by an earlier panic".into()))
    }
}
