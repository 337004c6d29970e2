"""``tether index``: build a search index from an embedding folder (tether.search)."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Build a FAISS index of each modality of EMB_DIR (`tether embed`'s output) into INDEX_DIR.

The type is chosen from the number of vectors, their width and the memory budget, as autofaiss
does: Flat below 10,000 vectors, HNSW while its graph fits, IVF-Flat below 1M, then OPQ+IVF+PQ
whose top candidates are re-ranked by exact inner product. The search parameter (efSearch,
nprobe, re-ranked candidates) is raised until recall@10 against exact search on held-out queries
reaches --target-recall (default 0.99), then further while recall still rises and one query takes
at most --max-query-ms (default 1 ms; 0 stops at the target). A type that misses the target gives
way to the next that fits; when HNSW meets it, IVF-Flat (if it fits) is validated too and the more
accurate, then faster, is kept. Type, parameters, memory, measured recall, the recall/time curve
and query time are written to INDEX_DIR/index_info.json. The budget is shared by the image and
text indexes; one that cannot be met is an error saying what would be needed.

Rerunning on the same EMB_DIR after `tether embed` wrote new parts adds them to the existing
indexes (no retraining) and validates recall again; --rebuild starts over.

Examples:
  tether index emb/ --out index/
  tether index emb/ --out index/ --memory-budget 512MB --target-recall 0.9
  tether index emb/ --out index/ --index-type hnsw
  tether index emb/ --out shard0/ --parts 0-4     (and --parts 5-9 into shard1/: see tether serve --shard)
  tether serve index/
"""


def add_parser(sub) -> None:
    p = sub.add_parser("index", help="build a search index (FAISS, chosen for the data) from an embedding folder",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="EMB_DIR", help="embedding folder written by `tether embed`")
    p.add_argument("--out", required=True, metavar="INDEX_DIR", help="index folder to write (or add new parts to)")
    p.add_argument("--memory-budget", default="4GB", help="resident memory for all indexes (default 4GB)")
    p.add_argument("--index-type", choices=("flat", "hnsw", "ivf-flat", "ivf-pq"), help="force the index type")
    p.add_argument("--target-recall", type=float, default=0.99, help="recall@10 to reach (default 0.99)")
    p.add_argument("--max-query-ms", type=float, default=1.0,
                   help="past the target, raise the search parameter while recall rises and one query takes at "
                        "most this many ms (default 1; 0: the cheapest setting reaching the target)")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries for validation (default 1000)")
    p.add_argument("--rebuild", action="store_true", help="build from scratch even if INDEX_DIR holds this folder")
    p.add_argument("--modalities", help="index only these, comma-separated (default: every modality of EMB_DIR)")
    p.add_argument("--parts", help="index only these parts (e.g. 0-4): one shard of a collection served by "
                                   "several `tether serve` processes behind `tether serve --shard ...`")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.search import build_index
    from tether.search.build import parse_parts
    from tether.search.choice import format_size

    info = build_index(args.folder, args.out, memory_budget=args.memory_budget, index_type=args.index_type,
                       target_recall=args.target_recall, max_query_ms=args.max_query_ms, queries=args.queries,
                       seed=args.seed,
                       rebuild=args.rebuild, parts=parse_parts(args.parts) if args.parts else None,
                       modalities=args.modalities.split(",") if args.modalities else None, log=print)
    for modality, e in info["indexes"].items():
        t = e["query_time"]
        print(f"{modality}: {e['vectors']} vectors, {e['key']} {e['search_params']}, {format_size(e['memory_bytes'])}, "
              f"recall@10 {e['recall_at_10']:.4f}{'' if e['target_met'] else ' (below the target)'}, "
              f"{t['single_ms']:.3f} ms a query")
    print(f"-> {args.out} (serve it: tether serve {args.out})")
    return 0
