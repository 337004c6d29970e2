"""``tether demo``: a tiny CLIP trained and evaluated on Fashion-MNIST, offline, in minutes.

1. pairs: the 60,000 Fashion-MNIST training images, each with a caption from a
   class name and one of ten training phrasings (fresh per epoch);
2. a byte-level BPE tokenizer trained on those captions; the ``tiny-vit-28`` model;
3. training with InfoNCE (or SigLIP), checkpointed, so a rerun resumes;
4. evaluation on the 10,000 test images: zero-shot with five phrasings never seen in
   training, a linear probe on the frozen image embeddings, and the distribution of
   image-caption cosine scores per class;
5. DIR/model (tether format, ``tether.load``), DIR/report.md, DIR/results/*.json
   (CLIP_benchmark format) and plots;
6. DIR/index: the test images embedded by the trained model and indexed
   (``tether serve --index DIR/index`` searches them).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .io import atomic_file, atomic_write_json, atomic_write_text
from .train.config import OptimConfig, TrainConfig

DEMO_DEFAULTS = dict(steps=1500, batch_size=256, lr=1e-3)


def demo_config(out_dir: str | Path, loss: str = "clip", steps: int = DEMO_DEFAULTS["steps"],
                batch_size: int = DEMO_DEFAULTS["batch_size"], seed: int = 0) -> TrainConfig:
    return TrainConfig(  # no val_data: run_demo evaluates the final model itself, once
        model="tiny-vit-28", loss=loss, steps=steps, batch_size=batch_size, seed=seed,
        optim=OptimConfig(lr=DEMO_DEFAULTS["lr"], weight_decay=0.1, warmup_steps=min(100, steps // 10)),
        train_data={"type": "fashion_mnist", "split": "train"},
        workers=0, out_dir=str(out_dir),
        checkpoint_every=max(1, steps // 3), eval_every=0, log_every=max(1, steps // 30),
        tokenizer={"train_vocab_size": 1024})


def run_demo(out_dir: str | Path, loss: str = "clip", steps: int = DEMO_DEFAULTS["steps"],
             batch_size: int = DEMO_DEFAULTS["batch_size"], seed: int = 0, progress: bool = True) -> dict:
    """Train, evaluate and report; returns the metrics written to DIR/metrics.json."""
    from . import load
    from .train.run import train
    out = Path(out_dir)
    cfg = demo_config(out, loss, steps, batch_size, seed)
    started = time.perf_counter()
    train(cfg, progress=progress)
    train_seconds = time.perf_counter() - started
    model = load(out / "model")
    metrics = evaluate_fashion_mnist(model, out, progress=progress)
    metrics.update(loss=loss, steps=steps, batch_size=batch_size, train_seconds=round(train_seconds, 1),
                   total_seconds=round(time.perf_counter() - started, 1))
    atomic_write_json(out / "metrics.json", metrics)
    plot_training_curve(out / "log.jsonl", out / "training_loss.png")
    atomic_write_text(out / "report.md", report_markdown(metrics))
    from .search.demo_index import build_demo_index
    build_demo_index(out, progress=progress)
    return metrics


def evaluate_fashion_mnist(model, out: Path, progress: bool = True) -> dict:
    """Zero-shot (held-out phrasings), linear probe and score distributions on the test split.

    One call to the evaluation driver embeds the 10,000 test images and the first 10,000 training
    images (for the probe) once each; the score distribution reuses the test embeddings.
    """
    from .data import FASHION_MNIST_CLASSES, HELDOUT_TEMPLATES
    from .embedding import embed
    from .metrics import result_record, write_result
    from .metrics.evaluate import BUILTIN, evaluate
    from .metrics.scores import pair_scores, plot_score_histograms, summarize_scores

    run = evaluate(model, BUILTIN["fashion_mnist"], ["zeroshot", "linear_probe"], templates=list(HELDOUT_TEMPLATES),
                   train_limit=10000, batch_size=1000, progress=progress)
    zs, probe = run.metrics["zeroshot"], run.metrics["linear_probe"]
    classes, test_labels = list(FASHION_MNIST_CLASSES), run.test.labels.tolist()
    captions = [f"an image of a {classes[i].lower()}." for i in test_labels]
    scores = pair_scores(run.test.images, embed(model, "text", captions, batch_size=256).vectors)
    plot_score_histograms(scores, out / "clip_scores.png", groups=[classes[i] for i in test_labels],
                          title="Fashion-MNIST test: cosine(image, 'an image of a <class>.')")
    name = "tether-demo-" + model.config.family
    results = out / "results"
    write_result(results / "fashion_mnist_zeroshot_classification.json",
                 result_record("fashion_mnist", name, "zeroshot_classification", _scalars(zs)))
    write_result(results / "fashion_mnist_linear_probe.json",
                 result_record("fashion_mnist", name, "linear_probe", _scalars(probe)))
    summary = summarize_scores(scores)
    return {"zeroshot_acc1": zs["acc1"], "zeroshot_acc5": zs["acc5"],
            "zeroshot_mean_per_class_recall": zs["mean_per_class_recall"],
            "zeroshot_per_class": dict(zip(classes, _per_class(zs))),
            "linear_probe_acc1": probe["lp_acc1"], "linear_probe_l2_lambda": probe.get("l2_lambda"),
            "clip_score_mean": float(summary["mean"]), "clip_score_std": float(summary["std"])}


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None}


def _per_class(zs: dict) -> list[float]:
    per = zs.get("per_class_accuracy") or zs.get("per_class_recall") or []
    return list(per.values()) if isinstance(per, dict) else list(per)


def plot_training_curve(log_path: Path, png: Path) -> None:
    """Loss against step from the run's JSON lines log."""
    from .metrics.scores import _import_matplotlib
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind") == "train" and "loss" in r]
    if not rows:
        return
    _, Figure, FigureCanvas = _import_matplotlib()
    fig = Figure(figsize=(6, 3.5))
    FigureCanvas(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("tether demo: training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def report_markdown(m: dict) -> str:
    rows = "\n".join(f"| {name} | {acc:.3f} |" for name, acc in m["zeroshot_per_class"].items())
    return f"""# tether demo: a tiny CLIP on Fashion-MNIST

Trained `tiny-vit-28` from scratch with the {m['loss']} loss for {m['steps']} steps of {m['batch_size']} pairs
({m['train_seconds']:.0f} s of training, {m['total_seconds']:.0f} s in all).

| metric (10,000 test images) | value |
|---|---|
| zero-shot top-1 (phrasings never seen in training) | {m['zeroshot_acc1']:.4f} |
| zero-shot top-5 | {m['zeroshot_acc5']:.4f} |
| zero-shot mean per-class recall | {m['zeroshot_mean_per_class_recall']:.4f} |
| linear probe top-1 (10,000 training embeddings) | {m['linear_probe_acc1']:.4f} |
| mean cosine(image, caption of its class) | {m['clip_score_mean']:.3f} ± {m['clip_score_std']:.3f} |

Zero-shot accuracy per class:

| class | accuracy |
|---|---|
{rows}

Files: `model/` (load with `tether.load`), `results/*.json` (CLIP_benchmark format), `training_loss.png`,
`clip_scores.png`, `log.jsonl`, `checkpoints/`, `index/` (the test images, searchable:
`tether serve --index demo/index`, then open http://127.0.0.1:1234/).
"""
