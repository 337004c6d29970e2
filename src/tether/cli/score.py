"""``tether score``: the CLIP score of every image-caption pair of an embedding folder."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "score", help="CLIP score (image-caption cosine) of every pair of an embedding folder",
        description=(
            "Compute the CLIP score (cosine of the image and caption embeddings of each row) of an embedding\n"
            "folder in clip-retrieval's layout (img_emb/, text_emb/, metadata/, as `tether embed` writes).\n"
            "Writes DIR/scores/scores_NNNN.parquet (key, clip_score; row-aligned with metadata_NNNN.parquet,\n"
            "which is left untouched so clip-retrieval still reads the folder), DIR/scores/summary.json\n"
            "(mean, std, percentiles, fraction >= 0.2/0.25/0.28/0.3/0.32/0.35, overall and per group) and\n"
            "histograms. Parts already scored are kept; rerun after the embedding job adds parts.\n\n"
            "Examples:\n"
            "  tether score emb/\n"
            "  tether score emb/ --group-by category        # statistics per value of a metadata column"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="DIR", help="embedding folder")
    p.add_argument("--group-by", help="metadata column (source, class...) to summarise per value")
    p.add_argument("--out", help="where the summary and histograms go (default DIR/scores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.curate.score import score_folder
    result = score_folder(args.folder, group_by=args.group_by, out=args.out, progress=not args.no_progress)
    s = result.summary
    print(f"scored {s['count']} pairs ({result.computed_parts} part(s) computed now, "
          f"{result.invalid} row(s) without a valid pair skipped)")
    print(f"  mean {s['mean']:.4f}  std {s['std']:.4f}  p5 {s['p5']:.4f}  p50 {s['p50']:.4f}  p95 {s['p95']:.4f}")
    print("  fraction >= " + "  ".join(f"{k[8:]}: {v:.3f}" for k, v in s.items() if k.startswith("frac_ge_")))
    for name, g in (result.by_group or {}).items():
        print(f"  {name}: n={g['count']} mean {g['mean']:.4f} frac>=0.28 {g.get('frac_ge_0.28', float('nan')):.3f}")
    for f in result.files:
        print(f"  -> {f}")
    return 0
