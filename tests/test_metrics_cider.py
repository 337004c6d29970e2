"""CIDEr-D / CIDEr against pycocoevalcap and the paper's formula; the Java-free PTB tokenizer;
caption-by-retrieval."""
from __future__ import annotations

import math
import random
import shutil
import warnings
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("pycocoevalcap")
from pycocoevalcap.cider.cider import Cider  # noqa: E402

from tether.metrics import caption_by_retrieval, cider, cider_d  # noqa: E402
from tether.metrics.captioning import CiderWarning  # noqa: E402
from tether.metrics.text_tokenize import ptb_tokenize, ptb_tokenize_many  # noqa: E402

# ------------------------------------------------------------------------------ corpora
_SUBJ = ["man", "woman", "dog", "cat", "group of people", "little girl", "young boy", "giraffe", "bus",
         "train", "plate of food", "surfer", "baseball player", "elephant", "pizza", "kitchen"]
_ADJ = ["", "", "", "red", "white", "large", "small", "brown", "old", "wooden", "colorful"]
_VERB = ["sitting on", "standing next to", "riding", "holding", "walking down", "looking at", "on top of",
         "parked in", "flying over", "playing with", "covered in", "laying on"]
_OBJ = ["a table", "the street", "a wave", "a bench", "the beach", "a field", "a surfboard", "a kite",
        "the snow", "a tennis racket", "a plate", "the grass", "a building", "a couch"]
_TAIL = ["", "", "", "in the background", "on a sunny day", "next to a tree", "near the water",
         "with a clock on it", "at night", "in front of a building"]


def _caption(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.05:
        return rng.choice(["dog", "a cat", "pizza", "a man", "train", "two dogs"])  # very short
    if r < 0.07:
        return " ".join(rng.choice(_SUBJ).split() * rng.randint(1, 3))  # repeated n-grams
    words = f"a {rng.choice(_ADJ)} {rng.choice(_SUBJ)} {rng.choice(_VERB)} {rng.choice(_OBJ)} {rng.choice(_TAIL)}"
    if rng.random() < 0.15:
        words += f" and {rng.choice(_VERB)} {rng.choice(_OBJ)} {rng.choice(_TAIL)}"
    return " ".join(words.split())


def _corpus(items: int, seed: int, min_refs: int = 3, max_refs: int = 5):
    rng = random.Random(seed)
    refs = {f"im{i}": [_caption(rng) for _ in range(rng.randint(min_refs, max_refs))] for i in range(items)}
    cands = {}
    for k, rs in refs.items():
        u = rng.random()
        if u < 0.3:
            cands[k] = rng.choice(rs)  # copies a reference
        elif u < 0.6:
            w = rng.choice(rs).split()
            w.insert(rng.randrange(len(w) + 1), rng.choice(["big", "the", "a", "dog"]))
            cands[k] = " ".join(w)
        else:
            cands[k] = _caption(rng)
    return cands, refs


def _coco(cands, refs, **kw):
    score, scores = Cider(**kw).compute_score(refs, {k: [v] for k, v in cands.items()})
    return score, dict(zip(refs.keys(), np.asarray(scores, dtype=np.float64)))


# ------------------------------------------------------------------------------ CIDEr-D
@pytest.mark.parametrize("seed,items", [(0, 1000), (1, 1200)])
def test_cider_d_matches_pycocoevalcap(seed, items):
    cands, refs = _corpus(items, seed)
    assert sum(len(r) for r in refs.values()) >= 3 * items
    ref_score, ref_scores = _coco(cands, refs)
    score, scores = cider_d(cands, refs, tokenize=False)
    assert scores.shape == (items,) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, [ref_scores[k] for k in cands], rtol=0, atol=1e-9)
    assert abs(score - ref_score) <= 1e-9
    assert 0.1 < score < 10  # a meaningful, non-degenerate corpus


