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
        towers = "  ".join(f"{m} {_tower_summary(t)}" for m, t in cfg.towers.items())
        print(f"{name:<20} {cfg.family:<7} embed {cfg.embed_dim:<5} {towers}")
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
    for modality, tower in cfg.towers.items():
        print(f"{modality + ' tower':<11} {_tower_summary(tower)}")
    print(f"logit scale {float(model.scale()):.3f}" + (
        f", bias {float(model.logit_bias):.3f}" if model.logit_bias is not None else ""))
    print(f"tokenizer   {'yes' if model.tokenizer is not None else 'none (pass token ids)'}")
    return 0


def _tower_summary(t) -> str:
    """One phrase per tower: its kind and the sizes that tell towers of that kind apart."""
    parts = [t.kind]
    if hasattr(t, "image_size"):
        parts.append(f"{t.image_size}px" + (f"/{t.patch_size} w{t.width} x{t.layers}" if t.kind == "vit" else ""))
    if hasattr(t, "context_length"):
        parts.append(f"w{t.width} x{t.layers} ctx {t.context_length} vocab {t.vocab_size}"
                     if t.kind == "transformer" else f"ctx {t.context_length}")
    return " ".join(parts)
