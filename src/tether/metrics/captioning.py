"""CIDEr-D and CIDEr for captioning, fast and without Java; caption-by-retrieval.

* :func:`cider_d` computes exactly what pycocoevalcap's ``Cider`` scorer computes (which, despite
  its name, is CIDEr-D: clipped n-gram counts, a Gaussian length penalty, a factor of 10) -- the
  number reported as "CIDEr" by the COCO caption evaluation and most captioning papers.
* :func:`cider` is the original CIDEr of Vedantam et al. (CVPR 2015): the mean over n-gram
  orders of the mean cosine similarity between tf-idf vectors, no clipping, no penalty and no
  factor of 10 unless asked for (``scale=10.0`` gives what the authors' ``pyciderevalcap/cider``
  code prints).

Both take raw captions and tokenise them like pycocoevalcap's Java PTBTokenizer
(:mod:`tether.metrics.text_tokenize`), or pre-tokenised captions with ``tokenize=False``.
Both are vectorised over the whole corpus with numpy: one n-gram vocabulary, sparse tf-idf
weights, per-caption norms and a sorted join of candidate and reference n-grams replace the
per-pair Python dictionaries. The definitions, the pycocoevalcap details that are kept on
purpose and the tokeniser's known differences are in ``docs/cider.md``.
"""
from __future__ import annotations

import warnings
from itertools import chain
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .text_tokenize import ptb_tokenize_many

__all__ = ["CiderWarning", "cider_d", "cider", "caption_by_retrieval"]


class CiderWarning(UserWarning):
    """A CIDEr score that is degenerate by construction (e.g. a one-image corpus)."""


# ------------------------------------------------------------------------------ inputs
def _normalise_inputs(candidates, references) -> tuple[list, list[str], list[list[str]]]:
    """Return (ids, candidate captions, reference caption lists), in the order of ``candidates``."""
    if isinstance(candidates, Mapping):
        if not isinstance(references, Mapping):
            raise TypeError("candidates is a mapping (id -> caption), so references must be a mapping "
                            f"(id -> list of captions), got {type(references).__name__}")
        ids = list(candidates.keys())
        missing = [i for i in ids if i not in references]
        if missing:
            raise KeyError(f"candidate id {missing[0]!r} has no references"
                           + (f" ({len(missing)} ids in all)" if len(missing) > 1 else ""))
        if len(references) != len(ids):
            extra = [i for i in references if i not in candidates]
            raise KeyError(f"reference id {extra[0]!r} has no candidate"
                           + (f" ({len(extra)} ids in all)" if len(extra) > 1 else ""))
        cands = [candidates[i] for i in ids]
        refs = [references[i] for i in ids]
    else:
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
            raise TypeError("candidates must be a mapping id -> caption or a sequence of captions, "
                            f"got {type(candidates).__name__}")
        if isinstance(references, Mapping) or isinstance(references, (str, bytes)):
            raise TypeError("candidates is a sequence, so references must be a sequence of caption lists")
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
        ids = list(range(len(candidates)))
        cands, refs = list(candidates), list(references)
    if not ids:
        raise ValueError("empty corpus: CIDEr needs at least one image")

    out_c: list[str] = []
    out_r: list[list[str]] = []
    for i, c, r in zip(ids, cands, refs):
        if type(c) is not str:
            if isinstance(c, (list, tuple)):  # pycocoevalcap style: {id: [caption]}
                if len(c) != 1:
                    raise ValueError(f"id {i!r}: expected one candidate caption, got {len(c)}")
                c = c[0]
            if not isinstance(c, str):
                raise TypeError(f"id {i!r}: candidate caption must be a str, got {type(c).__name__}")
        if type(r) is not list:
            if isinstance(r, str) or not isinstance(r, Iterable):
                raise TypeError(f"id {i!r}: references must be a list of captions, got {type(r).__name__}")
            r = list(r)
        if not r:
            raise ValueError(f"id {i!r}: empty reference list (CIDEr averages over the references)")
        if not all(type(x) is str for x in r) and not all(isinstance(x, str) for x in r):
            bad = next(x for x in r if not isinstance(x, str))
            raise TypeError(f"id {i!r}: reference captions must be str, got {type(bad).__name__}")
        out_c.append(c)
        out_r.append(r)
    return ids, out_c, out_r


