"""``tether label``: weak labels for unlabelled images from class names, for human review (tether.curate)."""
from __future__ import annotations

import argparse

from .label_options import add_input_options, classifier_for, load_inputs

DESCRIPTION = """\
Give every image the top-k candidate classes with calibrated probabilities, from a list of class
names and prompt templates (the model's text classifier), and decide which can be auto-accepted.

With --labelled DIR (an embedding folder whose metadata has labels), the scale is fitted on it
by minimising the negative log-likelihood (else the model's own scale is used; the report says which),
the calibration error before and after is reported, and the confidence threshold is the lowest that
keeps --target-precision on it (per class with --per-class). --few-shot N takes N labelled images per
class to blend into the class weights (prototypes) and reports the gain on the rest.

Writes OUT/candidates.parquet + .csv (candidates, probabilities, decision; most in need of review
first), OUT/report.json + report.md, OUT/review.html (open it from disk) with OUT/images/.

Examples:
  tether label emb/ --classes cat,dog,bird --out weak/
  tether label emb/ --classes classes.txt --labelled emb-val/ --target-precision 0.95 --out weak/
  tether label --data folder:photos/ --model ViT-B-32/openai --classes classes.json --out weak/
  tether label emb/ --classes classes.txt --labelled emb-val/ --few-shot 5 --per-class --out weak/
"""


def add_parser(sub) -> None:
    p = sub.add_parser("label", help="weak labels from class names: candidates, calibration, review page",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_options(p)
    p.add_argument("--labelled", metavar="DIR", help="embedding folder with labels: fits the scale, thresholds")
    p.add_argument("--label-column", default="label", help="the labels' metadata column (default label)")
    p.add_argument("--top", type=int, default=3, help="candidates per image (default 3)")
    p.add_argument("--min-confidence", type=float, help="accept at this top-1 probability (overrides the target)")
    p.add_argument("--min-margin", type=float, default=0.0, help="and this lead over the runner-up (default 0)")
    p.add_argument("--target-precision", type=float, default=0.95, help="with --labelled (default 0.95)")
    p.add_argument("--per-class", action="store_true", help="one threshold per class for the target precision")
    p.add_argument("--few-shot", type=int, default=0, metavar="N", help="N labelled images per class refine the weights")
    p.add_argument("--blend", type=float, default=0.5, help="weight of the image prototypes in --few-shot (0..1)")
    p.add_argument("--html-rows", type=int, default=300, help="cards on the review page (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.curate.label_data import class_names_for, load_folder
    from tether.curate.label_job import label_folder
    from tether.errors import InputError

    data, model = load_inputs(args)
    if model is None:
        raise InputError(f"{data.folder}: no model for the text classifier (give --model)")
    names, prompts = class_names_for(data, args.classes)
    clf = classifier_for(args, data, model, names, prompts)
    labelled = load_folder(args.labelled) if args.labelled else None
    result = label_folder(data, args.out, clf, labelled=labelled, label_column=args.label_column, top=args.top,
                          html_rows=args.html_rows, few_shot=args.few_shot, blend=args.blend,
                          min_confidence=args.min_confidence, min_margin=args.min_margin,
                          target_precision=args.target_precision, per_class=args.per_class, seed=args.seed)
    r = result.report
    print(f"{r['rows']} images, {len(names)} classes: {r['accepted']['rows']} auto-accepted "
          f"({r['accepted']['share']:.1%}); scale {r['scale']['scale']:.4g} ({r['scale']['source']})")
    if "validation" in r:
        v, s = r["validation"], r["scale"]
        print(f"  validation ({v['rows']} rows): top-1 {v['acc1']:.1%}, top-3 {v['acc3']:.1%}, ECE "
              f"{s['ece_before']:.4f} -> {s['ece_after']:.4f}; accepted {v['accepted']['share']:.1%}")
    if "few_shot" in r:
        f = r["few_shot"]
        print(f"  few-shot {f['shots_per_class']}/class: text {f['text_acc1']:.1%} -> blend {f['blend_acc1']:.1%} "
              f"(gain {f['gain']:+.1%}), probe {f['probe_acc1']:.1%}")
    for f in result.files:
        print(f"  -> {f}")
    return 0
