"""``tether embed``: images and texts to embeddings on disk."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError, MissingProcessorError
from .engine_options import add_engine_options, engine_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "embed", help="embed image files and/or text lines with a model",
        description=(
            "Embed images (files or folders, searched recursively) and texts (a file with one text per\n"
            "line) into L2-normalised float32 vectors. Writes OUT/images.safetensors + OUT/images.json\n"
            "and OUT/texts.safetensors + OUT/texts.json; the JSON lists the item of each row and any\n"
            "inputs that were skipped (unreadable images, empty lines) with the reason.\n\n"
            "MODEL is a checkpoint path (tether, Hugging Face, OpenCLIP, OpenAI), a published name\n"
            "(`tether models --pretrained`, e.g. ViT-B-32/openai) or a Hub id (org/name[@rev],\n"
            "hf-hub:org/name), downloaded once into the Hugging Face cache. An architecture name alone\n"
            "(ViT-B-32) is random weights and needs --random-weights (only useful to test pipelines).\n\n"
            "Example:\n"
            "  tether embed --model ./my-clip --images photos/ --texts captions.txt --out emb/ --query 'a cat'"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint path, published name or Hub id")
    p.add_argument("--random-weights", action="store_true", help="allow an architecture name (random weights)")
    p.add_argument("--images", nargs="*", default=[], help="image files or folders")
    p.add_argument("--texts", help="text file, one text per line")
    p.add_argument("--out", required=True, help="output directory")
    add_engine_options(p, batch_size=64, device=True)
    p.add_argument("--query", action="append", default=[],
                   help="print the 5 nearest images for this text (repeatable)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.data.skips import SkipStats
    from tether.embedding import embed, find_images, write_embeddings
    from tether.checkpoints import resolve_model
    from tether.models.attach import check_processor

    _check_arguments(args)
    model = resolve_model(args.model, random_weights=args.random_weights)
    if args.texts or args.query:
        if model.processors.get("text") is None:
            raise MissingProcessorError.for_modality("text", args.model)
        check_processor(model, "text", model.processors["text"], args.model)
    options = engine_options(args)
    images = None
    if args.images:
        paths = find_images(args.images)
        if not paths:
            raise InputError(f"no image files found in {args.images}")
        images = embed(model, "image", paths, batch_size=args.batch_size, progress=True,
                       skips=SkipStats(max_examples=len(paths)), **options)
        _report("images", write_embeddings(images, args.out, "images"), images)
    if args.texts:
        lines = Path(args.texts).read_text(encoding="utf-8").splitlines()
        texts = embed(model, "text", lines, batch_size=max(args.batch_size, 256), progress=True,
                      skips=SkipStats(max_examples=len(lines)), **options)
        _report("texts", write_embeddings(texts, args.out, "texts"), texts)
    if args.query and images is not None and len(images):
        queries = embed(model, "text", args.query, **options).vectors
        scores = queries @ images.vectors.T
        for q, row in zip(args.query, scores):
            top = row.topk(min(5, row.numel()))
            print(f"query {q!r}:")
            for s, i in zip(top.values.tolist(), top.indices.tolist()):
                print(f"  {s:+.3f}  {images.ids[i]}")
    return 0


def _check_arguments(args) -> None:
    """Refuse options that would be ignored, and bad ones, before loading anything."""
    from tether.devices import pick_device
    if not args.images and not args.texts:
        raise InputError("nothing to embed: give --images and/or --texts")
    if args.query and not args.images:
        raise InputError("--query ranks the images of the same command: give --images too")
    if args.texts and not Path(args.texts).is_file():
        raise FileNotFoundError(f"--texts {args.texts}: no such file")
    pick_device(args.device, "--device")


def _report(what: str, path: Path, result) -> None:
    print(f"{what}: {len(result)} embedded, {result.skips.skipped} skipped -> {path}")
    shown = [(key, detail) for examples in result.skips.examples.values() for key, detail in examples]
    for key, detail in shown[:10]:
        print(f"  skipped {key}: {detail}", file=sys.stderr)