_SEP = "\x00\x01"  # caption separator token (not whitespace, so it survives str.split)


def _tokenize(ids: list, cands: list[str], refs: list[list[str]], references) -> tuple[list, list]:
    """PTB-tokenise like pycocoevalcap: one tokenizer stream for the candidates (in their
    order) and one for the references (in the order of the ``references`` mapping)."""
    cands = ptb_tokenize_many(cands)
    order = list(range(len(ids)))
    if isinstance(references, Mapping):
        where = {k: j for j, k in enumerate(ids)}
        order = [where[k] for k in references]
    stream = ptb_tokenize_many([s for j in order for s in refs[j]])
    out: list[list[str]] = [None] * len(ids)  # type: ignore[list-item]
    pos = 0
    for j in order:
        out[j] = stream[pos:pos + len(refs[j])]
        pos += len(refs[j])
    return cands, out


def _item_major_word_ids(cands: list[str], refs: list[list[str]]):
    """Word ids of all captions, item-major (each image's candidate, then its references):
    (ids of all words in order, number of words of each caption, vocabulary size)."""
    strings: list[str] = []
    for c, r in zip(cands, refs):
        strings.append(c)
        strings.extend(r)
    # pycocoevalcap's precook splits each caption on any whitespace; one split of the joined
    # text with a separator token between captions gives the same words, much faster
    if any(_SEP in s for s in strings):  # (a caption containing the separator: one by one)
        token_lists = [s.split() for s in strings]
        words = list(chain.from_iterable(token_lists))
        lens = np.fromiter(map(len, token_lists), np.int64, len(token_lists))
    else:
        words = f" {_SEP} ".join(strings).split()
        lens = None
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}  # word -> id, first-seen order
    ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
    if lens is None:
        sep_id = vocab.get(_SEP)
        is_sep = ids == sep_id if sep_id is not None else np.zeros(ids.size, bool)
        sep_pos = np.flatnonzero(is_sep)
        lens = np.diff(np.concatenate(([-1], sep_pos, [ids.size]))) - 1
        ids = ids[~is_sep]
    return ids, lens, len(vocab)


