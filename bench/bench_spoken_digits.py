"""Spoken digits, emergent zero-shot: an audio tower bound ONLY to digit images, classified through
the text classifier of an image-text anchor, on Tux Paint's real recordings (issue 16, item 4).

One command, seeded, three steps, each through tether's own APIs:

1. anchor: a tiny CLIP (``tiny-vit-28``) trained by tether on scikit-learn's handwritten digits
   (train split) with captions such as "the number 7."; its zero-shot accuracy on the held-out
   test images is measured first (a weak anchor caps everything after it);
2. bind: the audio tower learns to land where the anchor's frozen image tower puts a handwritten
   image of the same digit: by default ``tether distill``'s cosine loss against the image tower
   (``--loss clip``: ``tether bind``'s symmetric InfoNCE; both built by ``tether.bind.bind_config``
   and run by the trainer), on espeak-ng speech (many voices, two speeds, two pitches, each digit's
   other readings), Festival/Flite voices (``--festival-repeat``) and Asterisk's 84 real
   telephone-prompt recordings (8 voices; ``--asterisk-repeat``), augmented per sample (speed,
   equaliser/low-pass, reverb, noise, gain, formant warp, time and band masks). No audio-text
   pair, no label through the text tower; languages in ``--held-out`` are never synthesised;
3. evaluate: Tux Paint's 240 real recordings (22 languages; no training step saw them) embedded
   by the bound model and classified by the anchor's text classifier ("the number 7.");
   top-1 overall, per language, the held-out languages apart. Chance is 10%.

    PYTHONPATH=src python bench/bench_spoken_digits.py --out bench/results/spoken_digits

``--real-folds K`` runs K binds instead, each also trained on Tux Paint's recordings of the
languages outside its fold (never the held-out ones) and tested on its fold: language-level
cross-validation, every recording still tested by a model that never heard it or its language
from Tux Paint. ``--augment`` sets WaveAugment over its defaults (JSON).

Synthesis is cached in --cache (a rerun reuses it); the anchor in OUT/anchor (reused when there).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ANCHOR_TEMPLATES = ["a photo of the number {}.", "the number {}.", "a handwritten {}.", "the digit {}.",
                    "a drawing of a {}."]
EVAL_TEMPLATES = ["the number {}."]
VOICES = ("m1", "f1", "m3", "f3", "klatt2", "m7", "f4", "grandpa", "m2", "f2", "steph", "m4", "f5", "grandma",
          "m6", "Andy")
HELD_OUT = ("nl", "sv", "sl")  # never synthesised; each has a relative in training (de, nb, ru/bg/be)
# the audio tower: 8 kHz (every recording band-limited alike), 32 mel bins, 1 s clips of the trimmed,
# loudness-normalised word; a small CNN over the 32 x 96 spectrogram (a patch transformer learns far
# more slowly from this little data)
# formant warps and SpecAugment-style masks on top of WaveAugment's defaults (speed, equaliser, reverb, noise)
AUGMENT = {"p_warp": 0.5, "p_time_mask": 0.3, "p_band_stop": 0.3}
TOWER = {"kind": "cnn", "input_size": [32, 96], "width": 256, "layers": 5,
         "processor": {"sample_rate": 8000, "clip_duration": 1.0, "clips": 1, "trim_db": 40.0,
                       "loudness_dbfs": -20.0, "mean": -5.5, "std": 3.7}}


def train_anchor(out: Path, steps: int, seed: int) -> Path:
    from tether.train.config import OptimConfig, TrainConfig
    from tether.train.run import train
    if (out / "model" / "config.json").is_file():
        return out / "model"
    cfg = TrainConfig(model="tiny-vit-28", loss="clip", steps=steps, batch_size=128, seed=seed,
                      optim=OptimConfig(lr=1e-3, weight_decay=0.1, warmup_steps=steps // 10),
                      train_data={"type": "digits", "split": "train", "templates": ANCHOR_TEMPLATES},
                      workers=0, out_dir=str(out), checkpoint_every=steps, log_every=50, tensorboard=False,
                      tokenizer={"train_vocab_size": 600})
    train(cfg, progress=False)
    return out / "model"


def anchor_accuracy(model) -> float:
    from tether.data import build_source
    from tether.embedding import embed
    from tether.metrics.zeroshot import ZeroShotClassifier
    test = build_source({"type": "digits", "split": "test"})
    result = embed(model, "image", test, batch_size=512)
    classifier = ZeroShotClassifier.build(model, [str(i) for i in range(10)], EVAL_TEMPLATES)
    return float(classifier.evaluate(result.vectors, [s.label for s in result.samples])["acc1"])


def audio_predictions(model, items) -> list[bool]:
    """Whether the text classifier names each recording's digit."""
    from tether.data.spoken_digits import spoken_digit_source
    from tether.embedding import embed
    from tether.metrics.zeroshot import ZeroShotClassifier
    result = embed(model, "audio", spoken_digit_source(items), batch_size=128)
    assert len(result) == len(items), result.skips.summary("audio")
    classifier = ZeroShotClassifier.build(model, [str(i) for i in range(10)], EVAL_TEMPLATES)
    predicted = classifier.predict(result.vectors)
    return [int(p) == s.label for p, s in zip(predicted.tolist(), result.samples)]


