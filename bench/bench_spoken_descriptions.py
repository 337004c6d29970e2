"""Spoken stamp descriptions bound to the stamp images: audio -> image and emergent audio -> English caption.

Tux Paint's recordings of stamp descriptions (``NAME_desc_<lang>.ogg``; 6,178 of them in 12
languages for 767 of the 785 stamps with a raster image, source ``tuxpaint_speech``) are paired with
their stamp's image. An audio tower is bound with ``tether bind`` to the **frozen image tower**
of the LiT model (``--model``: /work/models/lit-run60/model, EfficientNet-Lite0 locked, MiniLM
text tower trained on the stamps' English captions). Training never sees a caption or any
audio-text pair; audio -> caption retrieval goes through the image tower's alignment with text.

Two runs, one per split, each from the same seed:

* ``language``: every recording in ``--held-out-language`` (default ``es``: a Romance language
  with Catalan, French and Romanian in training, chosen before any run) is left out of training;
  training has every other language's recordings of every stamp. Evaluated on all recordings of
  the held-out language; candidates are the distinct stamps they describe.
* ``stamps``: the stamps of the ``validation`` split (SHA-1 of the stamp path, the split the LiT
  model was trained with, so they are held out from the LiT model too) are left out of training
  in every language. Evaluated on all their recordings, in every language; candidates are
  those stamps.

Recall@K (K = 1, 5, 10): a hit when the recording's own stamp image (audio -> image) or its
stamp's English caption (audio -> caption) is among the K nearest candidates. Caption
candidates are the distinct caption strings of the candidate stamps (a few stamps share one, e.g.
"A daffodil."), so an identical caption counts as the right one. Chance = K / candidates, given
beside each figure. The LiT model's own image -> caption recall on the same stamps (same
candidates) is the ceiling of the emergent path; the untrained audio tower (the run's start,
same seed) is the floor. Audio is decoded and turned into a filterbank once per run
(``row_cache_mib``); the locked image tower's features come from the feature cache.

    OMP_NUM_THREADS=1 nice -n 5 python bench/bench_spoken_descriptions.py
    # -> bench/results/spoken_descriptions.json; one split alone: --splits stamps --json OTHER.json
    #    (never the same split twice at once: each run starts by clearing its folder OUT_DIR/SPLIT)
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

KS = (1, 5, 10)
#: the audio tower: ImageBind's audio layout (128 mel bins x 204 frames, patch 16), small: width 96, 2 blocks,
#: patches without overlap (96 instead of 228; 2.4x fewer tokens for a CPU), one 2 s clip per recording
#: (they last 1.4 s on average: ImageBind's 3 clips would be 3 copies of the same one)
TOWER = {"kind": "vit", "width": 96, "layers": 2, "heads": 3, "patch_stride": 16, "drop_path": 0.1,
         "processor": {"clips": 1}}


def split_specs(split: str, language: str) -> tuple[dict, dict]:
    """(train, evaluation) ``tuxpaint_speech`` specs of a split."""
    if split == "language":
        return ({"type": "tuxpaint_speech", "exclude_languages": [language]},
                {"type": "tuxpaint_speech", "languages": [language]})
    return {"type": "tuxpaint_speech", "split": "train"}, {"type": "tuxpaint_speech", "split": "validation"}


def recall(queries, candidates, target) -> dict[str, float]:
    """Recall@K of queries against candidates (``target[i]``: the row of query i's right candidate)."""
    from tether.metrics.retrieval import retrieval_recall
    out = retrieval_recall(candidates, queries, target, ks=KS, images_without_captions="exclude")
    return {f"R@{k}": round(100 * float(out[f"image_retrieval_recall@{k}"]), 1) for k in KS} | \
        {"median_rank": float(out["image_retrieval_median_rank"])}


def chance(n: int) -> dict[str, float]:
    return {f"R@{k}": round(100 * min(k / n, 1.0), 1) for k in KS} | {"median_rank": (n + 1) / 2}


class Candidates:
    """The distinct stamps of an evaluation source: their images and distinct English captions."""

    def __init__(self, model, source) -> None:
        import numpy as np
        stamps = sorted({index for index, _, _ in source.items})
        self.row = {index: row for row, index in enumerate(stamps)}
        captions = [source.stamps.stamps[i].caption for i in stamps]
        self.captions = sorted(set(captions))
        self.caption_of_stamp = np.array([self.captions.index(c) for c in captions])
        self.images = model.embed("image", [source.stamps.sample(i).image for i in stamps])
        self.texts = model.embed("text", self.captions)

    def ceiling(self) -> dict[str, float]:
        """The LiT model's image -> caption recall over the same candidates."""
        return recall(self.images, self.texts, self.caption_of_stamp)


def evaluate(model, source, candidates: Candidates) -> dict:
    """Audio -> image and audio -> caption recall, overall and per language (every recording must decode)."""
    import numpy as np
    vectors = np.asarray(model.embed("audio", [str(path) for _, _, path in source.items]))
    stamp_rows = np.array([candidates.row[index] for index, _, _ in source.items])
    languages = np.array([language for _, language, _ in source.items])
    out: dict = {}
    for language in [None, *sorted(set(languages))]:
        keep = np.ones(len(languages), bool) if language is None else languages == language
        out["all" if language is None else language] = {
            "recordings": int(keep.sum()),
            "audio_to_image": recall(vectors[keep], candidates.images, stamp_rows[keep]),
            "audio_to_caption": recall(vectors[keep], candidates.texts, candidates.caption_of_stamp[stamp_rows[keep]])}
    return out


def overrides(args) -> list[str]:
    """The training keys beyond bind's options (``--set``): decode every file once, in this process."""
    return [f"seed={args.seed}", "workers=0", "row_cache_mib=4096", f"optim.weight_decay={args.weight_decay}"]


def command(split: str, args, tower: dict) -> str:
    """The ``tether bind`` command line that trains the same run."""
    train_spec = split_specs(split, args.held_out_language)[0]
    sets = " ".join(f"--set {item}" for item in overrides(args))
    return (f"tether bind --model {args.model} --modality audio --tower '{json.dumps(tower)}' "
            f"--data '{json.dumps(train_spec)}' --steps {args.steps} --batch-size {args.batch_size} "
            f"--lr {args.lr:g} {sets} --out {Path(args.out_dir) / split}")


def last_losses(log: Path, n: int = 4) -> list[float]:
    """The training loss at the last ``n`` logged steps (one batch each: noisy)."""
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return [round(r["loss"], 3) for r in rows if r.get("kind") == "train"][-n:]


def run_split(split: str, args, tower: dict) -> dict:
    import torch

    import tether
    from tether.bind import bind_config
    from tether.data import build_source
    from tether.models.extend import add_tower
    from tether.train.run import train

    train_spec, eval_spec = split_specs(split, args.held_out_language)
    train_source, eval_source = build_source(train_spec), build_source(eval_spec)
    anchor = tether.load(args.model)
    candidates = Candidates(anchor, eval_source)
    torch.manual_seed(args.seed)  # train() seeds the same way: this untrained tower is the run's start
    untrained = tether.load(args.model)
    add_tower(untrained, "audio", json.loads(json.dumps(tower)))
    run_dir = Path(args.out_dir) / split
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = bind_config(args.model, "audio", train_spec, anchor="image", tower=tower, out_dir=str(run_dir),
                      steps=args.steps, batch_size=args.batch_size, lr=args.lr, overrides=overrides(args),
                      log_every=50, checkpoint_every=args.steps, tensorboard=False)
    started = time.perf_counter()
    final = train(cfg, progress=False)
    train_s = time.perf_counter() - started
    bound = tether.load(run_dir / "model")
    n_images, n_captions = len(candidates.images), len(candidates.captions)
    held_out = (f"language {args.held_out_language}" if split == "language" else "validation stamps")
    return {
        "split": split, "held_out": held_out, "command": command(split, args, tower),
        "train_spec": train_spec, "eval_spec": eval_spec,
        "train_recordings": len(train_source), "train_languages": dict(sorted(train_source.language_counts.items())),
        "train_stamps": len({i for i, _, _ in train_source.items}),
        "eval_recordings": len(eval_source), "eval_languages": dict(sorted(eval_source.language_counts.items())),
        "image_candidates": n_images, "caption_candidates": n_captions,
        "chance": {"audio_to_image": chance(n_images), "audio_to_caption": chance(n_captions)},
        "bound": evaluate(bound, eval_source, candidates),
        "untrained": evaluate(untrained, eval_source, candidates)["all"],
        "lit_image_to_caption_ceiling": candidates.ceiling(),
        "last_train_losses": last_losses(run_dir / "log.jsonl"),
        "locked_feature_cache": final.get("locked_feature_cache"),
        "train_seconds_shared_machine": round(train_s, 1),
    }


def summary(r: dict) -> str:
    """The table rows of a split: recall (%) with its chance level."""
    lines = [f"{r['split']}: held out {r['held_out']}, {r['eval_recordings']} recordings, "
             f"{r['image_candidates']} images / {r['caption_candidates']} captions as candidates"]
    rows = [("audio -> image", r["bound"]["all"]["audio_to_image"], r["untrained"]["audio_to_image"],
             r["chance"]["audio_to_image"]),
            ("audio -> caption", r["bound"]["all"]["audio_to_caption"], r["untrained"]["audio_to_caption"],
             r["chance"]["audio_to_caption"]),
            ("LiT image -> caption", r["lit_image_to_caption_ceiling"], None, r["chance"]["audio_to_caption"])]
    for name, got, before, base in rows:
        cells = " ".join(f"R@{k} {got[f'R@{k}']:5.1f} (chance {base[f'R@{k}']:.1f}"
                         + (f", untrained {before[f'R@{k}']:.1f})" if before else ")") for k in KS)
        lines.append(f"  {name:22s} {cells}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="/work/models/lit-run60/model", help="the LiT model whose image tower anchors")
    p.add_argument("--held-out-language", default="es")
    p.add_argument("--splits", default="language,stamps")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tower", default=json.dumps(TOWER), help="the audio tower's config (JSON)")
    p.add_argument("--out-dir", default="bench/results/spoken_descriptions")
    p.add_argument("--json", default="bench/results/spoken_descriptions.json")
    args = p.parse_args()
    from tether.io import atomic_write_json
    tower = json.loads(args.tower)
    results = {"settings": vars(args) | {"tower": tower}, "splits": {}}
    for split in args.splits.split(","):
        results["splits"][split] = run_split(split, args, tower)
        atomic_write_json(args.json, results)
        print(summary(results["splits"][split]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
