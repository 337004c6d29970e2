"""``tether models``: the named architectures tether can build."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list named architectures, or published models with --pretrained",
                       description="List the named architectures tether can build, with their sizes, or with\n"
                                   "--pretrained the published models tether loads by name (docs/pretrained.md).\n\n"
                                   "Example:\n  tether models\n  tether models --pretrained\n  tether models --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the full configs (or registry entries) as JSON")
    p.add_argument("--pretrained", action="store_true", help="list the published models (the registry)")
    p.set_defaults(func=run_models)


def run_models(args) -> int:
    if args.pretrained:
        return run_pretrained(args.json)
    from tether.models import get_model_config, list_models
    rows = []
    for name in list_models():
        cfg = get_model_config(name)
        if args.json:
            rows.append({"name": name, **cfg.to_dict()})
            continue
        towers = "  ".join(f"{m} {tower_summary(t)}" for m, t in cfg.towers.items())
        print(f"{name:<20} {cfg.family:<7} embed {cfg.embed_dim:<5} {towers}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def run_pretrained(as_json: bool) -> int:
    from tether.hub import pretrained_registry
    entries = sorted(pretrained_registry().values(), key=lambda e: e.name)
    if as_json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    print(f"{'name':<32} {'hub id':<44} {'licence':<11} ImageNet zero-shot top-1")
    for e in entries:
        acc = f"{100 * e.imagenet_zeroshot_top1:.2f}%" if e.imagenet_zeroshot_top1 is not None else "-"
        print(f"{e.name:<32} {e.hub_id:<44} {e.license:<11} {acc}")
    return 0


def tower_summary(t) -> str:
    """One phrase per tower: its kind and the sizes that tell towers of that kind apart."""
    parts = [t.kind]
    if hasattr(t, "image_size"):
        parts.append(f"{t.image_size}px" + (f"/{t.patch_size} w{t.width} x{t.layers}" if t.kind == "vit" else ""))
    if hasattr(t, "input_size") and t.kind == "vit":  # patch transformers of other modalities (audio ...)
        stride = f"s{t.patch_stride}" if t.patch_stride not in (None, t.patch_size) else ""
        parts.append(f"{'x'.join(map(str, t.input_size))}/{t.patch_size}{stride} w{t.width} x{t.layers}")
    if hasattr(t, "context_length"):
        parts.append(f"w{t.width} x{t.layers} ctx {t.context_length} vocab {t.vocab_size}"
                     if t.kind == "transformer" else f"ctx {t.context_length}")
    return " ".join(parts)
