"""CIDEr-D: tether.metrics.cider_d vs pycocoevalcap's Cider on the same corpus.

A seeded synthetic corpus of captions with realistic lengths (1-25 tokens, mostly 8-12) and
COCO-like phrasing, already tokenised (lower case, space separated), is scored by both in
the same process; the script prints both times (median of alternating runs), the ratio and the
largest per-image difference, and fails if any per-image score differs by more than 1e-9.

    python bench/bench_cider.py --items 5000 --refs 5 --repeats 3

Needs pycocoevalcap (pip install pycocoevalcap); its Cider scorer is pure Python.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

SUBJECTS = ["man", "woman", "person", "boy", "girl", "child", "group of people", "couple", "dog", "cat",
            "horse", "giraffe", "elephant", "zebra", "bird", "bear", "cow", "sheep", "player", "skier",
            "surfer", "skateboarder", "train", "bus", "truck", "plane", "motorcycle", "bicycle", "boat"]
ADJECTIVES = ["", "", "young", "old", "small", "large", "little", "big", "white", "black", "red", "blue",
              "green", "yellow", "brown", "tall", "happy", "wooden", "colorful"]
VERBS = ["sitting on", "standing next to", "riding", "holding", "walking down", "looking at", "playing with",
         "laying on", "flying over", "parked in", "eating", "carrying", "jumping over", "standing in",
         "driving down", "waiting at", "crossing", "leaning against", "swimming in", "grazing in"]
OBJECTS = ["street", "table", "beach", "field", "bench", "kitchen", "road", "wave", "snow", "grass", "water",
           "sidewalk", "pizza", "plate of food", "frisbee", "kite", "surfboard", "skateboard", "tennis racket",
           "umbrella", "building", "park", "fence", "train station", "counter", "bed", "couch", "window"]
TAILS = ["", "", "", "on a sunny day", "in the background", "next to a building", "at night",
         "with trees in the background", "in front of a crowd", "on top of a hill", "near the water",
         "while another person watches", "in the middle of the city"]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def make_caption(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.04:  # very short captions
        return " ".join(rng.choice(SUBJECTS).split()[:rng.randint(1, 2)])
    adj = rng.choice(ADJECTIVES)
    subj = rng.choice(SUBJECTS)
    np_subj = f"{adj} {subj}".strip()
    obj = rng.choice(OBJECTS)
    oadj = rng.choice(ADJECTIVES)
    np_obj = f"{oadj} {obj}".strip()
    words = f"{article(np_subj)} {np_subj} {rng.choice(VERBS)} {rng.choice(['a', 'the', article(np_obj)])} {np_obj}"
    tail = rng.choice(TAILS)
    if tail:
        words += " " + tail
    if rng.random() < 0.1:
        words += f" and {rng.choice(VERBS)} the {rng.choice(OBJECTS)}"
    return " ".join(words.split()[:25])


def make_corpus(items: int, refs: int, seed: int = 0):
    rng = random.Random(seed)
    references = {f"img{i:06d}": [make_caption(rng) for _ in range(refs)] for i in range(items)}
    # candidates: half a perturbed reference, half a fresh caption
    candidates = {}
    for k, rs in references.items():
        if rng.random() < 0.5:
            w = rng.choice(rs).split()
            if len(w) > 3 and rng.random() < 0.5:
                del w[rng.randrange(len(w))]
            candidates[k] = " ".join(w)
        else:
            candidates[k] = make_caption(rng)
    return candidates, references


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--refs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from pycocoevalcap.cider.cider import Cider

    from tether.metrics import cider_d

    cands, refs = make_corpus(args.items, args.refs, args.seed)
    res = {k: [v] for k, v in cands.items()}
    lens = [len(c.split()) for rs in refs.values() for c in rs]
    print(f"corpus: {args.items} images x {args.refs} references, caption length "
          f"min {min(lens)} / median {int(np.median(lens))} / max {max(lens)} tokens")

    t_ref, t_tether, c_ref, c_tether = [], [], [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        ref_score, ref_scores = Cider().compute_score(refs, res)
        t_ref.append(time.perf_counter() - t0)
        c_ref.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        score, scores = cider_d(cands, refs, tokenize=False)
        t_tether.append(time.perf_counter() - t0)
        c_tether.append(time.process_time() - c0)

    # pycocoevalcap orders per-item scores by the keys of its gts dict; same order here
    diff = float(np.max(np.abs(np.asarray(ref_scores) - scores)))
    a, b = statistics.median(t_ref), statistics.median(t_tether)
    ca, cb = statistics.median(c_ref), statistics.median(c_tether)
    print(f"pycocoevalcap Cider: {a:.3f} s wall, {ca:.3f} s CPU   corpus CIDEr-D {ref_score:.12f}")
    print(f"tether cider_d:      {b:.3f} s wall, {cb:.3f} s CPU   corpus CIDEr-D {score:.12f}")
    print(f"speed-up: {a / b:.1f}x wall, {ca / cb:.1f}x CPU   max |per-item difference|: {diff:.2e}   "
          f"|corpus difference|: {abs(ref_score - score):.2e}")
    if diff > 1e-9 or abs(ref_score - score) > 1e-9:
        raise SystemExit("scores differ by more than 1e-9")


if __name__ == "__main__":
    main()
