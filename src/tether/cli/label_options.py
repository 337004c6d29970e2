"""Options ``tether label`` and ``tether audit`` share: where the embeddings come from, the model, the classes."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .engine_options import add_engine_options, engine_options


def add_input_options(p: argparse.ArgumentParser) -> None:
    """DIR or --data, --model, --classes, --templates, --out and the engine options (for --data)."""
    p.add_argument("folder", nargs="?", metavar="DIR", help="an embedding folder written by `tether embed`")
    p.add_argument("--data", metavar="TYPE:PATH", help="a dataset instead of DIR: embedded into OUT/embeddings "
                   "first (resumable), e.g. fashion_mnist, tuxpaint, folder:photos/, manifest:rows.csv")
    p.add_argument("--model", help="checkpoint or published name for the text classifier (and for --data); "
                   "default: the model DIR's job.json names")
    p.add_argument("--classes", help="class names: NAME,NAME,... or a file (one per line, optionally "
                   "'name: prompt | prompt'; or JSON); default: the dataset's class names")
    p.add_argument("--templates", default="general",
                   help="prompt template set (general, clothing, clipart, ...) or a template file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar while embedding --data")
    add_engine_options(p, batch_size=64)


def load_inputs(args: argparse.Namespace) -> tuple[Any, Any]:
    """-> (LabelData, model or None) from DIR or --data + --model."""
    from tether.curate.label_data import embed_then_load, load_folder
    from tether.errors import InputError

    if (args.folder is None) == (args.data is None):
        raise InputError("give an embedding folder DIR or --data TYPE:PATH (with --model), not both or neither")
    if args.data is not None:
        if not args.model:
            raise InputError("--data needs --model to embed the dataset")
        model = _load(args.model)
        data = embed_then_load(model, args.data, Path(args.out) / "embeddings", progress=not args.quiet,
                               batch_size=args.batch_size, **engine_options(args))
        return data, model
    data = load_folder(args.folder)
    name = args.model or data.job.get("model")
    if not args.model and isinstance(name, str) and name.startswith("<"):
        name = None     # job.json describes an in-memory model ("<AlignedModel ...>"): not loadable by name
    return data, (_load(name) if name else None)


def _load(name: str) -> Any:
    from tether.checkpoints import resolve_model
    return resolve_model(name)


def classifier_for(args: argparse.Namespace, data: Any, model: Any, class_names: list[str],
                   prompts: dict[str, list[str]]) -> Any:
    """The zero-shot text classifier (tether.metrics) for these classes, or None without a model."""
    if model is None:
        return None
    from tether.curate.label_data import build_text_classifier
    return build_text_classifier(model, class_names, prompts, args.templates)
