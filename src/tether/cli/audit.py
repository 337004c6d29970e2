"""``tether audit``: find probable label errors in a labelled dataset (tether.curate)."""
from __future__ import annotations

import argparse

from .label_options import add_input_options, classifier_for, load_inputs

DESCRIPTION = """\
Rank the labelled images of an embedding folder (or a dataset) by how likely their label is wrong.
Out-of-sample class probabilities come from a cross-validated linear probe on the frozen embeddings
(--probs probe, default), the text classifier (zeroshot), both averaged, the labels of the nearest
neighbours (neighbours), or all three averaged (all). On them: cleanlab's label-quality scores (--method) and find_label_issues
(--filter-by, the same masks as cleanlab 2.9); the noise-aware rank noise_posterior (Bayes' rule with
the noise matrix confident learning estimates: best on look-alike confusions); with a model, also the
CLIP-specific rank text_neighbour (text classifier + nearest-neighbour vote, no held-out probabilities needed).

Writes OUT/review.parquet + .csv (every row, most suspect first), OUT/health.json + health.md
(per-class estimated noise, most confused pairs), OUT/suspects.png (each suspect beside examples of
its given and predicted class), OUT/review.html (open it from disk) with OUT/images/.

Examples:
  tether audit emb/ --out audit/
  tether audit emb/ --probs both --rank text_neighbour --templates clothing --out audit/
  tether audit emb/ --probs both --rank noise_posterior --templates clothing --out audit/
  tether audit --data fashion_mnist --model demo/model --filter-by both --out audit/
  tether audit emb/ --classes classes.txt --label-column category --method normalized_margin --out audit/
"""


def add_parser(sub) -> None:
    from tether.curate.audit import PROB_SOURCES, RANKS
    from tether.curate.confident_learning import FILTERS
    from tether.curate.label_quality import METHODS

    p = sub.add_parser("audit", help="find probable label errors: cleanlab's scores and filters, health summary",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_options(p)
    p.add_argument("--label-column", default="label", help="the labels' metadata column (default label)")
    p.add_argument("--probs", choices=PROB_SOURCES, default="probe", help="where probabilities come from")
    p.add_argument("--method", choices=tuple(METHODS), default="self_confidence", help="label-quality score")
    p.add_argument("--filter-by", choices=FILTERS, default="prune_by_noise_rate", help="find_label_issues filter")
    p.add_argument("--rank", choices=RANKS, help="order of the review list (default: --method)")
    p.add_argument("--neighbours", type=int, default=10, help="k of the nearest-neighbour vote (default 10)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds of the probe (default 5)")
    p.add_argument("--no-text", action="store_true", help="skip the text classifier even when a model is known")
    p.add_argument("--no-vote", action="store_true",
                   help="skip the neighbour vote unless --probs/--rank need it (it compares all pairs: the slow part)")
    p.add_argument("--suspects", type=int, default=12, help="rows of the contact sheet (default 12)")
    p.add_argument("--html-rows", type=int, default=200, help="cards on the review page (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.curate.audit import audit_folder
    from tether.curate.label_data import class_names_for

    data, model = load_inputs(args)
    names, prompts = class_names_for(data, args.classes)
    clf = None if args.no_text else classifier_for(args, data, model, names, prompts)
    a = audit_folder(data, args.out, names, label_column=args.label_column, classifier=clf,
                     suspects=args.suspects, html_rows=args.html_rows, probs=args.probs, method=args.method,
                     filter_by=args.filter_by, rank=args.rank, neighbours=args.neighbours, folds=args.folds,
                     seed=args.seed, with_vote=not args.no_vote)
    h, r = a.health, a.report
    print(f"{r['rows']} labelled rows, {len(names)} classes, probabilities: {r['probs']} (top-1 agreement "
          f"{r['acc1']:.1%}): {h['issues']} issues ({args.filter_by}), estimated noise {h['estimated_noise']:.1%}, "
          f"{r['seconds']['total']:.1f} s")
    for p in h["confused_pairs"][:3]:
        print(f"  confused: {p['classes'][0]} / {p['classes'][1]} ({p['joint']:.2%} of rows)")
    for f in a.files:
        print(f"  -> {f}")
    return 0
