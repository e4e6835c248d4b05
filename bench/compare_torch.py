#!/usr/bin/env python3
"""Ratio table of clattn against PyTorch's scaled_dot_product_attention on the same shapes.

For each shape, dtype, mask and pass, clattn-bench (one shape per run, CSV) and torch's SDPA
are timed in turns, --rounds times, so that drift of the machine hits both; each side's figure
is the median over all its timed calls. Ratio = torch's time / clattn's (> 1: clattn faster).

torch is a peer for this bench only, never a dependency of the library or its tests: without
it the script says so and exits 0. Install it (CPU use) with `pip install torch`.

    python3 bench/compare_torch.py [--bench build/bench/clattn-bench] [--rounds 3]
                                   [--iters 3] [--quick] [--device SEL]

Shapes: B=1 H=16 S=1024 D=64 and B=1 H=32 S=4096 D=128, causal and not, f32 and bf16, forward
and backward; the GQA decode preset (Hq=32 Hkv=8 Sq=1 Sk=32768 D=128, forward, enable_gqa).
--quick keeps the first shape and the decode. torch runs its default thread count (one per
core), as a user of it would; clattn runs on the device clattn-bench picks (--device).
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

SHAPES = [  # (b, hq, hkv, sq, sk, d)
    (1, 16, 16, 1024, 1024, 64),
    (1, 32, 32, 4096, 4096, 128),
]
DECODE = (1, 32, 8, 1, 32768, 128)


def cases(quick):
    shapes = SHAPES[:1] if quick else SHAPES
    for shape in shapes:
        for dtype in ("f32", "bf16"):
            for causal in (False, True):
                for pass_ in ("fwd", "bwd"):
                    yield shape, dtype, causal, pass_
    yield DECODE, "f32", False, "fwd"
    yield DECODE, "bf16", False, "fwd"


def clattn_times(args, shape, dtype, causal, pass_):
    """Timed calls of one clattn-bench run: its median and the count, from its CSV."""
    b, hq, hkv, sq, sk, d = shape
    cmd = [args.bench, "-b", str(b), "--hq", str(hq), "--hkv", str(hkv), "--sq", str(sq),
           "--sk", str(sk), "-d", str(d), "--dtype", dtype, "--pass", pass_, "--no-peers",
           "--warmup", "1", "--iters", str(args.iters), "--rounds", "1"]
    if causal:
        cmd.append("--causal")
    if args.device:
        cmd += ["--device", args.device]
    with tempfile.NamedTemporaryFile(mode="r", suffix=".csv") as table:
        subprocess.run(cmd + ["--csv", table.name], check=True, capture_output=True)
        row = next(r for r in csv.DictReader(table) if r["pass"] == pass_)
    return float(row["median_ms"]), row["device"]


def torch_times(shape, dtype, causal, pass_, iters):
    """Median ms of `iters` SDPA calls (after one warm-up), forward or forward + backward minus
    forward, as clattn-bench times its backward alone."""
    b, hq, hkv, sq, sk, d = shape
    dt = torch.float32 if dtype == "f32" else torch.bfloat16
    g = torch.Generator().manual_seed(1)
    q = torch.randn(b, hq, sq, d, generator=g).to(dt)
    k = torch.randn(b, hkv, sk, d, generator=g).to(dt)
    v = torch.randn(b, hkv, sk, d, generator=g).to(dt)
    gqa = {"enable_gqa": True} if hkv != hq else {}
    if pass_ == "fwd":
        def call():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)
    else:
        for t in (q, k, v):
            t.requires_grad_(True)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)
        dout = torch.randn_like(out)

        def call():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)
            t0 = time.perf_counter()
            torch.autograd.grad(o, (q, k, v), dout)
            return time.perf_counter() - t0
    call()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        backward_s = call()
        times.append((backward_s if pass_ == "bwd" else time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def flops(shape, causal, pass_):
    """FLOPs as clattn's docs/semantics.md counts them: 4 b hq sq sk d for the forward
    (visible pairs only when causal), 2.5 times that for the backward."""
    b, hq, _, sq, sk, d = shape
    pairs = sq * sk
    if causal:
        pairs = sum(min(sk, max(0, i + sk - sq + 1)) for i in range(sq))
    fwd = 4.0 * b * hq * pairs * d
    return fwd * (2.5 if pass_ == "bwd" else 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default=os.path.join("build", "bench", "clattn-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3, help="timed calls per side and round")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="")
    args = ap.parse_args()
    if torch is None:
        print("compare_torch: torch is not installed; nothing to compare (pip install torch)")
        return 0
    if not os.access(args.bench, os.X_OK):
        print(f"compare_torch: {args.bench} is not an executable clattn-bench", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.rounds} rounds of {args.iters} timed calls per side")
    header = (f"{'shape':34} {'dtype':5} {'causal':6} {'pass':4} {'clattn_ms':>10} "
              f"{'torch_ms':>10} {'clattn_GF':>9} {'torch_GF':>9} {'x_torch':>7}")
    rows, device = [], ""
    for shape, dtype, causal, pass_ in cases(args.quick):
        ours, theirs = [], []
        for _ in range(args.rounds):
            ms, device = clattn_times(args, shape, dtype, causal, pass_)
            ours.append(ms)
            theirs.append(torch_times(shape, dtype, causal, pass_, args.iters))
        a, t = statistics.median(ours), statistics.median(theirs)
        fl = flops(shape, causal, pass_)
        b, hq, hkv, sq, sk, d = shape
        name = f"b={b} hq={hq} hkv={hkv} sq={sq} sk={sk} d={d}"
        rows.append(f"{name:34} {dtype:5} {'yes' if causal else 'no':6} {pass_:4} {a:10.2f} "
                    f"{t:10.2f} {fl / a / 1e6:9.1f} {fl / t / 1e6:9.1f} {t / a:7.2f}")
        print(rows[-1] if len(rows) > 1 else header + "\n" + rows[-1], flush=True)
    print(f"clattn device: {device}; x_torch = torch ms / clattn ms (> 1: clattn faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