def test_cider_d_sigma_order_and_lists():
    cands, refs = _corpus(300, 7)
    _, ref_scores = _coco(cands, refs, sigma=2.5)
    # candidates in another order than the references: scores follow the candidates' order
    keys = list(cands)[::-1]
    cands_rev = {k: cands[k] for k in keys}
    score, scores = cider_d(cands_rev, refs, sigma=2.5, tokenize=False)
    np.testing.assert_allclose(scores, [ref_scores[k] for k in keys], rtol=0, atol=1e-9)
    # the same corpus as aligned lists; pycocoevalcap-style one-element candidate lists
    s2, scores2 = cider_d([cands[k] for k in keys], [refs[k] for k in keys], sigma=2.5, tokenize=False)
    np.testing.assert_allclose(scores2, scores, rtol=0, atol=1e-12)
    s3, scores3 = cider_d({k: [cands[k]] for k in keys}, refs, sigma=2.5, tokenize=False)
    np.testing.assert_allclose(scores3, scores, rtol=0, atol=1e-12)
    assert abs(s2 - score) < 1e-12 and abs(s3 - score) < 1e-12


def test_cider_d_empty_and_degenerate_captions():
    cands, refs = _corpus(200, 3)
    keys = list(cands)
    cands[keys[0]] = ""  # empty candidate
    cands[keys[1]] = "zzz unseen words only"
    refs[keys[2]] = refs[keys[2]] + [""]  # an empty reference still counts in the average
    refs[keys[3]] = [refs[keys[3]][0]] * 3  # duplicated references
    ref_score, ref_scores = _coco(cands, refs)
    score, scores = cider_d(cands, refs, tokenize=False)
    np.testing.assert_allclose(scores, [ref_scores[k] for k in keys], rtol=0, atol=1e-9)
    assert scores[0] == 0.0 and scores[1] == 0.0
    assert abs(score - ref_score) <= 1e-9


def test_one_image_corpus_is_zero_and_warns():
    cands = {"only": "a dog sitting on a couch"}
    refs = {"only": ["a dog sitting on a couch", "a brown dog on a sofa"]}
    ref_score, _ = _coco(cands, refs)
    assert ref_score == 0.0  # pycocoevalcap: idf = log(1) - log(1) = 0
    with pytest.warns(CiderWarning, match="one-image corpus"):
        score, scores = cider_d(cands, refs, tokenize=False)
    assert score == 0.0 and scores.tolist() == [0.0]
    with pytest.warns(CiderWarning):
        assert cider(cands, refs, tokenize=False)[0] == 0.0
    # two images: no warning, non-zero
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s, _ = cider_d({"a": "a dog on a couch", "b": "a red bus"},
                       {"a": ["a dog on a couch"], "b": ["a red bus on the street"]}, tokenize=False)
    assert s > 0


def test_input_errors_name_the_id():
    refs = {"a": ["a dog"], "b": ["a cat"]}
    with pytest.raises(KeyError, match="'c' has no references"):
        cider_d({"a": "a dog", "b": "a cat", "c": "x"}, {"a": ["a dog"], "b": ["a cat"], "d": ["y"]})
    with pytest.raises(KeyError, match="'c'"):
        cider_d({"a": "a dog", "c": "a cat"}, refs)
    with pytest.raises(KeyError, match="'b'.*no candidate"):
        cider_d({"a": "a dog"}, refs)
    with pytest.raises(ValueError, match="'b'.*empty reference list"):
        cider_d({"a": "a dog", "b": "a cat"}, {"a": ["a dog"], "b": []})
    with pytest.raises(TypeError, match="'a'.*list of captions"):
        cider_d({"a": "a dog", "b": "a cat"}, {"a": "a dog", "b": ["a cat"]})
    with pytest.raises(TypeError, match="'b'.*must be a str"):
        cider_d({"a": "a dog", "b": 3}, refs)
    with pytest.raises(ValueError, match="'a'.*one candidate"):
        cider_d({"a": ["x", "y"], "b": "a cat"}, refs)
    with pytest.raises(ValueError, match="2 candidates but 1"):
        cider_d(["a dog", "a cat"], [["a dog"]])
    with pytest.raises(ValueError, match="index 1|1: empty"):
        cider_d(["a dog", "a cat"], [["a dog"], []])
    with pytest.raises(ValueError, match="empty corpus"):
        cider_d({}, {})
    with pytest.raises(TypeError):
        cider_d({"a": "a dog"}, [["a dog"]])


