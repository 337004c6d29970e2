"""fp32 vs bf16 autocast training throughput on the CPU.

    python bench/bench_precision_cpu.py --threads 2

Two workloads, each timed in alternating fp32 / bf16 windows (``--rounds`` of each) so a change
in machine load hits both:

- ``tiny``: the trainer's step function (gradient-cache ``contrastive_step`` with the plain path,
  AdamW, logit-scale clamp) on tiny-vit-28, batch 256, random inputs, ``--tiny-steps`` steps
  after 3 warm-up steps;
- ``vit-b-32``: the ViT-B-32 image tower alone, forward + backward at 224 px, batch 32,
  ``--big-steps`` steps after one warm-up step.

bf16 runs under ``torch.autocast("cpu", dtype=torch.bfloat16)`` exactly as ``precision: bf16``
does; the weights stay fp32. Prints one JSON line per window with the 1-minute load average
before and after it (the figures mean little on a busy machine).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext

import torch

from tether.losses import clip_loss
from tether.models import AlignedModel, get_model_config
from tether.train.gradcache import contrastive_step
from tether.train.optim import build_optimizer


def autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def tiny_rate(precision: str, steps: int, batch: int = 256) -> float:
    torch.manual_seed(0)
    model = AlignedModel(get_model_config("tiny-vit-28")).train()
    opt = build_optimizer(model, 1e-4, 0.2, (0.9, 0.98), 1e-6)
    pixels = torch.randn(batch, 3, 28, 28)
    ids = torch.randint(3, 500, (batch, 24))
    ids[:, 8] = 2

    def step():
        contrastive_step(model, pixels, ids, lambda i, t, s, b: clip_loss(i, t, s),
                         autocast=lambda: autocast(precision))
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.clamp_logit_scale_()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def vit_b32_rate(precision: str, steps: int, batch: int = 32) -> float:
    torch.manual_seed(0)
    tower = AlignedModel(get_model_config("ViT-B-32")).towers["image"].train()
    pixels = torch.randn(batch, 3, 224, 224)

    def step():
        with autocast(precision):
            out = tower(pixels)
        out.float().pow(2).mean().backward()
        tower.zero_grad(set_to_none=True)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tiny-steps", type=int, default=30)
    parser.add_argument("--big-steps", type=int, default=3)
    parser.add_argument("--only", choices=["tiny", "vit-b-32"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workloads = {"tiny": lambda p: tiny_rate(p, args.tiny_steps), "vit-b-32": lambda p: vit_b32_rate(p, args.big_steps)}
    for name, fn in workloads.items():
        if args.only and name != args.only:
            continue
        for rnd in range(args.rounds):
            for precision in ("fp32", "bf16"):
                before = os.getloadavg()[0]
                rate = fn(precision)
                print(json.dumps({"workload": name, "precision": precision, "round": rnd, "threads": args.threads,
                                  "samples_per_s": round(rate, 1), "load1_before": round(before, 2),
                                  "load1_after": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
