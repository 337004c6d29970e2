"""``tether bind``: train a new modality's tower against a frozen anchor tower (ImageBind)."""
from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
Add a modality to an aligned model: its new tower is trained against the model's frozen anchor
tower (the image tower by default, or text) on pairs of (new-modality input, anchor input), with
symmetric InfoNCE at ImageBind's fixed scale t for the modality (depth 5, thermal 10, IMU 5,
audio 20; --scale to choose, --learn-scale to learn it). What the anchor is aligned to becomes
reachable from the new modality: bind depth to images and depth-to-text zero-shot emerges
without a single depth-text pair. It is one `tether train` run (gradient cache, the anchor's
feature cache, resume after a kill: rerun the same command, logs, held-out evaluation); the
result, OUT/model, holds every tower of the model, bit for bit as it was, plus the new one.

Data: a built-in source (fashion_mnist_points, basic_motions) or a JSON spec, e.g. a manifest
whose column named after the modality holds file paths:
'{"type": "manifest", "path": "pairs.csv", "path_columns": ["depth"]}'.

Examples:
  tether bind --model demo/model --modality points --data '{"type": "fashion_mnist_points", "augment": true}' \\
      --val-data '{"type": "fashion_mnist_points", "split": "test"}' --out runs/points
  tether bind --model demo/model --modality imu --anchor text --data basic_motions \\
      --val-data '{"type": "basic_motions", "split": "test"}' --out runs/imu
  tether bind --model ViT-B-32/openai --modality depth --tower imagebind \\
      --data '{"type": "manifest", "path": "pairs.csv", "path_columns": ["depth"]}' --out runs/depth
"""


def add_parser(sub) -> None:
    p = sub.add_parser("bind", help="train a new modality's tower against a frozen anchor tower (ImageBind)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, anchor_help="the frozen tower to bind to (default image; or text)")
    p.add_argument("--scale", type=float, help="the pair's multiplier t (default: the tower config's ImageBind "
                                               "value, else 1/0.07)")
    p.add_argument("--learn-scale", action="store_true", help="learn t instead of keeping it fixed")
    p.set_defaults(func=run, loss="clip")


def add_arguments(p, anchor_help: str) -> None:
    """The options ``tether bind`` and ``tether distill`` share."""
    p.add_argument("--model", required=True, help="the model holding the anchor: checkpoint path, published name "
                                                  "or Hub id")
    p.add_argument("--modality", required=True, help="the modality to train (points, depth, thermal, imu, audio ...)")
    p.add_argument("--anchor", default="image", help=anchor_help)
    p.add_argument("--tower", default="tiny", help="the new tower: a preset of the modality (tiny, imagebind ...), "
                                                   "a JSON tower config, or none (the model has it: train it on)")
    p.add_argument("--data", required=True, metavar="SPEC", help="training pairs: TYPE, TYPE:PATH or a JSON spec")
    p.add_argument("--val-data", metavar="SPEC", help="held-out pairs: zero-shot through the model's text "
                                                       "classifier and retrieval against the anchor")
    p.add_argument("--out", required=True, help="run folder (rerun the same command to resume)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other training key, as for tether train (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to OUT)")


def config_from_args(args, **bind_options):
    from tether.bind import bind_config
    from tether.errors import ConfigError
    tower = None if args.tower == "none" else args.tower
    if tower and tower.lstrip().startswith("{"):
        try:
            tower = json.loads(tower)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--tower {args.tower!r}: not valid JSON ({err.msg})") from None
    return bind_config(args.model, args.modality, args.data, anchor=args.anchor, tower=tower, loss=args.loss,
                       val_data=args.val_data, out_dir=args.out, steps=args.steps, batch_size=args.batch_size,
                       lr=args.lr, overrides=args.overrides, **bind_options)


def train_and_print(cfg, args) -> int:
    from tether.train.run import train
    final = train(cfg, progress=not args.no_progress)
    print(json.dumps(final, indent=2, default=str))
    return 0


def run(args) -> int:
    cfg = config_from_args(args, scale=args.scale, learn_scale=args.learn_scale)
    return train_and_print(cfg, args)
