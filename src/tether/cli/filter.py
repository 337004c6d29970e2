"""``tether filter``: keep pairs by CLIP score (DataComp's semantics) and DataComp's basic rules."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "filter", help="keep pairs by CLIP score and DataComp's basic rules; keep-list, report, shards",
        description=(
            "Decide every pair of an embedding folder: the CLIP-score rule (--min-score T keeps score >= T;\n"
            "--top-fraction F uses DataComp's threshold: scores sorted descending over the whole pool, the\n"
            "one at index floor(N*F), then >=) and DataComp's basic rules: caption more than 2 words and more\n"
            "than 5 characters, shorter image side >= 200, aspect ratio <= 3 (sizes from width/height\n"
            "metadata columns or the image headers); --language en adds the caption-language rule (lingua).\n"
            "Writes OUT/keep.parquet (key, kept, reason of every rejection), OUT/report.md with the\n"
            "histogram and the cut and contact sheets of the lowest-scoring rejected and kept pairs, and on\n"
            "request a manifest or WebDataset shards of the kept samples.\n\n"
            "Examples:\n"
            "  tether filter emb/ --min-score 0.28 --out filtered/               # LAION-5B's cut\n"
            "  tether filter emb/ --top-fraction 0.3 --out filtered/ --write-shards   # DataComp's top 30%\n"
            "  tether filter emb/ --top-fraction 0.8 --no-rule image_min_side --language en --out f/"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="DIR", help="embedding folder (img_emb/, text_emb/, metadata/)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--min-score", type=float, help="keep pairs with CLIP score >= T (in [-1, 1])")
    how.add_argument("--top-fraction", type=float, help="keep the top F of the pool by CLIP score (0 < F <= 1)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-rule", action="append", default=[], metavar="RULE",
                   choices=("caption_words", "caption_chars", "image_min_side", "aspect_ratio"),
                   help="switch off a basic rule (repeatable): caption_words, caption_chars, image_min_side, "
                        "aspect_ratio")
    p.add_argument("--no-basic-rules", action="store_true", help="switch off every basic rule (score only)")
    p.add_argument("--language", help="keep captions detected as this language (ISO 639-1, e.g. en); off by default")
    p.add_argument("--write-manifest", action="store_true", help="write OUT/manifest.parquet of the kept rows")
    p.add_argument("--write-shards", action="store_true", help="write WebDataset shards of the kept samples")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.curate.filter import filter_folder
    from tether.curate.rules import BASIC_RULES
    rules = () if args.no_basic_rules else tuple(r for r in BASIC_RULES if r not in args.no_rule)
    r = filter_folder(args.folder, args.out, min_score=args.min_score, top_fraction=args.top_fraction,
                      rules=rules, language=args.language, write_manifest=args.write_manifest,
                      write_shards=args.write_shards, shard_size=args.shard_size, progress=not args.no_progress)
    n = len(r.keys)
    print(f"kept {int(r.kept.sum())} of {n} pairs ({r.kept.mean():.1%}); CLIP-score threshold {r.threshold:.4f}")
    for rule, count in r.rule_failures.items():
        print(f"  {rule:15s} failed by {count:7d}   rejected first by {r.first_reasons[rule]:7d}")
    if r.size_unknown:
        print(f"  {r.size_unknown} row(s) without a known image size (size rules not applied to them)")
    if r.shards_skipped:
        print(f"  {r.shards_skipped} kept sample(s) not written to shards (no readable local image)")
    for f in r.files:
        print(f"  -> {f}")
    return 0
