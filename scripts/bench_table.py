"""Reads the logs `scripts/bench` wrote to DIR and prints issue 14's table:
each workload's PyTorch and kappa figures over the rounds (min–max; each a
median: the anchor's of its runs, criterion's of its samples) and kappa's ratio, taken within each round so that drift between rounds cancels.
Then each conv shape of the CIFAR ResNets on both sides, with kappa's kernels
as a share of the peaks measured in each round.

Run: python3 bench_table.py DIR ROUNDS
"""
import json, os, re, sys


# (row label, kappa criterion id, anchor name, "time" or "rate", target)
ROWS = [
    ("MLP 20×256 training step, batch 1024, plain", "mlp20x256_b1024_step_plain", "mlp20x256_b1024_step_plain", "time", "≤ 1.0×"),
    ("MLP 20×256 training step, batch 1024, BN", "mlp20x256_b1024_step_bn", "mlp20x256_b1024_step_bn", "time", "≤ 1.0×"),
    ("analysis step (fwd, bwd on sampled labels, 20 Σx + 20 Σ∇h, 40 eigen-solves), plain",
     "mlp20x256_b1024_analysis_plain", "mlp20x256_b1024_analysis_plain", "time", "≤ 0.5×"),
    ("analysis step, BN", "mlp20x256_b1024_analysis_bn", "mlp20x256_b1024_analysis_bn", "time", "≤ 0.5×"),
    ("CIFAR ResNet-20 training step, batch 128", "resnet_cifar_b128_step/resnet20", "resnet20_cifar_b128_step", "rate", "≥ 1.0×"),
    ("Σx of 3×3 patches, 64 ch 8×8, batch 128 (576×576), + eigenvalues",
     "covariance/cpu_patchcov_eigvalsh_576", "conv64x8x8_b128_patchcov_eigh", "time", "≤ 0.5×"),
]


def criterion_medians(folder):
    """The median time per bench id, in seconds, from the criterion estimates
    `scripts/bench` kept of one round. The anchor reports medians too, so the
    two sides are the same statistic: criterion's printed time estimates the
    mean, which one slow sample among twenty moves."""
    found = {}
    for root, _, files in os.walk(folder):
        if "estimates.json" in files and os.path.basename(root) == "new":
            bench_id = os.path.relpath(os.path.dirname(root), folder).replace(os.sep, "/")
            with open(os.path.join(root, "estimates.json"), encoding="utf-8") as f:
                found[bench_id] = json.load(f)["median"]["point_estimate"] * 1e-9
    return found


def anchor_seconds(text):
    return {m.group(1): float(m.group(2)) * 1e-3 for m in re.finditer(r"^(\S+)\s+([\d.]+) ms", text, re.M)}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def span(values, fmt):
    """"12–15 ms" from the values' formats "12 ms" and "15 ms": the unit (what
    follows the number) written once where both ends share it."""
    lo, hi = fmt(min(values)), fmt(max(values))
    if lo == hi:
        return lo
    (a, unit_a), (b, unit_b) = (re.match(r"([\d.]+)(.*)", v).groups() for v in (lo, hi))
    return f"{a}–{b}{unit_a}" if unit_a == unit_b else f"{lo}–{hi}"


def peak_rss_gib(text):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(m.group(1)) / 2**20 if m else None


# A conv line of `kappa profile conv` or `scripts/torch_convs.py`: label, direction, ms.
CONV_LINE = r"^\s+(\d+×\d+/\d+ \d+→\d+ \d+²)\s+(\S+)\s+([\d.]+) ms"


def profile_rows(text):
    """`kappa profile conv`'s kernels: {(shape, direction): (ms, GFLOP/s, % of bound, bound kind)}."""
    pattern = CONV_LINE + r"\s+\S+ flop\s+\S+ B\s+([\d.]+) GFLOP/s\s+([\d.]+)% of the (\S+) bound"
    return {(m[1], m[2]): (float(m[3]), float(m[4]), float(m[5]), m[6]) for m in re.finditer(pattern, text, re.M)}


def torch_conv_rows(text):
    """`scripts/torch_convs.py`'s lines: {(shape, direction): ms}."""
    return {(m[1], m[2]): float(m[3]) for m in re.finditer(CONV_LINE, text, re.M)}


