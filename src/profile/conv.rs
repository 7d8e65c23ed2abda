//! `kappa profile conv`: times every convolution shape of the CIFAR ResNets
//! (the stem, each stage's 3×3 stride-1 convs, the 3×3 stride-2 convs that
//! open stages 2 and 3, and type B's 1×1 stride-2 projections beside them)
//! in the directions a training step runs them, with counted flops and
//! bytes, in the binary's own copy of the kernels. The direct kernels are
//! compiled once, in the library, so the benches run the same machine code
//! (lanes.rs, "One compiled copy"); the im2col path and `winograd.rs` are
//! still generic, compiled anew in every crate that calls them, and once two such
//! copies differed (the binary's at 0.6× the benches' speed). So this is
//! how the code the binary trains with is rated. `scripts/torch_convs.py`
//! times the same shapes in PyTorch, under the same labels.

use super::covariance::{activation, Shape};
use super::{bounds, median, of_bound};
use crate::backend::cpu::peaks::Probe;
use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Device, Window};
use crate::clock::{Clock, WallClock};
#[cfg(not(feature = "cuda-backend"))]
use crate::error::Error;
use crate::error::Result;

/// One convolution of the CIFAR ResNets: `c_in → c_out` channels on a
/// `side×side` plane, a `k×k` window moved by `stride` and padded by `k/2`.
#[derive(Clone, Copy)]
struct Layer {
    k: usize,
    stride: usize,
    c_in: usize,
    c_out: usize,
    side: usize,
}

const fn layer(k: usize, stride: usize, c_in: usize, c_out: usize, side: usize) -> Layer {
    Layer { k, stride, c_in, c_out, side }
}

/// The shapes, in the order a forward pass meets them.
const LAYERS: [Layer; 8] = [
    layer(3, 1, 3, 16, 32),
    layer(3, 1, 16, 16, 32),
    layer(3, 2, 16, 32, 32),
    layer(1, 2, 16, 32, 32),
    layer(3, 1, 32, 32, 16),
    layer(3, 2, 32, 64, 16),
    layer(1, 2, 32, 64, 16),
    layer(3, 1, 64, 64, 8),
];

/// The directions, in the order [`time`] returns them.
const DIRECTIONS: [&str; 3] = ["forward", "backward-data", "backward-filter"];

impl Layer {
    fn window(self, n: usize) -> Window {
        let (k, side) = (self.k, self.side);
        Window { n, c: self.c_in, h: side, w: side, kh: k, kw: k, stride: self.stride, pad: k / 2 }
    }

    /// "3×3/2 16→32 32²": the label `scripts/torch_convs.py` prints too.
    fn label(self) -> String {
        format!("{0}×{0}/{1} {2}→{3} {4}²", self.k, self.stride, self.c_in, self.c_out, self.side)
    }

    /// The stem's input is the data, whose gradient no step takes.
    fn runs(self, direction: usize) -> bool {
        self.c_in != 3 || DIRECTIONS[direction] != "backward-data"
    }
}

/// Seconds per call (medians) of the forward conv, backward-data and
/// backward-filter of `layer` at batch `n`, each after an untimed call that
/// warms whatever runs it; `None` for a direction no training step runs.
fn time<B: Backend>(backend: &B, clock: &dyn Clock, layer: Layer, n: usize, repeats: usize) -> Result<[Option<f64>; 3]> {
    let g = layer.window(n);
    let (oh, ow) = g.out("profile conv")?;
    let x = activation(backend, Shape { n, c: g.c, h: g.h, w: g.w })?;
    let dy = activation(backend, Shape { n, c: layer.c_out, h: oh, w: ow })?;
    let w = activation(backend, Shape { n: layer.c_out, c: g.c, h: g.kh, w: g.kw })?;
    let c_out = layer.c_out;
    let mut calls: [Box<dyn FnMut() -> Result<()>>; 3] = [
        Box::new(|| backend.conv2d(&x, &w, g, c_out).map(drop)),
        Box::new(|| backend.conv2d_backward_data(&dy, &w, g, c_out).map(drop)),
        Box::new(|| backend.conv2d_backward_filter(&dy, &x, g, c_out).map(drop)),
    ];
    let mut seconds = [None; 3];
    for (d, (call, s)) in calls.iter_mut().zip(&mut seconds).enumerate() {
        if layer.runs(d) {
            call()?;
            let runs = (0..repeats.max(1)).map(|_| clock.seconds(call.as_mut())).collect::<Result<Vec<_>>>()?;
            *s = Some(median(runs));
        }
    }
    Ok(seconds)
}