def test_unique_keys_fallback_matches_single_key():
    from tether.metrics.captioning import _unique_keys

    rng = np.random.default_rng(0)
    cols = [rng.integers(0, 7, 500), rng.integers(0, 5, 500), rng.integers(0, 3, 500)]
    (a, b, c), n = _unique_keys(cols, [7, 5, 3])
    (a2, b2, c2), n2 = _unique_keys(cols, [7, 2**40, 2**40])  # too big for one int64 key
    for x, y in [(a, a2), (b, b2), (c, c2), (n, n2)]:
        assert x.tolist() == y.tolist()
    assert n.sum() == 500 and len(set(zip(a.tolist(), b.tolist(), c.tolist()))) == a.size


def test_caption_with_separator_like_text_and_whitespace():
    cands = {"a": "a dog\x00\x01 on\ta  couch", "b": "a cat"}
    refs = {"a": ["a dog on a couch", "dog \x00\x01"], "b": ["a cat on a mat", " "]}
    ref_score, ref_scores = _coco(cands, refs)
    score, scores = cider_d(cands, refs, tokenize=False)
    np.testing.assert_allclose(scores, [ref_scores[k] for k in cands], rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ plain CIDEr
def _naive_cider(cands, refs, n=4):
    """Vedantam et al. 2015, eq. (1)-(4): tf-idf with term frequencies normalised by the
    sentence's n-gram count, idf = log(|I| / df) over the references of the corpus (an n-gram in
    no reference counts as df = 1), cosine per order, mean over references and orders."""
    def grams(s, k):
        w = s.split()
        return Counter(tuple(w[i:i + k]) for i in range(len(w) - k + 1))

    keys = list(cands)
    N = len(keys)
    out = []
    for key in keys:
        per_order = []
        for k in range(1, n + 1):
            df = Counter()
            for kk in keys:
                df.update(set().union(*(grams(r, k).keys() for r in refs[kk])))

            def g(s):
                h = grams(s, k)
                tot = sum(h.values())
                return {t: c / tot * math.log(N / max(1, df[t])) for t, c in h.items()}

            gc = g(cands[key])
            nc = math.sqrt(sum(v * v for v in gc.values()))
            sims = []
            for r in refs[key]:
                gr = g(r)
                nr = math.sqrt(sum(v * v for v in gr.values()))
                dot = sum(v * gr.get(t, 0.0) for t, v in gc.items())
                sims.append(dot / (nc * nr) if nc > 0 and nr > 0 else 0.0)
            per_order.append(sum(sims) / len(sims))
        out.append(sum(per_order) / n)
    return np.array(out)


def test_plain_cider_matches_paper_formula():
    cands, refs = _corpus(120, 11)
    keys = list(cands)
    cands[keys[0]] = ""
    expected = _naive_cider(cands, refs)
    score, scores = cider(cands, refs, tokenize=False)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert abs(score - expected.mean()) < 1e-12
    assert np.all(scores <= 1 + 1e-12)  # a mean of cosines
    s10, scores10 = cider(cands, refs, tokenize=False, scale=10.0)
    np.testing.assert_allclose(scores10, 10 * expected, rtol=0, atol=1e-11)
    # CIDEr-D differs: clipping and the length penalty can only lower each term, x10 scale
    _, d = cider_d(cands, refs, tokenize=False)
    assert np.all(d <= scores10 + 1e-9) and np.any(d < scores10 - 1e-6)
    e2 = _naive_cider(cands, refs, n=2)
    np.testing.assert_allclose(cider(cands, refs, n=2, tokenize=False)[1], e2, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ tokenizer
# Expected outputs are what pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1 PTBTokenizer
# -preserveLines -lowerCase, then its punctuation filter) printed for these captions.
PTB_CASES = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ('A man\'s colourful T-shirt (red) and/or "blue" hat.',
     "a man 's colourful t-shirt -lrb- red -rrb- and/or blue hat"),
    ("They don't, can't and won't; I'm gonna, we cannot.",
     "they do n't ca n't and wo n't i 'm gon na we can not"),
    ("Mr. Smith and Dr. Who near St. Paul's, etc.", "mr. smith and dr. who near st. paul 's etc."),
    ("[bracket] {brace} 3.5 1,000 $5 50% 10:30",
     "-lsb- bracket -rsb- -lcb- brace -rcb- 3.5 1,000 $ 5 50 % 10:30"),
    ("wait...what -- - a -b", "wait what a b"),
    ("The U.S. flag; the dogs' bowls at 5 p.m.", "the u.s. flag the dogs bowls at 5 p.m."),
    ("He said \"hello\" and 'goodbye' to them!!", "he said hello and goodbye to them !!"),
    ("It's a 3-year-old child's toy?! It's 1/2 done.", "it 's a 3-year-old child 's toy ?! it 's 1/2 done"),
    ("\u201cCurly quotes\u201d and don\u2019t forget \u2018single\u2019 ones\u2026 ok",
     "curly quotes and do n't forget single ones ok"),
    ("rock 'n' roll 'cause y'all o'clock", "rock 'n' roll 'cause y' all o'clock"),
    ("A black-and-white photo of a two-story building - with a clock.",
     "a black-and-white photo of a two-story building with a clock"),
    ("a kitchen with a stove , a sink and a refrigerator .", "a kitchen with a stove a sink and a refrigerator"),
    ("Two giraffes standing next to each other in a field.   ",
     "two giraffes standing next to each other in a field"),
    ("5 1/2 inches, ten---twenty", "5\u00a01/2 inches ten twenty"),
    ("", ""),
]


@pytest.mark.parametrize("raw,expected", PTB_CASES)
def test_ptb_tokenize(raw, expected):
    assert ptb_tokenize(raw) == expected


def test_ptb_tokenize_many_is_one_stream():
    # the Java tokenizer sees the next line: a final single-letter "a." followed by a caption
    # starting with "A "/"The "... loses its period; the last caption is followed by nothing
    caps = ["next to a.", "the dog a.", "A dog a. The cat b. He said", "U.S. The end u.s. A cat",
            "I. A dog", "x.", "you'll"]
    assert ptb_tokenize_many(caps) == ["next to a.", "the dog a", "a dog a the cat b he said",
                                       "u.s. the end u.s. a cat", "i a dog", "x.", "you ll"]
    assert ptb_tokenize("next to a.") == "next to a."


@pytest.mark.skipif(shutil.which("java") is None, reason="Java not installed (only needed for this check)")
def test_ptb_tokenize_agrees_with_java_ptbtokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    rng = random.Random(5)
    extra = ["A Man's dog, sitting.", "Two (2) dogs; one cat!", "The 'cat' sat -- happily...", "U.S. Army tank."]
    caps = [c for c, _ in PTB_CASES if c] + extra
    for _ in range(300):
        c = _caption(rng)
        if rng.random() < 0.5:
            c = c[0].upper() + c[1:] + rng.choice([".", " .", "!", ""])
        if rng.random() < 0.3:
            w = c.split()
            i = rng.randrange(len(w))
            w[i] = w[i] + rng.choice([",", "'s", ";", ")", '"'])
            c = " ".join(w)
        caps.append(c)
    java = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(caps)})
    assert ptb_tokenize_many(caps) == [java[i][0] for i in range(len(caps))]

    # the whole COCO pipeline on raw captions: Java PTBTokenizer + Cider vs cider_d(tokenize=True)
    cands, refs = _corpus(150, 21)
    raw_c = {k: (v[:1].upper() + v[1:] + rng.choice([".", "", " !", "..."])) for k, v in cands.items()}
    raw_r = {k: [f'"{r}," he said.' if rng.random() < 0.1 else r.upper() + "." for r in v]
             for k, v in refs.items()}
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in raw_r.items()})
    res = tok.tokenize({k: [{"caption": c}] for k, c in raw_c.items()})
    ref_score, ref_scores = Cider().compute_score(gts, res)
    score, scores = cider_d(raw_c, raw_r)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-9)
    assert abs(score - ref_score) <= 1e-9


