"""How long ``audit()`` takes on Fashion-MNIST's 70,000 embeddings after embedding (issue 14's minute goal).

Embeds train + test once with ``--model`` (reusing ``--work``, as bench_labels.py does), corrupts 5%
of the labels between look-alike classes (seed 1), then times one ``audit()`` per configuration:
the best methods' (``--probs both --no-vote --rank noise_posterior``), everything (``--probs all``),
and ``tether audit``'s default (``--probs probe``, the vote for the text + neighbour column).

    python bench/bench_audit_time.py --model /work/models/demo/model --work runs/bench-labels
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_labels import corrupt, embed  # noqa: E402

CONFIGS = ({"probs": "both", "with_vote": False, "rank": "noise_posterior"}, {"probs": "all"}, {"probs": "probe"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/work/models/demo/model")
    ap.add_argument("--work", default="runs/bench-labels", help="embedding folders (reused when rerun)")
    args = ap.parse_args()
    from tether.checkpoints import resolve_model
    from tether.curate.audit import audit
    from tether.curate.label_data import build_text_classifier
    from tether.data.fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist_captions

    model = resolve_model(args.model)
    names = list(FASHION_MNIST_CLASSES)
    clf = build_text_classifier(model, names, dict(zip(names, fashion_mnist_captions("heldout"))))
    xs, ys = zip(*(embed(model, {"type": "fashion_mnist", "split": s}, Path(args.work) / f"fm-{s}") for s in ("train", "test")))
    x, y = np.concatenate(xs), np.concatenate([np.asarray(v) for v in ys])
    noisy = corrupt(y, "look-alike", 0.05, seed=1)
    for config in CONFIGS:
        t = time.perf_counter()
        a = audit(x, noisy, names, classifier=clf, neighbours=10, folds=5, **config)
        print(json.dumps({"rows": len(y), "config": config, "seconds": round(time.perf_counter() - t, 1),
                          "stages": a.report["seconds"]}), flush=True)


if __name__ == "__main__":
    main()
