"""PyTorch (CPU) side of `scripts/bench`'s ResNet-1202 row: STEPS SGD steps of a
CIFAR ResNet (post-activation, type-A shortcuts, as kappa's `resnet`) at batch
128 on random 3×32×32 inputs. Prints seconds per step over all steps, the
first included (as kappa's `examples_per_second` counts them), and over the
steps after the first (whose page faults swing with the host's memory);
`scripts/bench` wraps it in /usr/bin/time -v for the peak RSS.

Run: python torch_resnet_steps.py DEPTH STEPS
"""
import sys, time
import torch, torch.nn as nn, torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.extra:
            # Type A: the new channels are zeros, split around the old ones.
            short = F.pad(short, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(out + short)


def cifar_resnet(depth, classes=10):
    blocks = (depth - 2) // 6
    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for stage, cout in enumerate((16, 32, 64)):
        for b in range(blocks):
            layers.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))


def main():
    depth, steps = int(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(0)
    model = cifar_resnet(depth)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    start = time.perf_counter()
    step()
    first = time.perf_counter()
    for _ in range(steps - 1):
        step()
    end = time.perf_counter()
    after = f", {(end - first) / (steps - 1):.3f} s/step after the first" if steps > 1 else ""
    print(f"resnet{depth}_cifar_b128 {(end - start) / steps:.3f} s/step{after}", flush=True)


if __name__ == "__main__":
    main()
