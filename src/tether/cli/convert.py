"""``tether convert``: move a checkpoint between formats."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert a checkpoint between tether, Hugging Face and OpenCLIP formats",
        description=(
            "Read any checkpoint tether knows (format detected from the files) and write it in another.\n\n"
            "Formats:\n"
            "  tether     config.json + model.safetensors + tokenizer/ (tether.load reads it)\n"
            "  hf         Hugging Face CLIPModel / SiglipModel directory (from_pretrained reads it)\n"
            "  open_clip  open_clip_config.json + open_clip_model.safetensors\n\n"
            "Examples:\n"
            "  tether convert ./clip-vit-base-patch32 ./vitb32-tether --to tether\n"
            "  tether convert ViT-B-32.pt ./vitb32-hf --to hf"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="checkpoint directory, weights file, published name or Hub id")
    p.add_argument("dst", help="output directory (replaced atomically if it exists)")
    p.add_argument("--to", choices=["tether", "hf", "open_clip"], default="tether", help="output format")
    p.add_argument("--from", dest="src_format", choices=["tether", "hf", "open_clip"],
                   help="input format (default: detected)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from tether.checkpoints import detect_format, load_model, resolve_model, save_model
    if Path(args.src).exists() or args.src_format:
        fmt = args.src_format or detect_format(args.src)
        model = load_model(args.src, format=fmt)
    else:  # a published name or Hub id, with the registry's preprocessing
        fmt, model = "published", resolve_model(args.src)
    save_model(model, args.dst, format=args.to)
    print(f"{args.src} ({fmt}) -> {args.dst} ({args.to})")
    return 0
