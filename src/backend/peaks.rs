//! A device's peak rates, from the attributes its driver reports, so measured
//! rates can be stated as a fraction of what the device can do.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Peaks {
    pub fp32_flops: f64,
    pub bytes_per_second: f64,
}

impl Peaks {
    /// FP32 lanes per multiprocessor by compute capability (NVIDIA's tables):
    /// 64 on 6.0, 7.x and 8.0; 128 on 6.1/6.2, 8.6, 8.9, 9.0 and later.
    pub fn fp32_lanes(major: i32, minor: i32) -> Option<f64> {
        match (major, minor) {
            (6, 0) | (7, _) | (8, 0) => Some(64.0),
            (6, _) | (8, _) | (9, _) | (10, _) | (12, _) => Some(128.0),
            _ => None,
        }
    }

    /// FMA peak (2 flops per lane per clock) and memory bandwidth (double
    /// data rate over the bus); clocks in kHz, as the driver gives them.
    pub fn of(sms: usize, lanes: f64, clock_khz: f64, memory_clock_khz: f64, bus_bits: f64) -> Peaks {
        Peaks { fp32_flops: 2.0 * sms as f64 * lanes * clock_khz * 1e3, bytes_per_second: 2.0 * memory_clock_khz * 1e3 * bus_bits / 8.0 }
    }

    /// Seconds a kernel of `flops` and `bytes` needs at best: the peak it
    /// would hit first at its counts (the roofline).
    pub fn bound_seconds(&self, flops: f64, bytes: f64) -> f64 {
        (flops / self.fp32_flops).max(bytes / self.bytes_per_second)
    }

    /// Whether that bound is the arithmetic one rather than the bandwidth.
    pub fn compute_bound(&self, flops: f64, bytes: f64) -> bool {
        flops / self.fp32_flops >= bytes / self.bytes_per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_follow_the_device_attributes() {
        // An H100 SXM's attributes: 132 SMs at 1.98 GHz, 2.619 GHz HBM3 over 5120 bits.
        let p = Peaks::of(132, Peaks::fp32_lanes(9, 0).unwrap(), 1_980_000.0, 2_619_000.0, 5120.0);
        assert!((p.fp32_flops / 1e12 - 66.9).abs() < 0.1, "{p:?}");
        assert!((p.bytes_per_second / 1e12 - 3.35).abs() < 0.01, "{p:?}");
        assert_eq!(Peaks::fp32_lanes(8, 0), Some(64.0));
        assert_eq!(Peaks::fp32_lanes(8, 6), Some(128.0));
        assert_eq!(Peaks::fp32_lanes(5, 0), None);
    }

    #[test]
    fn the_bound_is_the_peak_a_kernel_hits_first() {
        let p = Peaks { fp32_flops: 1e12, bytes_per_second: 1e11 };
        // 10 flops per byte: compute-bound, 1 s of arithmetic against 0.1 s of traffic.
        assert_eq!(p.bound_seconds(1e12, 1e10), 1.0);
        assert!(p.compute_bound(1e12, 1e10));
        // 1 flop per byte: bandwidth-bound.
        assert_eq!(p.bound_seconds(1e10, 1e10), 0.1);
        assert!(!p.compute_bound(1e10, 1e10));
    }
}
