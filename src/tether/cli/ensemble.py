"""``tether ensemble``: several runs' towers of one modality as one tower of one checkpoint."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ensemble", help="combine runs bound to one anchor into one model whose tower is their ensemble",
        description=(
            "Runs of one recipe with different seeds err on different inputs. This writes one checkpoint\n"
            "whose MODALITY tower is the mean of the runs' unit embeddings (tower kind 'ensemble'); every\n"
            "other tower is the runs' shared one (they must be the same, bit for bit: runs bound or\n"
            "distilled against the same frozen anchor are). The result loads, embeds and indexes like\n"
            "any model.\n\n"
            "Examples:\n"
            "  tether ensemble runs/digits-s0/model runs/digits-s1/model runs/digits-s2/model \\\n"
            "      --modality audio --out runs/digits-ensemble\n"
            "  tether embed --model runs/digits-ensemble --audio recordings/ --out emb/"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="two or more checkpoints holding the modality's tower")
    p.add_argument("--modality", required=True, help="the tower to ensemble (audio, points, image ...)")
    p.add_argument("--out", required=True, help="output checkpoint directory (written atomically)")
    p.set_defaults(func=run)


def run(args) -> int:
    import tether
    from tether.models.ensemble import ensemble
    model = ensemble([tether.load(m) for m in args.models], args.modality)
    path = tether.save(model, args.out)
    print(f"{len(model.towers[args.modality].members)} {args.modality} towers -> {path}")
    return 0
