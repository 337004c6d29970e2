"""BasicMotions bound to text: an IMU tower trained against a frozen text tower, test-split accuracy.

BasicMotions (80 real smart-watch recordings, 6 x 100 at 10 Hz, four activities; 40 train /
40 test, read from aeon's wheel, see tether/data/basic_motions.py) paired with captions that
describe the activity ("a person playing badminton.", five templates). The IMU tower
(preset ``tiny``: 6 x 128 after resampling, kernel-8 patches, 2 blocks) is bound to the frozen
text tower of ``--model`` with `tether bind --anchor text` (InfoNCE, ImageBind's fixed IMU scale
t = 5). Test accuracy: each test recording is classified by the text tower's prompt ensembles of
the four descriptions (the evaluation driver's zero-shot classifier). Chance is 25%; the figure
before training (same initial weights) is reported beside it. Several seeds, since 40 test
recordings make one run's accuracy coarse (2.5 points per recording).

    python bench/bench_imu_bind.py --model demo/model           # the demo's text tower (Fashion-MNIST captions)
    python bench/bench_imu_bind.py --model align-effnet-minilm  # all-MiniLM-L6-v2 (pretrained), random projection
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def accuracy(model, source, classifier) -> float:
    from tether.embedding import embed
    result = embed(model, "imu", source)
    assert len(result) == len(source), result.skips.summary("imu")
    return float(classifier.evaluate(result.vectors, [s.label for s in result.samples])["acc1"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo/model", help="the model whose text tower is the anchor")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--tower", default="tiny")
    p.add_argument("--out", default="bench/results/imu_bind")
    args = p.parse_args()

    import torch

    import tether
    from tether.bind import bind_config
    from tether.data import build_source
    from tether.data.basic_motions import TEMPLATES
    from tether.metrics.zeroshot import ZeroShotClassifier
    from tether.models.extend import add_tower
    from tether.modalities import tower_preset
    from tether.train.run import train

    test = build_source({"type": "basic_motions", "split": "test"})
    if args.model in tether.list_models():  # an architecture (align-effnet-minilm: pretrained towers, random
        torch.manual_seed(0)                # projections): saved once, so every run binds the same anchor
        args.model = str(tether.save(tether.create_model(args.model), Path(args.out) / "anchor"))
    anchor = tether.load(args.model)
    classifier = ZeroShotClassifier.build(anchor, test.class_names, list(TEMPLATES))
    results = {"chance": 0.25, "test_recordings": len(test), "settings": vars(args), "seeds": {}}
    started = time.perf_counter()
    for seed in map(int, args.seeds.split(",")):
        torch.manual_seed(seed)  # train() seeds the same way: the untrained tower is the run's start
        untrained = tether.load(args.model)
        add_tower(untrained, "imu", tower_preset("imu", args.tower))
        run_dir = Path(args.out) / f"seed{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = bind_config(args.model, "imu", "basic_motions", anchor="text", tower=args.tower, out_dir=str(run_dir),
                          steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=seed, workers=0,
                          log_every=20, checkpoint_every=args.steps, tensorboard=False)
        train(cfg, progress=False)
        bound = tether.load(run_dir / "model")
        results["seeds"][seed] = {"before": accuracy(untrained, test, classifier),
                                  "after": accuracy(bound, test, classifier)}
        print(f"seed {seed}: test accuracy {results['seeds'][seed]['before']:.3f} before, "
              f"{results['seeds'][seed]['after']:.3f} after binding", flush=True)
    afters = [r["after"] for r in results["seeds"].values()]
    results["after_mean"] = statistics.mean(afters)
    results["after_min"], results["after_max"] = min(afters), max(afters)
    results["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