# ------------------------------------------------------------------------------ core
def _unique_keys(cols: list[np.ndarray], sizes: list[int]):
    """Unique rows of the integer columns ``cols`` (column j in ``[0, sizes[j])``), sorted
    lexicographically, as (list of unique columns, counts)."""
    total = 1
    for z in sizes:
        total *= max(int(z), 1)
    if total < 2**62:  # one int64 key: a single sort
        key = np.zeros(cols[0].size, dtype=np.int64)
        for c, z in zip(cols, sizes):
            key = key * max(int(z), 1) + c
        uniq, counts = np.unique(key, return_counts=True)
        out = []
        for z in reversed(sizes):
            out.append(uniq % max(int(z), 1))
            uniq = uniq // max(int(z), 1)
        return out[::-1], counts
    order = np.lexsort(tuple(reversed(cols)))  # (astronomically large corpora only)
    cols = [c[order] for c in cols]
    first = np.zeros(cols[0].size, dtype=bool)
    first[:1] = True
    for c in cols:
        first[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(first)
    return [c[starts] for c in cols], np.diff(np.append(starts, cols[0].size))


def _ngram_entries(words: np.ndarray, lens: np.ndarray, V: int, n: int):
    """Every n-gram occurrence of every caption, orders 1..n: (caption index, n-gram id), the
    order index of each n-gram id and the number of n-gram ids. ``words`` holds the word ids of
    all captions (ids < V), ``lens`` the number of words of each caption."""
    total = words.size
    V = max(V, 1)
    cap_of_tok = np.repeat(np.arange(lens.size, dtype=np.int64), lens)
    starts = np.cumsum(lens) - lens
    remaining = lens[cap_of_tok] - (np.arange(total, dtype=np.int64) - starts[cap_of_tok])

    caps, gids, sizes = [], [], []
    offset = 0
    prev = words  # id of the (k-1)-gram starting at each position
    for k in range(1, n + 1):
        valid = np.flatnonzero(remaining >= k)
        if k == 1:
            ids_k, n_k = words, V
        else:  # k-gram = ((k-1)-gram, next word), renumbered densely
            uniq, inv = np.unique(prev[valid] * V + words[valid + (k - 1)], return_inverse=True)
            n_k = uniq.size
            ids_k = np.full(total, -1, dtype=np.int64)
            ids_k[valid] = inv.reshape(-1)
        caps.append(cap_of_tok[valid])
        gids.append(ids_k[valid] + offset)
        sizes.append(n_k)
        offset += n_k
        prev = ids_k
    order_of_g = np.repeat(np.arange(n, dtype=np.int64), sizes)
    return np.concatenate(caps), np.concatenate(gids), order_of_g, offset


def _cider_scores(words, lens, V, n_refs, n, *, clipped, sigma, scale, warn_name):
    """Per-image scores; ``words``/``lens``/``V``: word ids of the captions, item-major (see
    _item_major_word_ids)."""
    I = n_refs.size
    if I == 1:
        warnings.warn(
            f"{warn_name} on a one-image corpus is 0 by construction: the idf of an n-gram is "
            "log(number of images / number of images whose references contain it), and with one "
            "image that is log(1/1) = 0 for every n-gram (pycocoevalcap gives the same 0). "
            "Score the whole evaluation set at once, not one image at a time.",
            CiderWarning, stacklevel=4)
    # image i's candidate is at slot 0 of its block, its references at slots 1..R_i
    per_item = n_refs + 1
    cap_start = np.cumsum(per_item) - per_item
    C = int(per_item.sum())
    item_of_cap = np.repeat(np.arange(I, dtype=np.int64), per_item)
    slot_of_cap = np.arange(C, dtype=np.int64) - cap_start[item_of_cap]
    item_u, g_u, slot_u, w, first, order_of_g = _weighted_entries(words, lens, V, n, I, per_item, item_of_cap,
                                                                  slot_of_cap)

    cap_u = cap_start[item_u] + slot_u
    ord_u = order_of_g[g_u]
    norm = np.sqrt(np.bincount(cap_u * n + ord_u, weights=w * w, minlength=C * n)).reshape(C, n)
    # pycocoevalcap's "length" is the number of bigrams, max(words - 1, 0)
    length = np.maximum(lens - 1, 0).astype(np.float64)
    dot = _reference_dots(item_u, slot_u, cap_u, ord_u, w, first, n, C - I, clipped)

    ref_caps = np.flatnonzero(slot_of_cap > 0)
    item_of_ref = item_of_cap[ref_caps]
    nc, nr = norm[cap_start[item_of_ref]], norm[ref_caps]
    ok = (nc != 0) & (nr != 0)
    val = dot.copy()
    val[ok] = dot[ok] / (nc[ok] * nr[ok])
    if sigma is not None:
        delta = length[cap_start[item_of_ref]] - length[ref_caps]
        val *= (np.e ** (-(delta ** 2) / (2 * sigma ** 2)))[:, None]
    # sum over each image's references, per order; then mean over orders, / references, * scale
    rows = (item_of_ref[:, None] * n + np.arange(n)[None, :]).reshape(-1)
    per_order = np.bincount(rows, weights=val.reshape(-1), minlength=I * n).reshape(I, n)
    return np.mean(per_order, axis=1) / n_refs * scale


def _weighted_entries(words, lens, V, n, I, per_item, item_of_cap, slot_of_cap):
    """tf-idf weight of every distinct (image, n-gram, slot) entry, sorted so that each (image,
    n-gram) group starts with the candidate's entry (if the candidate has the n-gram); -> (image,
    n-gram id, slot, weight, group-start mask) per entry, and the order of each n-gram id."""
    cap_e, g_e, order_of_g, G = _ngram_entries(words, lens, V, n)
    (item_u, g_u, slot_u), tf = _unique_keys(
        [item_of_cap[cap_e], g_e, slot_of_cap[cap_e]], [I, G, int(per_item.max())])
    del cap_e, g_e
    m = item_u.size
    first = np.ones(m, dtype=bool)
    first[1:] = (item_u[1:] != item_u[:-1]) | (g_u[1:] != g_u[:-1])
    first_idx = np.flatnonzero(first)
    last_idx = np.append(first_idx[1:] - 1, m - 1)

    # document frequency: number of images whose references contain the n-gram
    has_ref = slot_u[last_idx] > 0
    df = np.bincount(g_u[last_idx[has_ref]], minlength=G).astype(np.float64)
    ref_len = np.log(float(I))
    idf = ref_len - np.log(np.maximum(1.0, df))  # per n-gram, as pycocoevalcap per occurrence
    w = tf.astype(np.float64) * idf[g_u]
    return item_u, g_u, slot_u, w, first, order_of_g


def _reference_dots(item_u, slot_u, cap_u, ord_u, w, first, n, R, clipped):
    """(R, n) dot products, per order, of every reference's vector with its image's candidate."""
    # each reference entry meets the candidate entry at the start of its group, if any
    first_idx = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    cand_first = first_idx[slot_u[first_idx] == 0]  # groups whose candidate has the n-gram
    has_cand = np.zeros(first_idx.size, dtype=bool)
    has_cand[group[cand_first]] = True
    sel = np.flatnonzero((slot_u > 0) & has_cand[group])
    wr = w[sel]
    wc = w[first_idx[group[sel]]]
    contrib = (np.minimum(wc, wr) if clipped else wc) * wr
    ref_row = cap_u[sel] - item_u[sel] - 1  # index among all references, item-major
    return np.bincount(ref_row * n + ord_u[sel], weights=contrib, minlength=R * n).reshape(R, n)


def _run(candidates, references, n, tokenize, **kw):
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    ids, cands, refs = _normalise_inputs(candidates, references)
    if tokenize:
        cands, refs = _tokenize(ids, cands, refs, references)
    words, lens, V = _item_major_word_ids(cands, refs)
    n_refs = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    scores = _cider_scores(words, lens, V, n_refs, int(n), **kw)
    return float(np.mean(scores)), scores


def cider_d(
    candidates: Mapping[Any, str] | Sequence[str],
    references: Mapping[Any, Sequence[str]] | Sequence[Sequence[str]],
    n: int = 4,
    sigma: float = 6.0,
    *,
    tokenize: bool = True,
) -> tuple[float, np.ndarray]:
    """CIDEr-D, exactly as pycocoevalcap's ``Cider().compute_score`` (the COCO "CIDEr").

    Args:
        candidates: ``{id: caption}`` (a one-element list per id is accepted too, as in
            pycocoevalcap), or a list of captions.
        references: ``{id: [caption, ...]}`` with the same ids, or a list of caption lists
            aligned with ``candidates``. Every id needs at least one reference.
        n: longest n-gram (pycocoevalcap always uses 4).
        sigma: standard deviation of the Gaussian length penalty.
        tokenize: tokenise raw captions like pycocoevalcap's PTBTokenizer (lower case, PTB
            splits, punctuation removed); ``False`` if the captions are already lower-case
            space-separated tokens (they are then only split on whitespace).

    Returns:
        ``(corpus_score, per_item_scores)``: the mean over images and a float64 array of one
        score per image, in the order of the ids in ``candidates``.

    Document frequencies come from the references of the given corpus, so a score depends on
    the whole corpus: a one-image corpus scores 0 (with a :class:`CiderWarning`).
    """
    return _run(candidates, references, n, tokenize, clipped=True, sigma=float(sigma), scale=10.0,
                warn_name="CIDEr-D")


def cider(
    candidates: Mapping[Any, str] | Sequence[str],
    references: Mapping[Any, Sequence[str]] | Sequence[Sequence[str]],
    n: int = 4,
    *,
    tokenize: bool = True,
    scale: float = 1.0,
) -> tuple[float, np.ndarray]:
    """Plain CIDEr (Vedantam, Zitnick and Parikh, CVPR 2015).

    ``CIDEr_k(c, S) = 1/m sum_j g_k(c).g_k(s_j) / (|g_k(c)| |g_k(s_j)|)`` and
    ``CIDEr(c, S) = sum_k CIDEr_k(c, S) / n``, with tf-idf n-gram vectors ``g_k`` whose idf is
    ``log(number of images / number of images whose references contain the n-gram)``
    (an n-gram found in no reference gets the count 1, as in the authors' code).
    No clipping, no length penalty; ``scale=10.0`` reproduces the authors' ``cider`` code,
    which multiplies by 10. Arguments and return value as in :func:`cider_d`.
    """
    return _run(candidates, references, n, tokenize, clipped=False, sigma=None, scale=float(scale),
                warn_name="CIDEr")


# ------------------------------------------------------------------------------ retrieval
def _as_2d_float(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {a.shape}")
    return a


def caption_by_retrieval(
    image_embeds,
    pool_text_embeds,
    pool_texts: Sequence[str],
    exclude: Sequence[Iterable[int] | None] | None = None,
    *,
    chunk_size: int = 256,
    return_indices: bool = False,
):
    """Caption each image with the pool caption of highest cosine similarity.

    Args:
        image_embeds: ``(N, D)`` image embeddings (numpy or torch; normalised here).
        pool_text_embeds: ``(P, D)`` embeddings of the caption pool.
        pool_texts: the ``P`` pool captions.
        exclude: optional, one entry per image: pool indices that image may not pick (e.g. its
            own reference captions, so that retrieval cannot copy the answer), or None.
        chunk_size: images scored per block (memory is ``chunk_size * P`` floats).
        return_indices: also return the chosen pool indices.

    Returns:
        The list of ``N`` chosen captions (ties go to the lowest pool index), and with
        ``return_indices`` a ``(captions, indices)`` pair.
    """
    img = _as_2d_float(image_embeds, "image_embeds")
    txt = _as_2d_float(pool_text_embeds, "pool_text_embeds")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image_embeds has dimension {img.shape[1]} but pool_text_embeds {txt.shape[1]}")
    if len(pool_texts) != txt.shape[0]:
        raise ValueError(f"{len(pool_texts)} pool_texts but {txt.shape[0]} pool embeddings")
    if txt.shape[0] == 0:
        raise ValueError("empty caption pool")
    if exclude is not None and len(exclude) != img.shape[0]:
        raise ValueError(f"exclude has {len(exclude)} entries but there are {img.shape[0]} images")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    txt = txt / np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
    P = txt.shape[0]
    chosen = np.empty(img.shape[0], dtype=np.int64)
    for s in range(0, img.shape[0], chunk_size):
        sims = img[s:s + chunk_size] @ txt.T
        if exclude is not None:
            for r in range(sims.shape[0]):
                ex = exclude[s + r]
                if ex is None:
                    continue
                ex = np.asarray(list(ex), dtype=np.int64)
                if ex.size:
                    if ex.min() < -P or ex.max() >= P:
                        raise IndexError(f"image {s + r}: exclude index out of range for a pool of {P}")
                    sims[r, ex] = -np.inf
                    if np.isneginf(sims[r]).all():
                        raise ValueError(f"image {s + r}: every pool caption is excluded")
        chosen[s:s + sims.shape[0]] = np.argmax(sims, axis=1)
    captions = [pool_texts[j] for j in chosen]
    return (captions, chosen) if return_indices else captions