def test_tokenize_flag():
    cands, refs = _corpus(100, 2)
    raw_c = {k: v.capitalize() + "." for k, v in cands.items()}
    raw_r = {k: [r.upper() + " ." for r in v] for k, v in refs.items()}
    a = cider_d(cands, refs, tokenize=False)
    b = cider_d(raw_c, raw_r)  # tokenize=True is the default: lower-cases, drops the periods
    np.testing.assert_allclose(b[1], a[1], rtol=0, atol=1e-12)
    c = cider_d(raw_c, raw_r, tokenize=False)  # taken as is: different tokens, different score
    assert abs(c[0] - a[0]) > 1e-3


# ------------------------------------------------------------------------------ retrieval
def test_caption_by_retrieval_argmax_and_exclude():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(37, 16)).astype(np.float32)
    pool = rng.normal(size=(50, 16)).astype(np.float32) * rng.uniform(0.5, 3, size=(50, 1)).astype(np.float32)
    texts = [f"caption {j}" for j in range(50)]
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (pool / np.linalg.norm(pool, axis=1, keepdims=True)).T
    best = cos.argmax(1)
    got, idx = caption_by_retrieval(img, pool, texts, chunk_size=8, return_indices=True)
    assert idx.tolist() == best.tolist() and got == [texts[j] for j in best]
    # excluding each image's best (and, for some, more) picks the best of the rest
    exclude = [[int(best[i])] + ([int(j) for j in np.argsort(-cos[i])[1:3]] if i % 2 else []) for i in range(37)]
    exclude[5] = None
    got2, idx2 = caption_by_retrieval(img, pool, texts, exclude=exclude, chunk_size=5, return_indices=True)
    for i in range(37):
        allowed = np.ones(50, bool)
        if exclude[i] is not None:
            allowed[exclude[i]] = False
        assert idx2[i] == np.flatnonzero(allowed)[cos[i, allowed].argmax()]
        assert exclude[i] is None or idx2[i] not in exclude[i]
    assert idx2[5] == best[5]
    import torch  # a dependency of tether: always there
    assert caption_by_retrieval(torch.from_numpy(img), torch.from_numpy(pool), texts) == got
    with pytest.raises(ValueError, match="image 0: every pool caption is excluded"):
        caption_by_retrieval(img[:1], pool[:2], texts[:2], exclude=[[0, 1]])
    with pytest.raises(ValueError, match="pool_texts"):
        caption_by_retrieval(img, pool, texts[:-1])
    with pytest.raises(ValueError, match="dimension"):
        caption_by_retrieval(img, pool[:, :8], texts)


def test_retrieval_captions_score_with_cider_d():
    """An aligned model's retrieved captions score higher than a shuffled pairing."""
    cands, refs = _corpus(200, 9)
    keys = list(refs)
    pool = [r for k in keys for r in refs[k]]
    owner = np.array([i for i, k in enumerate(keys) for _ in refs[k]])
    rng = np.random.default_rng(1)
    base = rng.normal(size=(len(keys), 32))
    img = base + 0.1 * rng.normal(size=base.shape)
    txt = base[owner] + 0.5 * rng.normal(size=(len(pool), 32))
    # exclude an image's own references, so the caption must come from another image
    exclude = [np.flatnonzero(owner == i) for i in range(len(keys))]
    got, idx = caption_by_retrieval(img, txt, pool, exclude=exclude, return_indices=True)
    assert not np.any(owner[idx] == np.arange(len(keys)))
    aligned = cider_d(dict(zip(keys, got)), refs, tokenize=False)[0]
    shuffled = cider_d(dict(zip(keys, np.random.default_rng(2).permutation(got).tolist())), refs,
                       tokenize=False)[0]
    assert np.isfinite(aligned) and np.isfinite(shuffled)
