"""Point clouds by distillation: Fashion-MNIST images as point clouds, a point cloud student (the
points preset `pillars` by default: point features scattered into a 16 x 16 grid, then a CNN)
trained from the `tether demo` model, classified zero-shot through the teacher's own text classifier.

Every student is one `tether bind` / `tether distill` run (tether.bind.bind_config + the trainer)
on point clouds drawn from the Fashion-MNIST training images (augmented: jitter, rotation,
scale), and is evaluated on clouds of the 10,000 test images (one fixed cloud per image) by the
teacher's zero-shot classifier (prompt ensembles of the held-out templates, never seen in the
demo's training), side by side with the teacher on the test images themselves:

  distill  cosine distillation to the frozen image tower (the teacher's embedding of the image)
  bind     symmetric InfoNCE against the frozen image tower (contrastive binding, ImageBind)
  labels   InfoNCE against the frozen text tower on captions made from the labels: the same
           student trained with labels (an upper bound: it sees the classes, the others do not)

Chance is 10%. The goal of the issue: the distilled student within 5 points of the teacher.

    python bench/bench_points_distill.py --teacher demo/model --runs distill --steps 2000 --batch-size 128 \
        --num-points 512 --tower pillars                                 # one BENCHMARKS.md row (each alone)
    python bench/bench_points_distill.py --teacher demo/model --steps 50 --runs distill   # quick look

Each run reports its wall time and its CPU seconds (this process and finished children): with
OMP_NUM_THREADS=1 and --workers 0, the CPU seconds are what it takes alone on an idle core.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RUNS = {"distill": ("image", "cosine"), "bind": ("image", "clip"), "labels": ("text", "clip")}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: with one thread and workers=0, what the
    run would take alone on an idle core, whatever else shares the machine."""
    import resource
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def teacher_accuracy(model, source, classifier) -> float:
    from tether.embedding import embed
    result = embed(model, "image", source, batch_size=512)
    labels = [s.label for s in result.samples]
    return float(classifier.evaluate(result.vectors, labels)["acc1"])


def student_accuracy(model, source, classifier) -> float:
    from tether.embedding import embed
    result = embed(model, "points", source, batch_size=512)
    assert len(result) == len(source), result.skips.summary("points")
    return float(classifier.evaluate(result.vectors, [s.label for s in result.samples])["acc1"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="demo/model", help="the `tether demo` model (default demo/model)")
    p.add_argument("--runs", default="distill,bind,labels", help="which students (comma-separated)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--train-limit", type=int, default=60000, help="training images turned into clouds")
    p.add_argument("--test-limit", type=int, default=10000)
    p.add_argument("--num-points", type=int, default=128)
    p.add_argument("--tower", default="pillars", help="the student's points preset (pillars, tiny, small, base)")
    p.add_argument("--distill-loss", default="cosine", choices=["cosine", "l2", "kl"],
                   help="the distill run's loss (bind and labels use InfoNCE)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (0: all CPU time in this one)")
    p.add_argument("--out", default="bench/results/points_distill")
    args = p.parse_args()

    import torch

    import tether
    from tether.bind import bind_config
    from tether.data import FASHION_MNIST_CLASSES, HELDOUT_TEMPLATES, build_source
    from tether.modalities import tower_preset
    from tether.metrics.zeroshot import ZeroShotClassifier
    from tether.train.run import train

    torch.manual_seed(0)
    out = Path(args.out)
    teacher = tether.load(args.teacher)
    classifier = ZeroShotClassifier.build(teacher, list(FASHION_MNIST_CLASSES), list(HELDOUT_TEMPLATES))
    test = build_source({"type": "fashion_mnist_points", "split": "test", "limit": args.test_limit,
                         "num_points": args.num_points})
    started = time.perf_counter()
    results = {"teacher_images": teacher_accuracy(teacher, test, classifier), "chance": 0.1,
               "test_items": len(test), "settings": vars(args)}
    print(f"teacher on test images: {results['teacher_images']:.4f}", flush=True)
    train_spec = {"type": "fashion_mnist_points", "split": "train", "limit": args.train_limit,
                  "num_points": args.num_points, "augment": True}
    tower = tower_preset("points", args.tower)
    tower["processor"]["num_points"] = args.num_points  # the clouds come with exactly this many points
    for name in args.runs.split(","):
        anchor, loss = RUNS[name]
        loss = args.distill_loss if name == "distill" else loss
        run_dir = out / name
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = bind_config(args.teacher, "points", train_spec, anchor=anchor, loss=loss, tower=tower,
                          out_dir=str(run_dir), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          workers=args.workers, log_every=50, checkpoint_every=args.steps, tensorboard=False)
        t0, c0 = time.perf_counter(), cpu_seconds()
        train(cfg, progress=False)
        student = tether.load(run_dir / "model")
        results[name] = {"acc1": student_accuracy(student, test, classifier), "loss": loss,
                         "train_seconds": round(time.perf_counter() - t0, 1),
                         "train_cpu_seconds": round(cpu_seconds() - c0, 1)}
        print(f"{name}: zero-shot on test clouds {results[name]['acc1']:.4f} "
              f"({results[name]['train_seconds']} s, {results[name]['train_cpu_seconds']} CPU s)", flush=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["student_parameters"] = sum(p.numel() for p in student.towers["points"].parameters()) + \
        sum(p.numel() for p in student.projections["points"].parameters())
    out.mkdir(parents=True, exist_ok=True)
    name = "results.json" if args.runs == "distill,bind,labels" else f"results_{args.runs.replace(',', '_')}.json"
    (out / name).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
