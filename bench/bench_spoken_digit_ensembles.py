"""Ensembles of spoken-digit models: how much of the run-to-run spread an average removes.

Evaluation only. Each model (a ``bind/model`` folder that ``bench_spoken_digits.py`` wrote; all
bound to the same anchor, so they share its text tower) embeds Tux Paint's 240 real recordings
once; every subset of two or more models is then scored by the mean of its members' normalised
embeddings through the anchor's text classifier ("the number {}."). Chance is 10%.

    PYTHONPATH=src python bench/bench_spoken_digit_ensembles.py RUN/bind/model RUN2/bind/model ... \\
        [--json OUT.json] [--save DIR]

``--save DIR`` writes the ensemble of all the models as one checkpoint (``tether.models.ensemble``:
one audio tower of ``kind: "ensemble"``) and scores it again through the ordinary embedding path,
as ``tether embed`` and the zero-shot classifier would use it.

Prints each model alone, the best subset of each size and the ensemble of all. A best subset is
chosen after seeing the test recordings: read it as an upper bound, the full ensemble as the
honest figure.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="bound model folders (two or more)")
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--save", help="write the ensemble of all the models here as one checkpoint, and score it")
    args = p.parse_args()
    if len(args.models) < 2:
        p.error("give two or more model folders")
    import torch

    import tether
    from tether.data.spoken_digits import tuxpaint_spoken_digits, spoken_digit_source
    from tether.embedding import embed
    from tether.metrics.zeroshot import ZeroShotClassifier

    items = tuxpaint_spoken_digits()
    labels = torch.tensor([d.label for d in items])
    vectors, classifier = {}, None
    for folder in args.models:
        model = tether.load(folder)
        result = embed(model, "audio", spoken_digit_source(items), batch_size=128)
        assert len(result) == len(items), result.skips.summary("audio")
        vectors[folder] = torch.nn.functional.normalize(torch.as_tensor(result.vectors), dim=-1)
        classifier = classifier or ZeroShotClassifier.build(model, [str(i) for i in range(10)], ["the number {}."])

    def accuracy(members) -> float:
        mean = sum(vectors[m] for m in members)
        return float((classifier.predict(mean) == labels).float().mean())

    results = {"chance": 0.1, "n": len(items), "single": {m: accuracy([m]) for m in args.models}, "best_subset": {}}
    for size in range(2, len(args.models) + 1):
        best = max(itertools.combinations(args.models, size), key=accuracy)
        results["best_subset"][size] = {"models": list(best), "acc1": accuracy(best)}
    results["all"] = accuracy(args.models)
    if args.save:
        from tether.models.ensemble import ensemble
        saved = tether.save(ensemble([tether.load(m) for m in args.models], "audio"), args.save)
        one = tether.load(saved)
        predicted = classifier.predict(torch.as_tensor(embed(one, "audio", spoken_digit_source(items)).vectors))
        results["saved"] = {"path": str(saved), "acc1": float((predicted == labels).float().mean())}
    for m, acc in results["single"].items():
        print(f"{acc:.4f}  {m}")
    for size, best in results["best_subset"].items():
        print(f"{best['acc1']:.4f}  best subset of {size}: {', '.join(best['models'])}")
    print(f"{results['all']:.4f}  all {len(args.models)} models")
    if args.save:
        print(f"{results['saved']['acc1']:.4f}  the same ensemble saved as one checkpoint, {results['saved']['path']}")
    if args.json:
        from tether.io import atomic_write_json
        atomic_write_json(Path(args.json), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