def summarise(items, correct, held_out) -> dict:
    per = defaultdict(lambda: [0, 0])
    for d, ok in zip(items, correct):
        per[d.language][0] += int(ok)
        per[d.language][1] += 1
    seen = [ok for d, ok in zip(items, correct) if d.language not in held_out]
    held = [ok for d, ok in zip(items, correct) if d.language in held_out]
    return {"acc1_all": sum(correct) / len(correct), "n_all": len(correct),
            "acc1_trained_languages": sum(seen) / max(1, len(seen)), "n_trained_languages": len(seen),
            "acc1_held_out_languages": sum(held) / max(1, len(held)) if held else None, "n_held_out": len(held),
            "per_language": {k: {"acc1": c / n, "n": n} for k, (c, n) in sorted(per.items())}}


def language_folds(languages: list[str], k: int) -> list[list[str] | None]:
    """``k`` folds of the evaluation languages, every k-th group in sorted order; variants of one
    language (en / en_GB, nb / nn: perhaps one speaker) share a fold. [None]: one run, no real Tux
    Paint recording in training."""
    if k <= 1:
        return [None]
    groups: dict[str, list[str]] = defaultdict(list)
    for lang in sorted(languages):
        groups[{"nn": "nb"}.get(lang, lang.split("_")[0])].append(lang)
    ordered = [groups[key] for key in sorted(groups)]
    return [[lang for group in ordered[i::k] for lang in group] for i in range(k)]