def print_convs(out, rounds):
    """Each conv shape and direction: PyTorch's and kappa's times, kappa's
    ratio within each round, and kappa's share of the peaks that round measured."""
    texts = [read(p) for r in range(1, rounds + 1) if os.path.exists(p := os.path.join(out, f"profile.{r}.txt"))]
    runs = [profile_rows(t) for t in texts]
    if not runs or not all(runs):
        print(f"\n`kappa profile conv` printed no kernels: see {out}/profile.*.txt")
        return
    torch = [torch_conv_rows(read(p)) if os.path.exists(p := os.path.join(out, f"torchconv.{r}.txt")) else {}
             for r in range(1, rounds + 1)]
    peaks = [m[1] for t in texts if (m := re.search(r"^\s+peaks: (.*?) \(", t, re.M))]
    print(f"\nEach conv of the CIFAR ResNets, batch 128, f32 (`kappa profile conv` and `scripts/torch_convs.py`; "
          f"peaks measured each round: {'; '.join(peaks)})\n")
    print("| conv (k×k/stride c_in→c_out side²) | direction | PyTorch | kappa | kappa vs PyTorch | kappa's share of the bound |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    ms = lambda v: f"{v:.2f} ms"
    for key in runs[0]:
        got = [r[key] for r in runs if key in r]
        pairs = [(t[key], r[key][0]) for t, r in zip(torch, runs) if key in t and key in r]
        theirs = span([t for t, _ in pairs], ms) if pairs else "missing"
        ratio = span([k / t for t, k in pairs], lambda v: f"{v:.2f}×") + " the time" if pairs else "–"
        share = span([g[2] for g in got], lambda v: f"{v:.0f}%")
        print(f"| {key[0]} | {key[1]} | {theirs} | {span([g[0] for g in got], ms)} | {ratio} | {share} ({got[0][3]}) |")


def main():
    out, rounds = sys.argv[1], int(sys.argv[2])
    kappa = [criterion_medians(os.path.join(out, f"criterion.{r}")) for r in range(1, rounds + 1)]
    torch = [anchor_seconds(read(os.path.join(out, f"torch.{r}.txt"))) for r in range(1, rounds + 1)]
    print("| workload | PyTorch | kappa | kappa vs PyTorch | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, kid, tid, kind, target in ROWS:
        pairs = [(t[tid], k[kid]) for t, k in zip(torch, kappa) if tid in t and kid in k]
        if not pairs:
            print(f"| {label} | missing | missing | – | {target} |")
            continue
        if kind == "time":
            ms = lambda s: f"{s * 1e3:.0f} ms" if s >= 0.01 else f"{s * 1e3:.1f} ms"
            ratio = span([k / t for t, k in pairs], lambda v: f"{v:.2f}×")
            print(f"| {label} | {span([t for t, _ in pairs], ms)} | {span([k for _, k in pairs], ms)} | {ratio} the time | {target} |")
        else:
            # Rates, not times, so the ranges run from low to high img/s.
            rate = lambda v: f"{v:.0f} img/s"
            ratio = span([t / k for t, k in pairs], lambda v: f"{v:.2f}×")
            print(f"| {label} | {span([128 / t for t, _ in pairs], rate)} | {span([128 / k for _, k in pairs], rate)} | {ratio} the img/s | {target} |")
    print_1202(out, rounds)
    print_convs(out, rounds)


def resnet1202_round(out, r):
    """(kappa s/step, kappa GiB, PyTorch s/step, PyTorch GiB) of round r, the
    steps over all steps and over those after the first; None where a side failed."""
    k1202, t1202 = os.path.join(out, f"kappa.1202.{r}.txt"), os.path.join(out, f"torch.1202.{r}.txt")
    if not (os.path.exists(k1202) and os.path.exists(t1202)):
        return None
    ktext, ttext = read(k1202), read(t1202)
    # Each record's rate counts the examples since the run began: its elapsed time is iteration·128/rate.
    elapsed = [r["iteration"] * 128 / r["examples_per_second"] for r in map(json.loads, re.findall(r"^\{.*\}$", ktext, re.M))]
    k_step = (elapsed[-1] / len(elapsed), (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)) if len(elapsed) > 1 else None
    m = re.search(r"([\d.]+) s/step, ([\d.]+) s/step after the first", ttext)
    t_step = (float(m.group(1)), float(m.group(2))) if m else None
    figures = (k_step, peak_rss_gib(ktext), t_step, peak_rss_gib(ttext))
    return None if None in figures else figures


def print_1202(out, rounds):
    paths = [os.path.join(out, f"kappa.1202.{r}.txt") for r in range(1, rounds + 1)]
    if not any(os.path.exists(p) for p in paths):
        return
    got = [resnet1202_round(out, r) for r in range(1, rounds + 1)]
    if None in got:
        print(f"| CIFAR ResNet-1202 training step, batch 128 (3 steps) | failed: see {out}/torch.1202.*.txt and kappa.1202.*.txt | | | |")
        return
    step = lambda v: f"{v:.1f}"
    gib = lambda v: f"{v:.1f} GiB"
    times = lambda v: f"{v:.2f}×"
    # (all steps, after the first) of one side: "21.8 (16.0 after the first) s/step".
    steps = lambda side: f"{span([g[side][0] for g in got], step)} ({span([g[side][1] for g in got], step)} after the first) s/step"
    ratio = lambda i: span([g[2][i] / g[0][i] for g in got], times)
    print(
        f"| CIFAR ResNet-1202 training step, batch 128 (3 steps, `/usr/bin/time -v`) "
        f"| {steps(2)}, peak RSS {span([g[3] for g in got], gib)} "
        f"| {steps(0)}, peak RSS {span([g[1] for g in got], gib)} "
        f"| {ratio(0)} ({ratio(1)} after the first) the throughput, {span([g[1] / g[3] for g in got], times)} the memory "
        "| ≥ 1.0× throughput, ≤ 1.0× memory |"
    )


if __name__ == "__main__":
    main()
