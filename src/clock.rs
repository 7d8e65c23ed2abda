//! How a backend times work and reports its memory: wall time on the CPU,
//! CUDA events on a device's stream (so queued work is counted when it runs,
//! not when it is launched), and there also a timeline of each op.

use crate::error::Result;
use serde::Serialize;
use std::time::Instant;

/// How a backend times work and reports memory.
pub trait Clock {
    /// Seconds `work` takes on the device (all of it finished).
    fn seconds(&self, work: &mut dyn FnMut() -> Result<()>) -> Result<f64>;
    /// Runs `work` with each of its ops timed on the device, where the
    /// backend can; None on the CPU, whose ops have no stream to time.
    fn timeline(&self, work: &mut dyn FnMut() -> Result<()>) -> Result<Option<Timeline>> {
        work().map(|()| None)
    }
    /// Starts a fresh peak-memory count.
    fn reset_peak(&self) -> Result<()>;
    /// Bytes of device memory in use at the peak since [`Clock::reset_peak`]; None on the CPU.
    fn peak_bytes(&self) -> Result<Option<u64>>;
}

/// Where a stretch of work's time went on the device's stream: each op's
/// span (kernel launch, library call or copy), summed by name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    /// The stretch on the stream, traced (the trace's own events included).
    pub seconds: f64,
    /// The ops' spans together: what the device was busy for. The rest of
    /// `seconds` it waited for the host.
    pub busy_seconds: f64,
    pub ops: usize,
    /// By name, the largest total first.
    pub by_name: Vec<OpTime>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpTime {
    pub name: String,
    pub ops: usize,
    pub seconds: f64,
}

impl Timeline {
    /// The timeline of a stretch of `seconds` whose ops ran as `spans`
    /// (name, seconds), in any order; names tied on time keep first-seen order.
    pub fn from_spans(seconds: f64, spans: &[(&str, f64)]) -> Timeline {
        let mut by_name: Vec<OpTime> = Vec::new();
        for &(name, t) in spans {
            match by_name.iter_mut().find(|o| o.name == name) {
                Some(o) => (o.ops, o.seconds) = (o.ops + 1, o.seconds + t),
                None => by_name.push(OpTime { name: name.to_string(), ops: 1, seconds: t }),
            }
        }
        by_name.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Timeline { seconds, busy_seconds: spans.iter().map(|s| s.1).sum(), ops: spans.len(), by_name }
    }
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
    /// A failed trace is a warning, not an error: the work ran, and the
    /// figures around it still count.
    fn timeline(&self, work: &mut dyn FnMut() -> Result<()>) -> Result<Option<Timeline>> {
        let (seconds, spans) = self.traced(|| self.seconds(work))?;
        Ok(spans.inspect_err(|e| eprintln!("warning: no timeline: {e}")).ok().map(|s| Timeline::from_spans(seconds, &s)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_sums_its_spans_by_name_largest_first() {
        let spans = [("relu", 1.0), ("gemm", 2.0), ("relu", 1.5), ("bn", 0.5), ("gemm", 0.25)];
        let t = Timeline::from_spans(8.0, &spans);
        assert_eq!((t.seconds, t.busy_seconds, t.ops), (8.0, 5.25, 5));
        let named: Vec<_> = t.by_name.iter().map(|o| (o.name.as_str(), o.ops, o.seconds)).collect();
        assert_eq!(named, [("relu", 2, 2.5), ("gemm", 2, 2.25), ("bn", 1, 0.5)]);
        assert_eq!(Timeline::from_spans(1.0, &[]), Timeline { seconds: 1.0, busy_seconds: 0.0, ops: 0, by_name: vec![] });
    }

    #[test]
    fn the_cpu_runs_the_work_and_has_no_timeline() {
        let mut runs = 0;
        let mut work = || {
            runs += 1;
            Ok(())
        };
        assert_eq!(WallClock.timeline(&mut work).unwrap(), None);
        assert_eq!(runs, 1);
    }
}
