"""``tether train``: train an aligned model from a config file."""
from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a CLIP/SigLIP model from a YAML/JSON config",
        description=(
            "Train an aligned image-text model. Every option lives in the config file (YAML or JSON);\n"
            "--set overrides any key, with dots for nesting. Unknown keys and wrong types fail before\n"
            "training starts. Re-running the same command in the same out_dir resumes exactly where\n"
            "the last checkpoint left off. Under torchrun, the same command trains data-parallel.\n\n"
            "Config keys (defaults in tether/train/config.py): model, loss (clip|siglip; with bind\n"
            "also cosine|l2|kl), batch_size,\n"
            "micro_batch_size (gradient cache), steps, optim.{lr,min_lr,weight_decay,betas,eps,\n"
            "warmup_steps,grad_clip}, precision (fp32|bf16), compile, grad_checkpointing, patch_dropout,\n"
            "modalities (the pair contrasted, default [image, text]), lock (LiT: towers to freeze,\n"
            "e.g. --set 'lock=[\"image\"]'), locked_feature_cache_mib (LiT: reuse the locked tower's\n"
            "outputs), bind (one tower trained against a frozen anchor: tether bind / distill),\n"
            "train_data, val_data, eval_templates, augment, tokenizer,\n"
            "workers, seed, out_dir, checkpoint_every, eval_every, log_every, device, tensorboard,\n"
            "resume_allow.\n\n"
            "Resuming checks the checkpoint's settings: a changed model, data, batch size, loss,\n"
            "optimizer or schedule, precision, seed or tokenizer stops with the changed keys; steps,\n"
            "logging, evaluation and checkpoint cadence, workers and device may change.\n\n"
            "Examples:\n"
            "  tether train --config configs/fmnist-clip.yaml\n"
            "  tether train --config configs/fmnist-clip.yaml --set loss=siglip --set optim.lr=1e-3\n"
            "  tether train --config configs/fmnist-clip.yaml --set optim.lr=1e-4 --allow-changed optim.lr\n"
            "  torchrun --nproc_per_node 4 -m tether.cli.main train --config big.yaml"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML or JSON config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=3e-4 (repeatable)")
    p.add_argument("--allow-changed", action="append", default=[], metavar="KEY",
                   help="on resume, let KEY (e.g. optim.lr, or a section: optim) differ from the checkpoint's run "
                        "(repeatable; adds to the config's resume_allow)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to out_dir)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.train.config import load_train_config
    from tether.train.resume import ResumeMismatchError
    from tether.train.run import train
    cfg = load_train_config(args.config, args.overrides)
    if args.allow_changed:
        cfg.resume_allow = [*cfg.resume_allow, *args.allow_changed]
        cfg.validate()
    try:
        final = train(cfg, progress=not args.no_progress)
    except ResumeMismatchError as err:  # the one error printed on several lines: one per changed key
        if os.environ.get("TETHER_DEBUG"):
            raise
        print(f"tether train: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(final, indent=2, default=str))
    return 0