def bind_audio(args, anchor_dir: Path, path: list, languages: list[str], run_dir: Path):
    """``tether bind`` an audio tower to the anchor's image tower on the recordings in ``path``."""
    import tether
    from tether.bind import bind_config
    from tether.train.run import train
    shutil.rmtree(run_dir, ignore_errors=True)
    spec = {"type": "spoken_digit_images", "path": path, "languages": languages, "sample_rate": 8000,
            "preload": True, "augment": False if args.no_augment else (json.loads(args.augment) or True)}
    cfg = bind_config(str(anchor_dir), "audio", spec, tower=json.loads(args.tower), loss=args.loss, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, out_dir=str(run_dir), workers=args.workers,
                      seed=args.seed, log_every=50, checkpoint_every=args.steps, tensorboard=False)
    train(cfg, progress=False)
    return tether.load(run_dir / "model")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/results/spoken_digits")
    p.add_argument("--cache", default="bench/results/espeak_digits_voices")
    p.add_argument("--anchor-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--loss", default="cosine", choices=["clip", "cosine", "l2", "kl"],
                   help="clip: contrastive binding (InfoNCE, tether bind); cosine / l2 / kl: distillation from the "
                        "image tower (tether distill)")
    p.add_argument("--no-readings", action="store_true",
                   help="speak only the numerals, not the other readings of tether.data.spoken_digits.DIGIT_READINGS")
    p.add_argument("--held-out", default=",".join(HELD_OUT), help="languages never synthesised (comma-separated)")
    p.add_argument("--asterisk-repeat", type=int, default=16,
                   help="add Asterisk's real recordings (en, es, fr, it, ru; 0: none), each this many times per epoch")
    p.add_argument("--festival-repeat", type=int, default=16,
                   help="add Festival/Flite voices (en, it, ca; 0: none), each recording this many times per epoch")
    p.add_argument("--festival-cache", default="bench/results/festival_digits")
    p.add_argument("--augment", default=json.dumps(AUGMENT), help="WaveAugment settings (JSON) over its defaults")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--real-folds", type=int, default=0,
                   help="k > 1: k runs, each trained also on Tux Paint's real recordings of the languages outside "
                        "its fold (held-out languages never) and tested on its fold's languages")
    p.add_argument("--real-repeat", type=int, default=8, help="repeats of each Tux Paint recording in a fold run")
    p.add_argument("--tower", default=json.dumps(TOWER), help="the audio tower's config (JSON)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def training_recordings(args) -> list:
    """The spec's ``path``: the espeak-ng cache, plus Asterisk's and Festival's voices when asked."""
    from tether.data.festival_digits import festival_digits
    path: list = [args.cache]
    if args.asterisk_repeat:
        path.append({"path": "asterisk", "repeat": args.asterisk_repeat})
    if args.festival_repeat:
        festival_digits(args.festival_cache)
        path.append({"path": args.festival_cache, "repeat": args.festival_repeat})
    return path


def run_folds(args, anchor_dir: Path, languages: list[str], held_out: tuple[str, ...], results: dict):
    """One bind run (or one per language fold), each tested on the Tux Paint recordings it never
    trained on; -> the last bound model. Fills ``results["folds"]`` and ``results["tuxpaint"]``."""
    from tether.data.spoken_digits import tuxpaint_spoken_digits
    real = tuxpaint_spoken_digits()
    correct: dict[Path, bool] = {}
    results["folds"] = []
    for k, fold in enumerate(language_folds(sorted({d.language for d in real}), args.real_folds)):
        t0 = time.perf_counter()
        path = training_recordings(args)
        if fold is not None:  # Tux Paint's real recordings of the other folds' languages (never held-out ones)
            path.append({"path": "tuxpaint", "repeat": args.real_repeat, "exclude_languages": [*fold, *held_out]})
        bound = bind_audio(args, anchor_dir, path, languages, Path(args.out) / (f"bind-fold{k}" if fold else "bind"))
        tested = [d for d in real if fold is None or d.language in fold]
        correct.update(zip((d.path for d in tested), audio_predictions(bound, tested)))
        results["folds"].append({"test_languages": fold, "bind_seconds": round(time.perf_counter() - t0, 1)})
        print(f"fold {k}: {results['folds'][-1]}", flush=True)
    results["tuxpaint"] = summarise(real, [correct[d.path] for d in real], held_out)
    return bound


def main() -> int:
    args = parse_args()
    import torch

    import tether
    from tether.data.spoken_digits import TUXPAINT_VOICES, espeak_digits
    from tether.io import atomic_write_json

    torch.manual_seed(args.seed)
    out, started = Path(args.out), time.perf_counter()
    held_out = tuple(x for x in args.held_out.split(",") if x)
    anchor_dir = train_anchor(out / "anchor", args.anchor_steps, args.seed)
    results = {"chance": 0.1, "anchor_zeroshot_acc1_digit_images": anchor_accuracy(tether.load(anchor_dir)),
               "anchor_seconds": round(time.perf_counter() - started, 1), "settings": vars(args)}
    print(f"anchor: zero-shot on held-out digit images {results['anchor_zeroshot_acc1_digit_images']:.4f}", flush=True)

    t0 = time.perf_counter()
    languages = [lang for lang in TUXPAINT_VOICES if lang not in held_out]
    synthetic = espeak_digits(args.cache, languages, VOICES, speeds=(120, 170), pitches=(30, 70),
                              readings={} if args.no_readings else None)
    results.update(train_files=len(synthetic), train_languages=languages, held_out_languages=list(held_out),
                   synth_seconds=round(time.perf_counter() - t0, 1))
    print(f"{len(synthetic)} synthetic recordings ({results['synth_seconds']} s)", flush=True)

    bound = run_folds(args, anchor_dir, languages, held_out, results)
    fit = synthetic[::max(1, len(synthetic) // 1000)]
    results["synthetic_fit_acc1"] = sum(audio_predictions(bound, fit)) / len(fit)
    results["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "results.json", results)
    print(json.dumps({k: v for k, v in results.items() if k != "tuxpaint"}, indent=1))
    print(json.dumps({k: v for k, v in results["tuxpaint"].items() if k != "per_language"}, indent=1))
    for lang, r in results["tuxpaint"]["per_language"].items():
        print(f"  {lang:6s} {r['acc1']:.2f} (n={r['n']}){'  held out' if lang in held_out else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
