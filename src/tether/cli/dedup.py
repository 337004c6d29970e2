"""``tether dedup``: semantic deduplication of an embedding folder (exact or SemDeDup's cluster mode)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "dedup", help="find semantic duplicates (cosine >= C) and keep one member of each group",
        description=(
            "Find every pair of rows whose embeddings have cosine >= C, group them (connected components)\n"
            "and keep exactly one member per group. --mode exact finds the same pairs as brute force without\n"
            "the N x N matrix (k-means pruning with a proven bound); --mode cluster is SemDeDup's method\n"
            "(pairs within k-means clusters only: faster, misses pairs across clusters; its recall against\n"
            "exact mode is measured on a sample of rows and printed).\n"
            "--keep: first (input order), score (highest CLIP score: run `tether score DIR` first),\n"
            "centroid (nearest the group's mean / the k-means centroid in cluster mode), farthest (SemDeDup).\n"
            "Writes OUT/groups.parquet, OUT/keep.parquet, OUT/sweep.md + sweep.png (fraction removed at\n"
            "several thresholds), OUT/largest_groups.png and OUT/summary.json.\n\n"
            "Examples:\n"
            "  tether dedup emb/ --threshold 0.95 --out dedup/\n"
            "  tether dedup emb/ --threshold 0.9 --mode cluster --keep farthest --out dedup/\n"
            "  tether dedup emb/ --threshold 0.97 --modality text --keep score --out dedup-text/"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="DIR", help="embedding folder")
    p.add_argument("--threshold", type=float, required=True, help="cosine similarity C in [-1, 1]")
    p.add_argument("--mode", choices=("exact", "cluster"), default="exact")
    p.add_argument("--keep", choices=("first", "score", "centroid", "farthest"), default="first")
    p.add_argument("--modality", default="image", help="which embeddings: image (default) or text")
    p.add_argument("--clusters", type=int, help="k-means clusters (default sqrt(N))")
    p.add_argument("--sweep", type=lambda s: [float(t) for t in s.split(",")],
                   help="comma-separated thresholds for the fraction-removed table (default: 0.8...0.99 "
                        "down to C - 0.1)")
    p.add_argument("--recall-rows", type=int, default=2000,
                   help="cluster mode: rows whose exact partners measure the recall (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.curate.dedup_job import dedup_folder
    job = dedup_folder(args.folder, args.out, args.threshold, mode=args.mode, keep=args.keep,
                       modality=args.modality, n_clusters=args.clusters, sweep=args.sweep,
                       recall_rows=args.recall_rows, seed=args.seed, progress=not args.no_progress)
    r, n = job.result, len(job.keys)
    print(f"{n} rows, {len(r.pairs)} pairs with cosine >= {r.threshold:g} ({r.mode} mode, {job.seconds:.1f} s): "
          f"{r.n_groups} groups, {r.n_removed} rows removed ({r.n_removed / n:.2%}), keep={r.keep_rule}")
    if job.recall:
        c = job.recall
        print(f"  recall vs exact mode: {c['recall']:.4f} ({c['found']} of {c['exact_pairs']} exact pairs "
              f"involving {c['sample_rows']} sampled rows)")
    for s in job.sweep:
        print(f"  threshold {s['threshold']:<6g} groups {s['groups']:7d}  removed {s['removed']:7d} "
              f"({s['fraction_removed']:.2%})")
    for f in job.files:
        print(f"  -> {f}")
    return 0
