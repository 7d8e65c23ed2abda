//! How a backend times work and reports its memory: wall time on the CPU,
//! CUDA events on a device's stream (so queued work is counted when it runs,
//! not when it is launched).

use crate::error::Result;
use std::time::Instant;

/// How a backend times work and reports memory.
pub trait Clock {
    /// Seconds `work` takes on the device (all of it finished).
    fn seconds(&self, work: &mut dyn FnMut() -> Result<()>) -> Result<f64>;
    /// Starts a fresh peak-memory count.
    fn reset_peak(&self) -> Result<()>;
    /// Bytes of device memory in use at the peak since [`Clock::reset_peak`]; None on the CPU.
    fn peak_bytes(&self) -> Result<Option<u64>>;
}

/// The CPU: wall time, no device memory.
pub struct WallClock;

impl Clock for WallClock {
    fn seconds(&self, work: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        let t = Instant::now();
        work()?;
        Ok(t.elapsed().as_secs_f64())
    }
    fn reset_peak(&self) -> Result<()> {
        Ok(())
    }
    fn peak_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// A CUDA device: CUDA events around the work on its stream, and its
/// memory pool's high-water mark.
#[cfg(feature = "cuda-backend")]
impl Clock for crate::backend::cuda::Cuda {
    fn seconds(&self, work: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        use cudarc::driver::sys::CUevent_flags;
        let stream = self.stream();
        let err = |e: cudarc::driver::DriverError| crate::error::Error::Backend(format!("CUDA events: {e}"));
        let event = || stream.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(err);
        let (start, end) = (event()?, event()?);
        start.record(stream).map_err(err)?;
        work()?;
        end.record(stream).map_err(err)?;
        end.synchronize().map_err(err)?;
        Ok(start.elapsed_ms(&end).map_err(err)? as f64 / 1e3)
    }
    fn reset_peak(&self) -> Result<()> {
        self.synchronize()?;
        self.reset_peak_memory()
    }
    fn peak_bytes(&self) -> Result<Option<u64>> {
        self.synchronize()?;
        self.peak_memory().map(Some)
    }
}
