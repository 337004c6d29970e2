"""Labels from the shared space, measured: label-error detection on Fashion-MNIST, weak labels on Tux Paint.

**Fashion-MNIST 70k** (train + test, the ``tether demo`` model): labels corrupted at 5% and 20%,
uniformly (any other class) or class-conditionally between look-alike classes (T-shirt/top,
Pullover, Coat, Shirt; Sandal, Sneaker, Ankle boot), seeded. On the *corrupted* labels, out-of-sample
probabilities from a 5-fold cross-validated probe, the zero-shot text classifier (held-out prompts,
scale fitted by NLL), both averaged, and the 10-nearest-neighbour vote. For each, tether's ranks
(cleanlab's scores, which tether computes identically, the noise-aware ``noise_posterior`` rank and
the CLIP-specific text + neighbour rank):
precision@k (k = number of flipped labels, so recall@k is the same number) and ROC AUC of finding the
flipped labels; beside them cleanlab's ``find_label_issues`` masks on the same probabilities
(precision, recall; tether's masks are asserted equal to cleanlab's) and the precision of tether's
best rank at cleanlab's budget. The audit times (after embedding) are printed: everything
(``--probs all``: probe, text classifier, neighbour vote, scores, filters) and the best methods'
configuration alone (``--probs both --no-vote``).

**Tux Paint** (16 top-level categories): weak labels for the held-out split from the text
classifier; the train split is the labelled pool (scale fitted by NLL on it, the 95%-precision
threshold chosen on it): top-1/top-3, ECE before/after fitting, share auto-accepted and its
precision. **Few labels vs zero-shot**, on both datasets: a linear probe and the prototype blend
trained on 1, 5 and 10 labelled examples per class (5 seeds), beside zero-shot.

    python bench/bench_labels.py --fm-model /work/models/demo/model --tux-model /work/models/lit-run60/model
    python bench/bench_labels.py --fm-model demo/model --skip-tuxpaint --fm-rows 10000    # quicker
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tether.curate import embed_dataset, find_label_issues, read_embeddings, read_metadata  # noqa: E402
from tether.curate.audit import audit  # noqa: E402
from tether.curate.calibration import expected_calibration_error, softmax  # noqa: E402
from tether.curate.label_quality import label_quality_scores  # noqa: E402
from tether.curate.noise_posterior import noise_posterior_quality  # noqa: E402
from tether.curate.weak_labels import probe_probs, prototype_blend  # noqa: E402

LOOK_ALIKE = [[0, 2, 4, 6], [5, 7, 9]]      # T-shirt/top, Pullover, Coat, Shirt; Sandal, Sneaker, Ankle boot
SETTINGS = [("uniform", 0.05), ("uniform", 0.20), ("look-alike", 0.05), ("look-alike", 0.20)]
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def embed(model, spec: dict, out: Path) -> tuple[np.ndarray, list]:
    embed_dataset(model, spec, out, modalities=("image",), progress=False, batch_size=256)
    return read_embeddings(out, "image"), read_metadata(out).to_pydict()["label"]


def corrupt(y: np.ndarray, kind: str, rate: float, seed: int) -> np.ndarray:
    """Flip ``rate`` of all labels: to any other class, or to another class of the same look-alike group."""
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    if kind == "uniform":
        flip = rng.random(len(y)) < rate
        noisy[flip] = (y[flip] + rng.integers(1, 10, flip.sum())) % 10
        return noisy
    group_of = {c: g for g in LOOK_ALIKE for c in g}
    eligible = np.isin(y, list(group_of))
    flip = eligible & (rng.random(len(y)) < rate * len(y) / eligible.sum())
    for i in np.flatnonzero(flip):
        noisy[i] = rng.choice([c for c in group_of[int(y[i])] if c != y[i]])
    return noisy


def roc_auc(flipped: np.ndarray, quality: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(flipped, -quality))


def precision_at(flipped: np.ndarray, quality: np.ndarray, k: int) -> float:
    order = np.lexsort((np.arange(len(quality)), quality))
    return float(flipped[order[:k]].mean()) if k else float("nan")


def fashion_mnist(args, model, clf) -> dict:
    from cleanlab.filter import find_label_issues as cleanlab_find

    work = Path(args.work)
    xs, ys = zip(*(embed(model, {"type": "fashion_mnist", "split": s}, work / f"fm-{s}") for s in ("train", "test")))
    x, y = np.concatenate(xs), np.concatenate([np.asarray(v) for v in ys])
    if args.fm_rows:
        keep = np.random.default_rng(0).permutation(len(y))[:args.fm_rows]
        x, y = x[keep], y[keep]
    out = {"rows": int(len(y)), "settings": []}
    for kind, rate in SETTINGS:
        noisy = corrupt(y, kind, rate, seed=1)
        flipped = noisy != y
        k = int(flipped.sum())
        t0 = time.perf_counter()
        a = audit(x, noisy, clf.class_names, probs="all", classifier=clf, neighbours=10, folds=5)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()        # the best methods' audit alone: probe + text classifier, no neighbour vote
        fast = audit(x, noisy, clf.class_names, probs="both", classifier=clf, folds=5, with_vote=False)
        fast_seconds = time.perf_counter() - t0
        probe = 3 * a.pred_probs - a.text_probs - a.vote          # "all" is the mean of the three
        assert np.allclose(fast.pred_probs, (probe + a.text_probs) / 2, atol=1e-9)
        sources = {"probe": probe, "zeroshot": a.text_probs, "both": (probe + a.text_probs) / 2,
                   "neighbours": a.vote, "all": a.pred_probs}
        ranks = {}
        for name, p in sources.items():
            for method in ("self_confidence", "normalized_margin"):
                q = label_quality_scores(noisy, p, method=method)
                ranks[f"{name}/{method}"] = q
            ranks[f"{name}/noise_posterior"] = noise_posterior_quality(noisy, p)
        ranks["text_neighbour"] = a.text_neighbour
        rows = {r: {"precision_at_k": precision_at(flipped, q, k), "roc_auc": roc_auc(flipped, q)}
                for r, q in ranks.items()}
        best = max(rows, key=lambda r: rows[r]["roc_auc"])
        masks = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in sources:
                for f in FILTERS:
                    ours = find_label_issues(noisy, sources[name], filter_by=f)
                    ref = cleanlab_find(noisy, sources[name], filter_by=f)
                    assert np.array_equal(ours, ref), (kind, rate, name, f)
                    m = int(ref.sum())
                    masks[f"{name}/{f}"] = {"flagged": m, "precision": float(flipped[ref].mean()) if m else None,
                                            "recall": float(ref[flipped].mean()),
                                            "tether_best_rank_precision_at_same_budget":
                                                precision_at(flipped, ranks[best], m)}
        setting = {"kind": kind, "rate": rate, "flipped": k, "audit_seconds": round(seconds, 1),
                   "audit_both_seconds": round(fast_seconds, 1), "audit_both_report": fast.report,
                   "probe_acc_vs_noisy": a.report["probe"]["acc1"], "zeroshot_acc_vs_noisy": a.report["zeroshot"]["acc1"],
                   "ranks": rows, "best_rank": best, "cleanlab_masks": masks, "audit_report": a.report}
        out["settings"].append(setting)
        print(json.dumps({k2: v for k2, v in setting.items() if k2 not in ("ranks", "cleanlab_masks")}), flush=True)
        _print_setting(setting)
    out["few_labels"] = few_labels(x, y, clf, test=np.arange(len(y)) >= len(y) - 10000 if not args.fm_rows else None)
    print(markdown(out))
    return out


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def markdown(fm: dict) -> str:
    """BENCHMARKS.md's table: per setting, tether's best rank (by ROC AUC) beside cleanlab's best mask
    (by F1) and the rank's precision/recall/F1 at that mask's budget."""
    lines = ["| labels corrupted | flipped | tether best rank | P@k = R@k | ROC AUC | cleanlab best mask (F1) | "
             "flagged | precision / recall / F1 | tether rank at the same budget: precision / recall / F1 | "
             "audit s: all / both |", "|---|---:|---|---:|---:|---|---:|---|---|---:|"]
    for s in fm["settings"]:
        b = s["ranks"][s["best_rank"]]
        m = s["cleanlab_masks"]
        name = max(m, key=lambda n: _f1(m[n]["precision"] or 0, m[n]["recall"]))
        v = m[name]
        tp = v["tether_best_rank_precision_at_same_budget"]
        tr = tp * v["flagged"] / s["flipped"]
        lines.append(f"| {s['kind']} {s['rate']:.0%} | {s['flipped']} | {s['best_rank']} | {b['precision_at_k']:.3f} | "
                     f"{b['roc_auc']:.4f} | {name} | {v['flagged']} | {v['precision']:.3f} / {v['recall']:.3f} / "
                     f"{_f1(v['precision'], v['recall']):.3f} | {tp:.3f} / {tr:.3f} / {_f1(tp, tr):.3f} | "
                     f"{s['audit_seconds']:.0f} / {s['audit_both_seconds']:.0f} |")
    return "\n".join(lines)


def _print_setting(s: dict) -> None:
    print(f"  {'rank':34s} P@k    AUC")
    for r, v in sorted(s["ranks"].items(), key=lambda kv: -kv[1]["roc_auc"]):
        print(f"  {r:34s} {v['precision_at_k']:.3f}  {v['roc_auc']:.4f}")
    print(f"  {'cleanlab mask':34s} flagged precision recall  tether-best P@same")
    for f, v in s["cleanlab_masks"].items():
        p = "-" if v["precision"] is None else f"{v['precision']:.3f}"
        print(f"  {f:34s} {v['flagged']:7d} {p:>9s} {v['recall']:.3f}   {v['tether_best_rank_precision_at_same_budget']:.3f}")


def few_labels(x: np.ndarray, y: np.ndarray, clf, test: np.ndarray | None = None, pool: np.ndarray | None = None,
               seeds: int = 5) -> dict:
    """Zero-shot vs probe / prototype blend on 1, 5, 10 labelled examples per class (mean over seeds)."""
    if test is None:
        test = np.random.default_rng(0).random(len(y)) < 0.2
    pool = ~test if pool is None else pool
    k = len(clf.class_names)
    zs = float((clf.predict(x[test]).numpy() == y[test]).mean())
    out = {"test_rows": int(test.sum()), "zeroshot_acc1": zs, "shots": {}}
    for n in (1, 5, 10):
        probe_acc, blend_acc = [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            support = np.concatenate([rng.permutation(np.flatnonzero(pool & (y == c)))[:n] for c in range(k)])
            p = probe_probs(x[support], y[support], x[test], k)
            probe_acc.append(float((p.argmax(axis=1) == y[test]).mean()))
            w = prototype_blend(clf.weights, x[support], y[support], 0.5)
            blend_acc.append(float(((x[test] @ w.numpy().T).argmax(axis=1) == y[test]).mean()))
        out["shots"][n] = {"probe_acc1": float(np.mean(probe_acc)), "blend_acc1": float(np.mean(blend_acc))}
    print(json.dumps(out), flush=True)
    return out


def tuxpaint(args, model, clf) -> dict:
    """Weak labels for the held-out split through ``tether label``'s code (``weak_labels``), the train
    split as the labelled set; measured against the held-out split's true categories."""
    from tether.curate.label_job import weak_labels
    from tether.data.tuxpaint import TuxPaintSource

    work = Path(args.work)
    x, labels = embed(model, {"type": "tuxpaint"}, work / "tux")
    meta = read_metadata(work / "tux").to_pydict()
    y = np.asarray(labels)
    val = np.array([s == "validation" for s in meta["split"]])
    assert list(clf.class_names) == TuxPaintSource().class_names
    r = weak_labels(x[val], clf, val_x=x[~val], val_y=y[~val], target_precision=0.95)
    order = np.argsort(-r.probs, axis=1, kind="stable")
    accepted = r.decisions == "accept"
    logits = clf.logits(x[val]).numpy()
    out = {"classes": len(clf.class_names), "pool_rows": int((~val).sum()), "eval_rows": int(val.sum()),
           "acc1": float((order[:, 0] == y[val]).mean()), "acc3": float((order[:, :3] == y[val][:, None]).any(1).mean()),
           "model_scale": r.scale.model_scale, "fitted_scale": r.scale.scale,
           "ece_model_scale": expected_calibration_error(softmax(logits, r.scale.model_scale), y[val]),
           "ece_fitted": expected_calibration_error(r.probs, y[val]),
           "threshold_95": r.report["threshold_rule"]["min_confidence"], "accepted_share": float(accepted.mean()),
           "accepted_precision": float((order[accepted, 0] == y[val][accepted]).mean()) if accepted.any() else None,
           "labelled_set": r.report["validation"], "scale_fit_on_labelled_set": r.report["scale"]}
    print(json.dumps(out), flush=True)
    out["few_labels"] = few_labels(x, y, clf, test=val, pool=~val)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fm-model", default="/work/models/demo/model")
    ap.add_argument("--tux-model", default="/work/models/lit-run60/model")
    ap.add_argument("--work", default="runs/bench-labels", help="embedding folders (reused when rerun)")
    ap.add_argument("--fm-rows", type=int, default=0, help="a random subset of the 70k (0: all)")
    ap.add_argument("--skip-fashion-mnist", action="store_true")
    ap.add_argument("--skip-tuxpaint", action="store_true")
    ap.add_argument("--out", default="bench/results/labels.json")
    args = ap.parse_args()
    from tether.checkpoints import resolve_model
    from tether.curate.label_data import build_text_classifier
    from tether.data.fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist_captions
    from tether.data.tuxpaint import TuxPaintSource

    result = {}
    if not args.skip_fashion_mnist:
        model = resolve_model(args.fm_model)
        names = list(FASHION_MNIST_CLASSES)
        prompts = dict(zip(names, fashion_mnist_captions("heldout")))
        result["fashion_mnist"] = fashion_mnist(args, model, build_text_classifier(model, names, prompts))
    if not args.skip_tuxpaint:
        model = resolve_model(args.tux_model)
        clf = build_text_classifier(model, TuxPaintSource().class_names, {}, "clipart")
        result["tuxpaint"] = tuxpaint(args, model, clf)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
