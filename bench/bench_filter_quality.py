"""Filtering quality on real data: does the CLIP score find captions swapped between images?

For each dataset, 20 % of the rows (seeded) get another chosen row's caption (a random cycle
among the chosen rows, so every chosen row's caption moves). The pairs are embedded by the model,
written as an embedding folder (``tether.curate.write_part``), scored by ``tether.curate.clip_scores``
and filtered by ``tether.curate.filter.filter_folder`` (score rule only: the basic rules are
about web captions, not this test). Reported:

* ROC AUC of the CLIP score for telling clean pairs from swapped ones (scikit-learn);
* precision (fraction of the kept pairs that are clean) and recall (fraction of the clean pairs
  kept) of the kept set at LAION's threshold 0.28 and at DataComp-style top 80 %.

Datasets and models:

* ``tuxpaint``: the held-out ``validation`` split of the Tux Paint stamps (155 pairs; the LiT model
  never trained on them), model from ``bench/bench_tuxpaint_lit.py`` (``runs/bench-tuxpaint-lit/model``);
  a swap between two stamps with the same caption is not counted as swapped;
* ``fashion_mnist``: 2,000 test images (seeded) with held-out caption phrasings (one per row,
  seeded), model: the demo's (``tether demo`` output, ``--fmnist-model``); a swap between two images
  of the same class leaves a correct caption and is counted as clean.

    python bench/bench_tuxpaint_lit.py                 # trains the LiT model (once)
    python bench/bench_filter_quality.py --fmnist-model /tmp/demo-clip/model
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def swap_captions(captions: list[str], fraction: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Move the captions of ``fraction`` of the rows along a random cycle; -> (captions, source row of each)."""
    rng = random.Random(seed)
    n = len(captions)
    chosen = rng.sample(range(n), int(round(fraction * n)))
    source = np.arange(n)
    for a, b in zip(chosen, chosen[1:] + chosen[:1]):
        source[a] = b
    return [captions[s] for s in source], source


def evaluate(model, images: list, captions: list[str], swapped: np.ndarray, name: str) -> dict:
    from sklearn.metrics import roc_auc_score

    from tether.curate import clip_scores, write_part
    from tether.curate.filter import filter_folder
    from tether.embedding import embed

    img = embed(model, "image", images, batch_size=64).vectors.numpy()
    txt = embed(model, "text", captions, batch_size=256).vectors.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "emb"
        write_part(folder, 0, {"image": img, "text": txt},
                   {"key": [f"{name}/{i}" for i in range(len(captions))], "caption": captions})
        scores = clip_scores(folder)
        clean = ~swapped
        out = {"dataset": name, "pairs": len(captions), "swapped": int(swapped.sum()),
               "roc_auc": float(roc_auc_score(swapped, -scores)),
               "mean_score_clean": float(scores[clean].mean()), "mean_score_swapped": float(scores[swapped].mean())}
        for label, kw in (("min_score_0.28", {"min_score": 0.28}), ("top_80%", {"top_fraction": 0.8})):
            r = filter_folder(folder, Path(tmp) / label, rules=(), **kw)
            kept = r.kept
            out[label] = {"threshold": r.threshold, "kept": int(kept.sum()),
                          "precision": float(clean[kept].mean()) if kept.any() else None,
                          "recall": float(kept[clean].mean())}
    return out


def tuxpaint(model_path: str, seed: int) -> dict:
    import tether
    from tether.data import TuxPaintSource
    stamps = TuxPaintSource(split="validation").stamps
    captions = [s.caption for s in stamps]
    moved, source = swap_captions(captions, 0.2, seed)
    swapped = np.array([moved[i] != captions[i] for i in range(len(captions))])
    model = tether.load(model_path).eval()
    return evaluate(model, [s.path for s in stamps], moved, swapped, "tuxpaint-validation")


def fashion_mnist(model_path: str, seed: int, n: int = 2000) -> dict:
    import tether
    from tether.data import format_caption
    from tether.data.fashion_mnist import FASHION_MNIST_CLASSES, HELDOUT_TEMPLATES, fashion_mnist_arrays
    images, labels = fashion_mnist_arrays("test")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(images), n, replace=False))
    templates = rng.integers(0, len(HELDOUT_TEMPLATES), n)
    captions = [format_caption(HELDOUT_TEMPLATES[t], FASHION_MNIST_CLASSES[labels[r]]) for r, t in zip(rows, templates)]
    moved, source = swap_captions(captions, 0.2, seed)
    swapped = labels[rows][source] != labels[rows]
    model = tether.load(model_path).eval()
    result = evaluate(model, [images[r] for r in rows], moved, swapped, "fashion-mnist-test")
    result["moved_within_class"] = int((source != np.arange(n)).sum() - swapped.sum())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lit-model", default=str(ROOT / "runs" / "bench-tuxpaint-lit" / "model"))
    ap.add_argument("--fmnist-model", default="/tmp/demo-clip/model", help="a `tether demo` model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    results = []
    for name, fn, path in (("tuxpaint", tuxpaint, args.lit_model), ("fashion_mnist", fashion_mnist, args.fmnist_model)):
        if not Path(path, "config.json").is_file():
            print(f"{name}: no model at {path} (skipped)")
            continue
        r = fn(path, args.seed)
        r["model"] = path
        results.append(r)
        print(json.dumps(r, indent=1), flush=True)
    print("\n| dataset | model | pairs | swapped | ROC AUC | >= 0.28: kept / precision / recall | top 80%: threshold / precision / recall |")
    print("|---|---|---:|---:|---:|---|---|")
    for r in results:
        a, b = r["min_score_0.28"], r["top_80%"]
        prec = "-" if a["precision"] is None else f"{a['precision']:.3f}"
        print(f"| {r['dataset']} | {r['model']} | {r['pairs']} | {r['swapped']} | {r['roc_auc']:.3f} | "
              f"{a['kept']} / {prec} / {a['recall']:.3f} | {b['threshold']:.3f} / {b['precision']:.3f} / {b['recall']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
