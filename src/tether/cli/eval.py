"""``tether eval``: zero-shot, retrieval, linear probe and captioning metrics, CLIP_benchmark style."""
from __future__ import annotations

import argparse

from ..errors import InputError
from .engine_options import add_engine_options, engine_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model: zero-shot, retrieval, linear probe, captioning",
        description=(
            "Evaluate a model on built-in offline datasets (fashion_mnist, tuxpaint, digits; tuxpaint_digits:\n"
            "spoken digits for audio towers, scored per language) or your own data\n"
            "(TYPE:PATH with TYPE manifest, webdataset or folder). Writes one JSON per (dataset, model, task)\n"
            "in CLIP_benchmark's format ({dataset, model, pretrained, task, metrics, language}) with a PNG\n"
            "beside it. `tether eval merge` joins result files into one CSV table.\n\n"
            "Tasks: zeroshot (prompt-ensemble classifier), retrieval (Recall@1/5/10 both ways, ranks),\n"
            "linear_probe (regularisation chosen on validation), captioning (caption by retrieval from the\n"
            "training captions, scored with CIDEr-D).\n\n"
            "Examples:\n"
            "  tether eval --model demo/model --dataset fashion_mnist --task zeroshot --task linear_probe --out results/\n"
            "  tether eval --model ./my-clip --dataset manifest:val.csv --task retrieval --out results/\n"
            "  tether eval merge results/ --out results/table.csv"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", help="with `merge`: result files or folders")
    p.add_argument("--model", help="checkpoint path, published name (ViT-B-32/openai) or Hub id")
    p.add_argument("--random-weights", action="store_true", help="allow an architecture name (random weights)")
    p.add_argument("--model-name", help="name recorded in the results (default: the --model value)")
    p.add_argument("--dataset", action="append", default=[], help="dataset name or TYPE:PATH (repeatable)")
    p.add_argument("--train-data", help="TYPE:PATH training split for your own data (probe, caption pool)")
    p.add_argument("--modality", help="what your TYPE:PATH data's inputs are (default image; e.g. audio)")
    p.add_argument("--task", action="append", default=[], help="zeroshot, retrieval, linear_probe, captioning")
    p.add_argument("--templates", help="template set name or a file with one template per line ({} = class)")
    p.add_argument("--out", required=True, help="output folder (or CSV path with merge)")
    add_engine_options(p, batch_size=256)
    p.set_defaults(func=run)


def run(args) -> int:
    _check_arguments(args)
    if args.paths:
        return merge(args.paths[1:], args.out)
    from tether.metrics.evaluate import TASKS, resolve_dataset, run_tasks
    from tether.checkpoints import resolve_model
    from tether.modalities import check_processors
    model = resolve_model(args.model, random_weights=args.random_weights)
    check_processors(model, args.model)
    tasks = args.task or list(TASKS[:3])
    for spec in args.dataset:
        files = run_tasks(model, args.model_name or args.model, resolve_dataset(spec, args.train_data, args.modality), tasks,
                          args.out, templates=args.templates, batch_size=args.batch_size,
                          **engine_options(args))
        for f in files:
            print(f)
    return 0


def _check_arguments(args) -> None:
    """Refuse arguments that would be ignored: stray positionals, evaluation options with merge,
    --train-data beside built-in datasets (they bring their own training split)."""
    from tether.metrics.evaluate import BUILTIN
    if args.paths and args.paths[0] != "merge":
        raise InputError(f"unexpected argument(s) {' '.join(args.paths)}: `tether eval` takes options "
                         "(--model, --dataset ...); `tether eval merge FILES --out table.csv` joins result files")
    given = [f"--{k.replace('_', '-')}" for k in ("model", "model_name", "dataset", "train_data", "task", "templates",
                                                   "modality")
             if getattr(args, k)]
    if args.paths:
        if given:
            raise InputError(f"`tether eval merge` joins result files; it takes no {', '.join(given)}")
        if len(args.paths) == 1:
            raise InputError("`tether eval merge` needs result files or folders: tether eval merge DIR --out table.csv")
        return
    if not args.model or not args.dataset:
        raise InputError("give --model and at least one --dataset (or use `tether eval merge`)")
    builtin = [d for d in args.dataset if d in BUILTIN]
    if args.train_data and builtin:
        raise InputError(f"--train-data is the training split of a TYPE:PATH dataset; the built-in dataset(s) "
                         f"{', '.join(builtin)} bring their own: drop --train-data or evaluate them separately")


def merge(paths: list[str], out: str) -> int:
    from tether.metrics import merge_results, write_csv
    rows = merge_results(paths)
    write_csv(rows, out)
    print(f"{len(rows)} result(s) -> {out}")
    return 0
