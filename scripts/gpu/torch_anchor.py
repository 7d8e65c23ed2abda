"""The GPU run's PyTorch anchor: the workloads `kappa profile gpu` times, in
PyTorch on the same GPU, fp32 with TF32 off, so scripts/gpu/run's summary can
put the two side by side.

- a training step (forward, backward, SGD with momentum) of the CIFAR
  ResNet-20/56/110/1202 (type-A shortcuts, BN, He init) at batch 128, in img/s;
- the Σx accumulation XᵀX of dense (N×C) and 3×3-patch (unfolded N·H·W × 9C)
  activations, in GB/s and GFLOP/s counted as kappa counts them
  (lower triangle: rows·K·(K+1) flops; the activation read once, K×K read and written);
- torch.linalg.eigvalsh (cuSOLVER syevd) at n = 256, 576, 1152, 2304, 4608;
- the peak device memory of the ResNet-1202 step;
- one more training step per depth up to ResNet-110 under torch.profiler: the
  device time of each kernel (and copy), by name, against the step's span on
  the device, as `kappa profile gpu` traces its own step (`timeline`).

The JSON is rewritten after every figure, so a run cut off by its time limit
keeps what it measured.

Usage: python3 scripts/gpu/torch_anchor.py --json OUT.json [--depths 20,56] [--quick]
"""

import argparse
import json
import os
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, help="where to write the figures")
    p.add_argument("--depths", default="20,56,110,1202", help="CIFAR ResNet depths (6n+2)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps per depth (after 3 warm-up steps)")
    p.add_argument("--eig-sizes", default="256,576,1152,2304,4608")
    # ResNet-1202's step under the profiler is tens of thousands of kernel events for Python to
    # read back: seconds of the run's time limit, for a figure kappa's own trace gives for its side.
    p.add_argument("--timeline-depths", default="20,56,110", help="depths whose step is also profiled")
    return p.parse_args()


