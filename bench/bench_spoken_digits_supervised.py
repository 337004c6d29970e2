"""Spoken digits, supervised upper bound: a tiny audio tower trained WITH labels on espeak-ng speech,
tested on Tux Paint's real recordings (per language, held-out languages apart).

The emergent zero-shot run (an audio tower bound only to digit images, scored through the text
classifier) can at best approach what labels give the same tower on the same synthetic speech;
this measures that ceiling and the synthetic -> real gap. Chance is 10%.

    PYTHONPATH=src python bench/bench_spoken_digits_supervised.py --out bench/results/spoken_digits_supervised.json

Synthesis (espeak-ng, 22 languages x 4 voices x 2 pitches x 10 digits = 1,760 files) is cached in
--cache; recordings under 2 s make three identical ImageBind clips, so one clip per file is used.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from tether.data.spoken_digits import espeak_digits, split_by_language, tuxpaint_spoken_digits
from tether.io import atomic_write_json
from tether.models.audio_modality import AudioProcessor, AudioProcessorConfig, AudioTowerConfig
from tether.models.vit import VisionTransformer

HELD_OUT = ("ja", "sv", "el", "nl")  # never in training, in any voice


def spectrograms(items, processor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [processor(d.path)[0] for d in items]  # (1, 128, 204): the one clip
    return torch.stack(rows), torch.tensor([d.label for d in items])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="bench/results/espeak_digits")
    ap.add_argument("--out", default="bench/results/spoken_digits_supervised.json")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    start = time.time()
    synthetic = espeak_digits(args.cache, variants=("m1", "m3", "f1", "f3"), speeds=(150,), pitches=(35, 65))
    train_items, _ = split_by_language(synthetic, HELD_OUT)
    real = tuxpaint_spoken_digits()
    processor = AudioProcessor(AudioProcessorConfig(clips=1))
    x, y = spectrograms(train_items, processor)
    x_real, y_real = spectrograms(real, processor)
    tower = VisionTransformer(AudioTowerConfig(width=64, layers=4, heads=4, drop_path=0.1), "audio")
    head = torch.nn.Linear(64, 10)
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    steps = args.epochs * -(-len(x) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    for epoch in range(args.epochs):
        tower.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            batch = x[idx]
            shift = int(torch.randint(0, 20, ()))  # a little time shift: the words start at different points
            batch = torch.roll(batch, shifts=shift, dims=-1)
            loss = F.cross_entropy(head(tower(batch)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}", flush=True)
    tower.eval()
    with torch.no_grad():
        predicted = torch.cat([head(tower(x_real[i:i + 64])).argmax(-1) for i in range(0, len(x_real), 64)])
    correct = (predicted == y_real).tolist()
    per_language: dict[str, dict] = {}
    for d, ok in zip(real, correct):
        entry = per_language.setdefault(d.language, {"correct": 0, "n": 0})
        entry["correct"] += int(ok)
        entry["n"] += 1
    seen = [ok for d, ok in zip(real, correct) if d.language not in HELD_OUT]
    held = [ok for d, ok in zip(real, correct) if d.language in HELD_OUT]
    result = {"train_files": len(train_items), "train_languages": sorted({d.language for d in train_items}),
              "held_out_languages": list(HELD_OUT), "test_files": len(real), "chance": 0.1,
              "acc1_all": sum(correct) / len(correct), "acc1_seen_languages": sum(seen) / len(seen),
              "acc1_held_out_languages": sum(held) / len(held),
              "per_language": {k: v["correct"] / v["n"] for k, v in sorted(per_language.items())},
              "epochs": args.epochs, "seed": args.seed, "seconds": round(time.time() - start, 1)}
    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "per_language"}, indent=1))


if __name__ == "__main__":
    main()