/// `kappa profile conv`: prints each shape's directions with their times,
/// rates and fraction of the bound that applies to them.
pub fn conv(device: &str, batch: usize, repeats: usize) -> Result<()> {
    conv_against(device, batch, repeats, Probe::FULL)
}

fn conv_against(device: &str, batch: usize, repeats: usize, probe: Probe) -> Result<()> {
    let device: Device = device.parse()?;
    for l in LAYERS {
        let widest = l.c_in.max(l.c_out);
        crate::size::elements(&format!("the {} conv's activations", l.label()), &[batch, widest, l.side, l.side], "--batch-size")?;
    }
    let times = match device {
        Device::Cpu => LAYERS.map(|l| time(&Cpu::<f32>::new(), &WallClock, l, batch, repeats)),
        #[cfg(feature = "cuda-backend")]
        Device::Cuda(i) => {
            let dev = crate::backend::cuda::Cuda::new(i)?;
            LAYERS.map(|l| time(&dev, &dev, l, batch, repeats))
        }
        #[cfg(not(feature = "cuda-backend"))]
        Device::Cuda(i) => return Err(Error::CudaNotCompiled(i)),
    };
    let bounds = bounds(device, probe)?;
    println!("conv on {device}: the CIFAR ResNets' convs (k×k/stride c_in→c_out side²), batch {batch}, f32");
    println!("  flop: the direct convolution's count; a Winograd path does fewer multiplies, so its rate is an effective one and can pass the peak");
    match &bounds {
        Some(b) => {
            println!("  peaks: {:.1} GFLOP/s f32, {:.1} GB/s ({})", b.peaks.fp32_flops / 1e9, b.peaks.bytes_per_second / 1e9, b.source)
        }
        None => println!("  peaks: unknown (the device does not report them), so no fraction of the bound"),
    }
    for (l, seconds) in LAYERS.into_iter().zip(times) {
        let g = l.window(batch);
        let (oh, ow) = g.out("profile conv")?;
        let (x, y, w) =
            ((batch * l.c_in * l.side * l.side) as f64, (batch * l.c_out * oh * ow) as f64, (l.c_out * l.c_in * l.k * l.k) as f64);
        // Every direction multiplies each filter tap into every output
        // position once, and at the least reads two of x, dy, w and writes
        // the third.
        let flops = 2.0 * y * (l.c_in * l.k * l.k) as f64;
        let bytes = 4.0 * (x + y + w);
        for (direction, s) in DIRECTIONS.iter().zip(seconds?) {
            let Some(s) = s else { continue };
            println!(
                "  {:<17} {direction:<15} {:>8.3} ms  {:>10.3e} flop  {:>10.3e} B  {:>7.1} GFLOP/s  {}",
                l.label(),
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
    fn the_cpu_path_times_every_direction_a_step_runs() {
        for l in [layer(3, 1, 3, 4, 8), layer(3, 2, 3, 5, 8), layer(1, 2, 4, 6, 8)] {
            let seconds = time(&Cpu::<f32>::new(), &WallClock, l, 2, 2).unwrap();
            // Only the stem (3 input channels) skips its data gradient.
            assert_eq!(seconds.map(|s| s.is_some()), [true, l.c_in != 3, true], "{}", l.label());
            assert!(seconds.iter().flatten().all(|&s| s > 0.0));
        }
        conv_against("cpu", 1, 1, Probe { gemm_side: 32, stream_len: 1 << 12 }).unwrap();
    }

    #[test]
    fn the_shapes_are_the_cifar_resnets_convs() {
        let labels = LAYERS.map(|l| l.label());
        assert_eq!(labels[0], "3×3/1 3→16 32²");
        assert_eq!(labels[3], "1×1/2 16→32 32²");
        // Each stride-2 conv halves its side, so the next stage's plane is its output.
        for l in LAYERS.iter().filter(|l| l.stride == 2) {
            assert_eq!(l.window(1).out("test").unwrap(), (l.side / 2, l.side / 2), "{}", l.label());
        }
    }
}