def main():
    args = parse()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError as e:
        sys.exit(f"error: PyTorch is not importable ({e}); the anchor needs the image's torch")
    if not torch.cuda.is_available():
        sys.exit("error: torch.cuda.is_available() is false; the anchor runs on the GPU only")
    # fp32 throughout: TF32 would round the products to 10-bit mantissas.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda:0")

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.stride, self.pad = stride, cout - cin

        def forward(self, x):
            y = F.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            s = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.pad:  # type-A shortcut: subsample, zero channels
                s = F.pad(s, (0, 0, 0, 0, 0, self.pad))
            return F.relu(y + s)

    class ResNet(nn.Module):
        def __init__(self, depth):
            super().__init__()
            n = (depth - 2) // 6
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            blocks, cin = [], 16
            for i, cout in enumerate([16, 32, 64]):
                for j in range(n):
                    blocks.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, 10)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))

    def timed(fn, repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / repeats

    def timeline(fn, names=15):
        """fn once under torch.profiler: each kernel's device time summed by name, the largest `names` of
        them, and their sum against the span from the first kernel's start to the last's end. The CPU
        activity is on too, as in the profiler's own examples: without it, a build may take the legacy
        path, which refuses device-only profiling."""
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        if not kernels:
            return {"error": "the profiler recorded no CUDA kernel"}
        by_name = {}
        for e in kernels:
            ops, us = by_name.get(e.name, (0, 0.0))
            by_name[e.name] = (ops + 1, us + e.time_range.elapsed_us())
        span_us = max(e.time_range.end for e in kernels) - min(e.time_range.start for e in kernels)
        ranked = sorted(by_name.items(), key=lambda kv: -kv[1][1])
        return {"seconds": span_us / 1e6, "busy_seconds": sum(us for _, us in by_name.values()) / 1e6, "ops": len(kernels),
                "by_name": [{"name": n[:120], "ops": ops, "seconds": us / 1e6} for n, (ops, us) in ranked[:names]]}

    timeline_depths = {int(d) for d in args.timeline_depths.split(",") if d}

    def save():
        with open(args.json + ".part", "w") as f:
            json.dump(out, f, indent=2)
        os.replace(args.json + ".part", args.json)

    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "tf32": False, "train": [], "covariance": [], "eigvalsh": []}

    for depth in [int(d) for d in args.depths.split(",") if d]:
        torch.cuda.reset_peak_memory_stats()
        model = ResNet(depth).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        x = torch.randn(args.batch, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (args.batch,), device=dev)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        for _ in range(3):
            step()
        seconds = timed(step, args.steps)
        entry = {"depth": depth, "batch": args.batch, "seconds_per_step": seconds, "images_per_second": args.batch / seconds,
                 "peak_bytes": torch.cuda.max_memory_allocated()}
        print(f"resnet-{depth}: {args.batch / seconds:,.0f} img/s, peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)
        if depth not in timeline_depths:
            entry["timeline"] = {"skipped": f"--timeline-depths {args.timeline_depths}"}
        else:
            try:
                entry["timeline"] = t = timeline(step)
                if "busy_seconds" in t:
                    print(f"  profiled step: kernels busy {t['busy_seconds'] * 1e3:.2f} ms in {t['ops']} kernels "
                          f"({100 * t['busy_seconds'] / seconds:.0f}% of an unprofiled step, {seconds * 1e3:.2f} ms)", flush=True)
            except Exception as e:  # the profiler is a diagnostic: its failure must not cost the figures above
                entry["timeline"] = {"error": f"{type(e).__name__}: {e}"}
        out["train"].append(entry)
        save()
        del model, opt

    # Σx: dense 1024×256 and the patches of a 128×16×32×32 and a 128×64×8×8 activation.
    for n, c, h, w in [(1024, 256, 1, 1), (128, 16, 32, 32), (128, 64, 8, 8)]:
        act = torch.randn(n, c, h, w, device=dev)
        if h == 1:
            m = act.reshape(n, c)
        else:
            m = F.unfold(act, 3, padding=1).transpose(1, 2).reshape(-1, 9 * c)
        rows, k = m.shape
        acc = torch.zeros(k, k, device=dev)
        seconds = timed(lambda: acc.addmm_(m.t(), m, alpha=1.0 / rows), 20)
        flops, nbytes = rows * k * (k + 1), 4.0 * n * c * h * w + 8.0 * k * k
        entry = {"shape": [n, c, h, w], "rows": rows, "k": k, "seconds": seconds,
                 "gflops": flops / seconds / 1e9, "gbytes_per_second": nbytes / seconds / 1e9,
                 "note": "full XᵀX, its flops counted over the lower triangle: half the products it computes"}
        if h > 1:
            # kappa's patch Σx time includes its unfolding; this one does too ("seconds" stays the
            # product alone, as in the runs before it, so those stay comparable).
            def unfolded_product():
                u = F.unfold(act, 3, padding=1).transpose(1, 2).reshape(-1, 9 * c)
                acc.addmm_(u.t(), u, alpha=1.0 / rows)

            entry["seconds_with_unfold"] = timed(unfolded_product, 20)
        out["covariance"].append(entry)
        save()
        with_unfold = f", {entry['seconds_with_unfold'] * 1e3:.3f} ms with the unfold" if h > 1 else ""
        print(f"covariance {n}x{c}x{h}x{w}: {seconds * 1e3:.3f} ms{with_unfold}", flush=True)

    for n in [int(s) for s in args.eig_sizes.split(",") if s]:
        a = torch.randn(n, n, device=dev)
        a = a @ a.t() / n
        torch.linalg.eigvalsh(a)
        seconds = timed(lambda: torch.linalg.eigvalsh(a), 3)
        out["eigvalsh"].append({"n": n, "seconds": seconds})
        save()
        print(f"eigvalsh {n}: {seconds * 1e3:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
