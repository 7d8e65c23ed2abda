"""PyTorch (CPU) side of `scripts/bench`'s conv table: every convolution shape
of the CIFAR ResNets at batch 128, f32, in the directions a training step runs
them, printed under the labels `kappa profile conv` prints, so that
`scripts/bench_table.py` can pair the two. Each figure is the median of
REPEATS calls after one untimed call, as kappa's. The backward directions are
`aten.convolution_backward` with one output asked for each, the call PyTorch's
autograd makes (it asks for both at once in a step, which oneDNN runs as two
primitives).

Run: python torch_convs.py [REPEATS]
"""
import statistics, sys, time
import torch

# (k, stride, c_in, c_out, side), as src/profile/conv.rs's LAYERS.
LAYERS = [(3, 1, 3, 16, 32), (3, 1, 16, 16, 32), (3, 2, 16, 32, 32), (1, 2, 16, 32, 32),
          (3, 1, 32, 32, 16), (3, 2, 32, 64, 16), (1, 2, 32, 64, 16), (3, 1, 64, 64, 8)]
BATCH = 128


def median_seconds(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.manual_seed(0)
    for k, stride, c_in, c_out, side in LAYERS:
        pad = k // 2
        x = torch.randn(BATCH, c_in, side, side)
        w = torch.randn(c_out, c_in, k, k)
        y = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)
        dy = torch.randn_like(y)

        def backward(mask):
            return lambda: torch.ops.aten.convolution_backward(
                dy, x, w, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1, mask)

        calls = [("forward", lambda: torch.nn.functional.conv2d(x, w, stride=stride, padding=pad)),
                 ("backward-data", backward([True, False, False])),
                 ("backward-filter", backward([False, True, False]))]
        label = f"{k}×{k}/{stride} {c_in}→{c_out} {side}²"
        for direction, call in calls:
            # The stem's input is the data, whose gradient no step takes.
            if c_in == 3 and direction == "backward-data":
                continue
            with torch.no_grad():
                s = median_seconds(call, repeats)
            print(f"  {label:<17} {direction:<15} {s * 1e3:8.3f} ms", flush=True)


if __name__ == "__main__":
    main()
