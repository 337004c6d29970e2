"""Contrastive losses: plain (N x N in memory) vs tiled (tether.losses, chunk_size=...).

Each configuration runs in its own fresh subprocess: it builds (N, d) L2-normalised fp32
embeddings that require grad, runs one warm-up forward+backward, then the timed ones, and
reports the median wall time, the median CPU time (user + system over all threads; less
sensitive than wall time to other jobs on a shared machine) and the peak memory beyond the
inputs, i.e. the growth of the process's peak RSS (``ru_maxrss``) from just after the inputs
were made to the end (so it includes the input gradients). Rounds alternate the
configurations so all of them see the same machine state.

    python bench/bench_losses.py                              # N=16,384 (t=14.3 and 100) and 32,768, d=512
    python bench/bench_losses.py --n 4096 --rounds 1          # quick look
    python bench/bench_losses.py --chunks 1024 2048 4096      # tile sweep for the default
    python bench/bench_losses.py --with-reference-32k         # also the plain loss at 32k (~20 GB)
    python bench/bench_losses.py --data clustered --scales 100  # a trained model's geometry
    python bench/bench_losses.py --losses siglip --with-gemm-floor  # also time the GEMMs alone

The GEMM floor (``--with-gemm-floor``) is a sweep with all elementwise work removed: per tile one
GEMM for the logits and two for the gradients, the same 3 x 2 N^2 d flops the plain loss spends
in its GEMMs. No exact float32 method can beat it, so plain / floor is the ceiling of the
speed-up on the machine at hand. Each tiled child times it interleaved with its own steps
(loss, floor, loss, floor, ...), so both see the same machine state.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def child(args) -> None:
    import torch
    from tether.losses import clip_loss, siglip_loss
    torch.manual_seed(0)
    n, d = args.n, args.d
    # normalised in place: no transient copy may raise the peak-RSS baseline
    if args.data == "clustered":  # like a trained model on a 10-class dataset: pairs share a class centre
        centres, labels = torch.randn(10, d) * 3, torch.randint(10, (n,))
        x = centres[labels] + torch.randn(n, d) * 0.5
        y = centres[labels] + torch.randn(n, d) * 0.5
    else:
        x = torch.randn(n, d)
        y = torch.randn(n, d)
    x /= x.norm(dim=1, keepdim=True)
    y /= y.norm(dim=1, keepdim=True)
    x.requires_grad_()
    y.requires_grad_()
    t = torch.tensor(args.scale, requires_grad=True)           # 14.3: CLIP's init (1/0.07); 100: its cap
    b = torch.tensor(-10.0, requires_grad=True)                # SigLIP's init
    chunk = None if args.chunk == 0 else args.chunk

    def loss_step():
        for p in (x, y, t, b):
            p.grad = None
        loss = clip_loss(x, y, t, chunk) if args.loss == "clip" else siglip_loss(x, y, t, b, chunk)
        loss.backward()
        return float(loss)

    floor_step = gemm_floor_step(x.detach(), y.detach(), chunk) if args.gemm_floor and chunk else None

    def cpu_seconds():
        use = resource.getrusage(resource.RUSAGE_SELF)
        return use.ru_utime + use.ru_stime

    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu, floor, value = [], [], [], None
    for k in range(args.repeats + 1):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        value = loss_step()
        if k:                                                  # k == 0 is the warm-up
            times.append(time.perf_counter() - start)
            cpu.append(cpu_seconds() - start_cpu)
        if floor_step is not None:                             # (its peak stays below the loss's)
            start = time.perf_counter()
            floor_step()
            if k:
                floor.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"times": times, "cpu": cpu, "floor": floor, "extra_mib": (peak_kib - base_kib) / 1024,
                      "loss": value}))


def gemm_floor_step(x, y, chunk: int):
    """One sweep's GEMMs and nothing else: logits tile, then G @ y and G.T @ x into
    accumulators (the tile itself stands in for G)."""
    import torch
    n = x.shape[0]

    def step():
        tile = torch.empty(chunk, chunk)
        acc_a, acc_b = torch.zeros_like(x), torch.zeros_like(y)
        for i0 in range(0, n, chunk):
            for j0 in range(0, n, chunk):
                xi, yj = x[i0:i0 + chunk], y[j0:j0 + chunk]
                g = torch.mm(xi, yj.T, out=tile[: xi.shape[0], : yj.shape[0]])
                acc_a[i0:i0 + chunk].addmm_(g, yj)
                acc_b[j0:j0 + chunk].addmm_(g.T, xi)
    return step


DATA = ["random"]  # set from --data in main()
FLOOR = [False]    # set from --with-gemm-floor in main()


def run_config(loss: str, n: int, d: int, chunk: int, scale: float, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--loss", loss, "--n", str(n), "--d", str(d),
           "--chunk", str(chunk), "--scale", str(scale), "--repeats", str(repeats), "--data", DATA[0]]
    if FLOOR[0] and chunk:
        cmd.append("--gemm-floor")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def label(loss: str, n: int, chunk: int, scale: float) -> str:
    return f"{loss:6s} N={n:<6d} t={scale:<5g} " + ("plain" if chunk == 0 else f"chunk={chunk}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=16384, help="batch size of the side-by-side comparison")
    p.add_argument("--n-large", type=int, default=32768, help="batch size of the memory check (0: skip)")
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--chunks", type=int, nargs="+", default=[1024, 2048, 4096], help="tile sizes to time")
    p.add_argument("--losses", nargs="+", default=["clip", "siglip"], choices=["clip", "siglip"])
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (one subprocess each)")
    p.add_argument("--repeats", type=int, default=1, help="timed steps per subprocess after one warm-up")
    p.add_argument("--scales", type=float, nargs="+", default=[14.3, 100.0],
                   help="logit scales t: 14.3 is CLIP's init; 100 its cap, where trained models sit")
    p.add_argument("--data", choices=["random", "clustered"], default="random",
                   help="random unit vectors, or 10 tight clusters (a trained model's geometry: at t=100 "
                        "most logits lie far below their row's maximum)")
    p.add_argument("--with-reference-32k", action="store_true", help="also run the plain loss at --n-large")
    p.add_argument("--with-gemm-floor", action="store_true",
                   help="also time the three GEMMs per tile alone (the ceiling of any exact speed-up)")
    # child mode
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--loss", default="clip", help=argparse.SUPPRESS)
    p.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--scale", type=float, default=14.3, help=argparse.SUPPRESS)
    p.add_argument("--gemm-floor", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    DATA[0], FLOOR[0] = args.data, args.with_gemm_floor

    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    large_chunk = max(args.chunks)
    configs = []
    for loss in args.losses:
        for scale in args.scales:
            configs.append((loss, args.n, 0, scale))
            configs += [(loss, args.n, c, scale) for c in args.chunks]
        if args.n_large:  # memory: the first scale only (memory does not depend on it)
            configs.append((loss, args.n_large, large_chunk, args.scales[0]))
            if args.with_reference_32k:
                configs.append((loss, args.n_large, 0, args.scales[0]))
    results: dict = {c: {"times": [], "cpu": [], "floor": [], "extra_mib": [], "loss": None} for c in configs}
    for r in range(args.rounds):
        for c in configs:
            res = run_config(c[0], c[1], args.d, c[2], c[3], args.repeats)
            results[c]["times"] += res["times"]
            results[c]["cpu"] += res["cpu"]
            results[c]["floor"] += res["floor"]
            results[c]["extra_mib"].append(res["extra_mib"])
            results[c]["loss"] = res["loss"]
            print(f"  round {r + 1}: {label(*c)}  {statistics.median(res['times']):7.2f} s  "
                  f"cpu {statistics.median(res['cpu']):7.2f} s  {res['extra_mib']:8.0f} MiB  "
                  f"loss {res['loss']:.6f}  load {os.getloadavg()[0]:.1f}"
                  + (f"  GEMM floor {statistics.median(res['floor']):.2f} s" if res["floor"] else ""), flush=True)

    print(f"\nload average at end {os.getloadavg()[0]:.2f}\n")
    print_table(args.losses, configs, results, args.with_gemm_floor)


def print_table(losses, configs, results: dict, with_floor: bool) -> None:
    """Markdown table of medians; with the floor, its time and the ceiling plain / floor."""
    extra = " GEMM floor s | ceiling (plain / floor) |" if with_floor else ""
    print("| loss | N | t | computation | fwd+bwd wall s | CPU s | peak MiB beyond inputs | wall vs plain "
          "| CPU vs plain | memory vs plain |" + extra)
    print("|---" * (10 + 2 * with_floor) + "|")
    for loss in losses:
        for n, scale in sorted({(c[1], c[3]) for c in configs if c[0] == loss}):
            plain = results.get((loss, n, 0, scale))
            for c in [c for c in configs if c[0] == loss and c[1] == n and c[3] == scale]:
                res = results[c]
                sec, cpu, mib = statistics.median(res["times"]), statistics.median(res["cpu"]), max(res["extra_mib"])
                cells = ["", "", ""] + (["", ""] if with_floor else [])
                if plain and c[2]:
                    cells[:3] = [f"{statistics.median(plain['times']) / sec:.2f}x faster",
                                 f"{statistics.median(plain['cpu']) / cpu:.2f}x less",
                                 f"{max(plain['extra_mib']) / mib:.0f}x less"]
                    if with_floor and res["floor"]:
                        floor = statistics.median(res["floor"])
                        cells[3:] = [f"{floor:.2f}", f"{statistics.median(plain['times']) / floor:.2f}x"]
                what = "plain" if c[2] == 0 else f"tiled, chunk {c[2]}"
                print(f"| {loss} | {n} | {scale:g} | {what} | {sec:.2f} | {cpu:.2f} | {mib:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
