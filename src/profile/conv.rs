//! `kappa profile conv`: times the 3×3 stride-1 pad-1 convolutions of the
//! CIFAR ResNet stages (16 channels on 32×32, 32 on 16×16, 64 on 8×8) in
//! the three directions a training step runs them, with counted flops and
//! bytes, in the binary's own copy of the kernels. The direct kernels are
//! compiled once, in the library, so the benches run the same machine code
//! (lanes.rs, "One compiled copy"); the im2col and Winograd paths are still
//! generic, compiled anew in every crate that calls them, and once two such
//! copies differed (the binary's at 0.6× the benches' speed). So this is
//! how the code the binary trains with is rated.

use super::covariance::{activation, Shape};
use super::{bounds, median, of_bound};
use crate::backend::cpu::peaks::Probe;
use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Device, Window};
use crate::clock::{Clock, WallClock};
#[cfg(not(feature = "cuda-backend"))]
use crate::error::Error;
use crate::error::Result;

/// The stages' channels and sides.
const STAGES: [(usize, usize); 3] = [(16, 32), (32, 16), (64, 8)];

/// The directions, in the order [`time`] returns them.
const DIRECTIONS: [&str; 3] = ["forward", "backward-data", "backward-filter"];

/// Seconds per call (medians) of the forward conv, backward-data and
/// backward-filter of `g` with as many output channels as input ones, each
/// after an untimed call that warms whatever runs it.
fn time<B: Backend>(backend: &B, clock: &dyn Clock, g: Window, repeats: usize) -> Result<[f64; 3]> {
    let planes = Shape { n: g.n, c: g.c, h: g.h, w: g.w };
    let (x, dy) = (activation(backend, planes)?, activation(backend, planes)?);
    let w = activation(backend, Shape { n: g.c, c: g.c, h: 3, w: 3 })?;
    let mut calls: [Box<dyn FnMut() -> Result<()>>; 3] = [
        Box::new(|| backend.conv2d(&x, &w, g, g.c).map(drop)),
        Box::new(|| backend.conv2d_backward_data(&dy, &w, g, g.c).map(drop)),
        Box::new(|| backend.conv2d_backward_filter(&dy, &x, g, g.c).map(drop)),
    ];
    let mut seconds = [0.0; 3];
    for (call, s) in calls.iter_mut().zip(&mut seconds) {
        call()?;
        let runs = (0..repeats.max(1)).map(|_| clock.seconds(call.as_mut())).collect::<Result<Vec<_>>>()?;
        *s = median(runs);
    }
    Ok(seconds)
}

/// `kappa profile conv`: prints each stage's three directions with their
/// times, rates and fraction of the bound that applies to them.
pub fn conv(device: &str, batch: usize, repeats: usize) -> Result<()> {
    conv_against(device, batch, repeats, Probe::FULL)
}

fn conv_against(device: &str, batch: usize, repeats: usize, probe: Probe) -> Result<()> {
    let device: Device = device.parse()?;
    for (c, side) in STAGES {
        crate::size::elements(&format!("the {c}c{side} activations"), &[batch, c, side, side], "--batch-size")?;
    }
    let windows = STAGES.map(|(c, side)| Window { n: batch, c, h: side, w: side, kh: 3, kw: 3, stride: 1, pad: 1 });
    let times = match device {
        Device::Cpu => windows.map(|g| time(&Cpu::<f32>::new(), &WallClock, g, repeats)),
        #[cfg(feature = "cuda-backend")]
        Device::Cuda(i) => {
            let dev = crate::backend::cuda::Cuda::new(i)?;
            windows.map(|g| time(&dev, &dev, g, repeats))
        }
        #[cfg(not(feature = "cuda-backend"))]
        Device::Cuda(i) => return Err(Error::CudaNotCompiled(i)),
    };
    let bounds = bounds(device, probe)?;
    println!("conv on {device}: the CIFAR ResNet stages' 3×3 stride-1 pad-1 convs, batch {batch}, f32");
    match &bounds {
        Some(b) => {
            println!("  peaks: {:.1} GFLOP/s f32, {:.1} GB/s ({})", b.peaks.fp32_flops / 1e9, b.peaks.bytes_per_second / 1e9, b.source)
        }
        None => println!("  peaks: unknown (the device does not report them), so no fraction of the bound"),
    }
    for (g, seconds) in windows.iter().zip(times) {
        let (plane, filters) = ((g.n * g.c * g.h * g.w) as f64, (g.c * g.c * 9) as f64);
        // Every direction multiplies each filter tap into every position once,
        // and at the least reads two of x, dy, w and writes the third.
        let flops = 2.0 * plane * g.c as f64 * 9.0;
        let bytes = 4.0 * (2.0 * plane + filters);
        for (direction, s) in DIRECTIONS.iter().zip(seconds?) {
            println!(
                "  {:>2}c{:<2} {direction:<15} {:>8.3} ms  {:>10.3e} flop  {:>10.3e} B  {:>7.1} GFLOP/s  {}",
                g.c,
                g.h,
                s * 1e3,
                flops,
                bytes,
                flops / s / 1e9,
                bounds.as_ref().map(|b| of_bound(&b.peaks, flops, bytes, s)).unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_path_times_every_direction() {
        let g = Window { n: 2, c: 3, h: 8, w: 8, kh: 3, kw: 3, stride: 1, pad: 1 };
        assert!(time(&Cpu::<f32>::new(), &WallClock, g, 2).unwrap().iter().all(|&s| s > 0.0));
        conv_against("cpu", 1, 1, Probe { gemm_side: 32, stream_len: 1 << 12 }).unwrap();
    }
}
