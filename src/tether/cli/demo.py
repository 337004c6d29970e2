"""``tether demo``: train and evaluate a tiny CLIP on Fashion-MNIST, offline."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="train a tiny CLIP on Fashion-MNIST and report its zero-shot accuracy",
        description=(
            "One command, offline, a few minutes on 2 CPU cores: builds Fashion-MNIST image-caption pairs\n"
            "(Debian's dataset-fashion-mnist), trains a tokenizer and the tiny-vit-28 model, evaluates\n"
            "zero-shot accuracy with prompt phrasings never seen in training plus a linear probe, and\n"
            "writes DIR/report.md, DIR/metrics.json, DIR/results/*.json, plots, DIR/model\n"
            "(load it with tether.load) and DIR/index (the 10,000 test images embedded by the model and\n"
            "indexed: tether serve --index DIR/index). Rerunning with the same DIR resumes from its checkpoints.\n\n"
            "Examples:\n"
            "  tether demo --out demo\n"
            "  tether demo --out demo-siglip --loss siglip"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo", help="output directory (default: demo)")
    p.add_argument("--loss", choices=["clip", "siglip"], default="clip")
    p.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.demo import run_demo
    m = run_demo(args.out, loss=args.loss, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                 progress=not args.no_progress)
    print(f"zero-shot top-1 {m['zeroshot_acc1']:.4f} | linear probe {m['linear_probe_acc1']:.4f} | "
          f"{m['total_seconds']:.0f} s")
    print(f"report: {args.out}/report.md   model: {args.out}/model")
    print(f"search the test images: tether serve --index {args.out}/index   (then open http://127.0.0.1:1234/)")
    return 0
