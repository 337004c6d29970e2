"""``tether models`` and ``tether info``: what architectures and checkpoints hold."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list named model configs",
                       description="List the named architectures tether can build, with their sizes.\n\n"
                                   "Example:\n  tether models\n  tether models --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the full configs as JSON")
    p.set_defaults(func=run_models)
    p = sub.add_parser("info", help="describe a checkpoint (tether, Hugging Face, OpenCLIP, OpenAI)",
                       description="Load a checkpoint and print its format, architecture and parameter count.\n\n"
                                   "Example:\n  tether info ./my-clip\n  tether info ViT-B-32.pt",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="checkpoint directory or weights file")
    p.add_argument("--json", action="store_true", help="print the config as JSON")
    p.set_defaults(func=run_info)


def run_models(args) -> int:
    from tether.models import get_model_config, list_models
    rows = []
    for name in list_models():
        cfg = get_model_config(name)
        if args.json:
            rows.append({"name": name, **cfg.to_dict()})
            continue
        v, t = cfg.vision, cfg.text
        image = f"{v.kind} {v.image_size}px" + (f"/{v.patch_size} w{v.width} x{v.layers}" if v.kind == "vit" else "")
        print(f"{name:<16} {cfg.family:<7} embed {cfg.embed_dim:<5} image {image:<26} "
              f"text w{t.width} x{t.layers} ctx {t.context_length}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def run_info(args) -> int:
    from tether.checkpoints import detect_format, load_model
    fmt = detect_format(args.path)
    model = load_model(args.path, format=fmt)
    n = sum(p.numel() for p in model.parameters())
    if args.json:
        print(json.dumps({"format": fmt, "parameters": n, "config": model.config.to_dict()}, indent=2))
        return 0
    cfg = model.config
    print(f"format      {fmt}")
    print(f"family      {cfg.family}")
    print(f"parameters  {n / 1e6:.2f} M")
    print(f"embed_dim   {cfg.embed_dim}")
    print(f"image tower {cfg.vision.kind}, {cfg.vision.image_size}px")
    print(f"text tower  {cfg.text.kind}, context {cfg.text.context_length}, vocab {cfg.text.vocab_size}")
    print(f"logit scale {float(model.scale()):.3f}" + (
        f", bias {float(model.logit_bias):.3f}" if model.logit_bias is not None else ""))
    print(f"tokenizer   {'yes' if model.tokenizer is not None else 'none (pass token ids)'}")
    return 0
