"""``tether info``: what a checkpoint holds, in any format tether reads."""
from __future__ import annotations

import argparse
import json

from .models import tower_summary


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a checkpoint (tether, Hugging Face, OpenCLIP, OpenAI)",
                       description="Load a checkpoint and print its format, architecture and parameter count.\n\n"
                                   "Example:\n  tether info ./my-clip\n  tether info ViT-B-32.pt",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="checkpoint directory, weights file, published name or Hub id")
    p.add_argument("--json", action="store_true", help="print the config as JSON")
    p.set_defaults(func=run_info)


def run_info(args) -> int:
    from pathlib import Path

    from tether.checkpoints import detect_format, load_model, resolve_model
    if Path(args.path).exists():
        fmt = detect_format(args.path)
        model = load_model(args.path, format=fmt)
    else:  # a published name or Hub id (downloaded once)
        fmt, model = "published", resolve_model(args.path)
    n = sum(p.numel() for p in model.parameters())
    if args.json:
        print(json.dumps({"format": fmt, "parameters": n, "config": model.config.to_dict()}, indent=2))
        return 0
    cfg = model.config
    print(f"format      {fmt}")
    print(f"family      {cfg.family}")
    print(f"parameters  {n / 1e6:.2f} M")
    print(f"embed_dim   {cfg.embed_dim}")
    for modality, tower in cfg.towers.items():
        print(f"{modality + ' tower':<11} {tower_summary(tower)}")
    print(f"scale t     {float(model.scale()):.3f}" + (
        f", bias {float(model.logit_bias):.3f}" if model.logit_bias is not None else ""))
    print(f"tokenizer   {'yes' if model.tokenizer is not None else 'none (pass token ids)'}")
    return 0
