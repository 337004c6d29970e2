"""Deduplication at scale: exact mode on N x 512 clustered embeddings with planted near-duplicates.

Data (seeded): ``--centres`` random unit directions; each row is its centre plus Gaussian noise
(cosine to the centre about 0.7, like a loose semantic cluster), L2-normalised; then
``--planted`` rows are overwritten by near-copies of other rows at a cosine drawn uniformly from
[0.92, 0.99] (so every planted pair is a duplicate at ``--threshold 0.9``; checked exactly).

Measured, in one run on the same data:

* exact mode (``tether.curate.pairs.exact_pairs``): seconds, pairs, whether every planted pair was found;
* cluster mode (SemDeDup, ``cluster_pairs``): seconds, recall of the exact pair set, speed-up;
* on a subsample of ``--subsample`` rows (every planted pair among them kept whole): brute force
  (all products, blocked) vs exact mode -- the same pair set is asserted -- and FAISS
  ``IndexFlatIP.range_search``; the brute-force time for all N rows is extrapolated (x (N/n)^2),
  not measured.

    python bench/bench_dedup.py                        # the BENCHMARKS.md run (1,000,000 rows)
    python bench/bench_dedup.py --n 100000             # quicker
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tether.curate.pairs import (brute_force_pairs, cluster_pairs, exact_cosine, exact_pairs,  # noqa: E402
                                 normalize_rows)


def make_data(n: int, dim: int, centres: int, planted: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows (n, dim) float32 unit, planted sources, planted copies)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = np.empty((n, dim), np.float32)
    sigma = 1.0 / math.sqrt(dim)  # noise of norm ~1: cosine to the centre ~ 1/sqrt(2) ~ 0.71
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        x[s:s + m] = c[rng.integers(0, centres, m)] + sigma * rng.standard_normal((m, dim), dtype=np.float32)
    x = normalize_rows(x)
    rows = rng.permutation(n)[:2 * planted]
    sources, copies = rows[:planted], rows[planted:]
    noise = rng.standard_normal((planted, dim)).astype(np.float64)
    src = x[sources].astype(np.float64)
    noise -= (noise * src).sum(1, keepdims=True) * src
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = rng.uniform(0.92, 0.99, planted)
    x[copies] = normalize_rows(cos[:, None] * src + np.sqrt(1 - cos ** 2)[:, None] * noise)
    return x, sources, copies


def pair_set(p) -> set[tuple[int, int]]:
    return set(zip(p.i.tolist(), p.j.tolist()))


def faiss_range(x: np.ndarray, threshold: float) -> tuple[float, int]:
    import faiss
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    started = time.perf_counter()
    lims, _, ids = index.range_search(x, threshold)
    seconds = time.perf_counter() - started
    rows = np.repeat(np.arange(len(x)), np.diff(lims).astype(np.int64))
    return seconds, int((ids > rows).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--centres", type=int, default=1000)
    ap.add_argument("--planted", type=int, default=25_000, help="near-duplicate pairs planted")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--subsample", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"N={args.n} D={args.dim} centres={args.centres} planted={args.planted} threshold={args.threshold} "
          f"(load average at start {load})", flush=True)
    t0 = time.perf_counter()
    x, sources, copies = make_data(args.n, args.dim, args.centres, args.planted, args.seed)
    planted = {(min(a, b), max(a, b)) for a, b in zip(sources.tolist(), copies.tolist())}
    assert (exact_cosine(x, sources[:2000], copies[:2000]) >= args.threshold).all()
    print(f"data: {time.perf_counter() - t0:.1f} s", flush=True)
    res: dict = {"n": args.n, "dim": args.dim, "threshold": args.threshold, "planted": len(planted),
                 "load_at_start": load}

    t0 = time.perf_counter()
    exact = exact_pairs(x, args.threshold, progress=True)
    res["exact_seconds"] = time.perf_counter() - t0
    found = pair_set(exact)
    res["exact_pairs"] = len(found)
    res["planted_found"] = len(planted & found)
    print(f"exact: {res['exact_seconds']:.1f} s, {len(found)} pairs, planted found {res['planted_found']} / "
          f"{len(planted)}", flush=True)

    t0 = time.perf_counter()
    cluster = cluster_pairs(x, args.threshold, progress=True)
    res["cluster_seconds"] = time.perf_counter() - t0
    cfound = pair_set(cluster)
    res["cluster_recall"] = len(cfound & found) / len(found)
    res["cluster_extra_pairs"] = len(cfound - found)
    res["cluster_speedup"] = res["exact_seconds"] / res["cluster_seconds"]
    print(f"cluster: {res['cluster_seconds']:.1f} s, recall {res['cluster_recall']:.4f}, "
          f"speed-up {res['cluster_speedup']:.2f}x", flush=True)

    rng = np.random.default_rng(args.seed + 1)
    m = min(args.subsample, args.n)
    keep_pairs = min(m // 10, len(sources))
    sub = np.unique(np.r_[sources[:keep_pairs], copies[:keep_pairs],
                          rng.choice(args.n, m - 2 * keep_pairs, replace=False)])
    xs = x[sub]
    t0 = time.perf_counter()
    brute = brute_force_pairs(xs, args.threshold)
    res["sub_rows"] = len(sub)
    res["sub_brute_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sub_exact = exact_pairs(xs, args.threshold)
    res["sub_exact_seconds"] = time.perf_counter() - t0
    res["sub_same_pairs"] = pair_set(brute) == pair_set(sub_exact)
    res["sub_pairs"] = len(brute)
    res["sub_faiss_range_seconds"], res["sub_faiss_pairs"] = faiss_range(xs, args.threshold)
    res["brute_extrapolated_seconds"] = res["sub_brute_seconds"] * (args.n / len(sub)) ** 2
    print(f"subsample {len(sub)} rows: brute force {res['sub_brute_seconds']:.1f} s, exact {res['sub_exact_seconds']:.1f} s, "
          f"faiss range_search {res['sub_faiss_range_seconds']:.1f} s; same pairs: {res['sub_same_pairs']} "
          f"({len(brute)} pairs; faiss {res['sub_faiss_pairs']})", flush=True)
    print(f"brute force on all {args.n} rows, extrapolated: {res['brute_extrapolated_seconds'] / 60:.0f} min", flush=True)
    res["load_at_end"] = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    assert res["planted_found"] == len(planted), "exact mode missed a planted pair"
    assert res["sub_same_pairs"], "exact mode differs from brute force on the subsample"


if __name__ == "__main__":
    main()
