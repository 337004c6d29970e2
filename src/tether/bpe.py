"""Deterministic byte-pair-encoding training in pure Python.

The ``tokenizers`` library's BpeTrainer breaks ties between equally frequent pairs by Rust HashMap order, so two
runs on the same corpus can learn different merges.  :func:`learn_bpe` is a pure function of the word counts: the
most frequent pair wins and ties go to the lexicographically smallest ``(left, right)`` pair of token strings.

Pair counts are updated incrementally (pair -> count, pair -> indices of the words containing it, and a lazy
max-heap), so only the words that contain the merged pair are touched at each step.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

__all__ = ["learn_bpe"]

Pair = tuple[int, int]


def learn_bpe(words: Iterable[tuple[Sequence[str], int]], tokens: Sequence[str], vocab_size: int,
              min_frequency: int = 2) -> tuple[list[str], list[tuple[str, str]]]:
    """Learn BPE merges from ``(symbols, count)`` word counts.

    ``tokens`` is the initial vocabulary (specials and alphabet, in id order); every symbol of every word must be
    in it.  Merging stops when the vocabulary holds ``vocab_size`` tokens or when no pair occurs at least
    ``min_frequency`` times (weighted by word counts).  A merge whose result is already a token (``a+bc`` after
    ``ab+c``) is recorded but adds no token.  Returns ``(tokens, merges)``: the initial tokens followed by the
    learned ones, and the merges in the order learned.  The result depends on the multiset of words only.
    """
    names, id_of = _initial_vocab(tokens)
    seqs, freqs = _word_ids(words, id_of)
    counts, where = _count_pairs(seqs, freqs)
    # Max-heap on (count, then smallest strings); entries may be stale, the true count lives in `counts`.
    # Invariant: every pair with a positive count has an entry whose stored count is >= its true count.
    heap = [(-n, names[a], names[b], a, b) for (a, b), n in counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    min_frequency = max(1, min_frequency)
    while len(names) < vocab_size and heap:
        neg, left, right, a, b = heapq.heappop(heap)
        n = counts.get((a, b), 0)
        if n != -neg:  # stale: re-queue with the true count (dropped pairs are gone for good)
            if n > 0:
                heapq.heappush(heap, (-n, left, right, a, b))
            continue
        if n < min_frequency:
            break
        merged = left + right
        c = id_of.get(merged)
        if c is None:
            c = id_of[merged] = len(names)
            names.append(merged)
        merges.append((left, right))
        for pair in _merge_pair(seqs, freqs, counts, where, a, b, c):
            n = counts.get(pair, 0)
            if n > 0:
                heapq.heappush(heap, (-n, names[pair[0]], names[pair[1]], *pair))
    return names, merges


def _initial_vocab(tokens: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Token strings in id order (duplicates dropped) and their ids."""
    names: list[str] = []
    id_of: dict[str, int] = {}
    for token in tokens:
        if token not in id_of:
            id_of[token] = len(names)
            names.append(token)
    return names, id_of


def _word_ids(words: Iterable[tuple[Sequence[str], int]], id_of: dict[str, int]) -> tuple[list[list[int]], list[int]]:
    """Symbol ids and counts of the words that can be merged (count > 0, two symbols or more)."""
    seqs: list[list[int]] = []
    freqs: list[int] = []
    for symbols, count in words:
        if count <= 0 or len(symbols) < 2:  # a one-symbol word has no pairs and never changes
            continue
        try:
            seqs.append([id_of[s] for s in symbols])
        except KeyError as err:
            raise ValueError(f"symbol {err.args[0]!r} is not in the initial vocabulary") from None
        freqs.append(count)
    return seqs, freqs


def _count_pairs(seqs: list[list[int]], freqs: list[int]) -> tuple[dict[Pair, int], dict[Pair, set[int]]]:
    """pair -> count weighted by word counts, and pair -> indices of the words containing it."""
    counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for w, seq in enumerate(seqs):
        f = freqs[w]
        for pair in zip(seq, seq[1:]):
            counts[pair] = counts.get(pair, 0) + f
            where.setdefault(pair, set()).add(w)
    return counts, where


def _merge_pair(seqs: list[list[int]], freqs: list[int], counts: dict[Pair, int], where: dict[Pair, set[int]],
                a: int, b: int, c: int) -> dict[Pair, None]:
    """Replace ``(a, b)`` by ``c`` in every word holding it and update ``counts`` / ``where`` in place.

    Returns the pairs that contain ``c`` (in first-seen order): the only ones whose count can go up."""
    delta: dict[Pair, int] = {}
    grown: dict[Pair, None] = {}
    for w in sorted(where.pop((a, b), ())):
        seq = seqs[w]
        out: list[int] = []
        i, last = 0, len(seq) - 1
        while i <= last:
            if i < last and seq[i] == a and seq[i + 1] == b:
                out.append(c)
                i += 2
            else:
                out.append(seq[i])
                i += 1
        if len(out) == len(seq):  # stale index: the word no longer has the pair
            continue
        f = freqs[w]
        for pair in zip(seq, seq[1:]):
            delta[pair] = delta.get(pair, 0) - f
        for pair in zip(out, out[1:]):
            delta[pair] = delta.get(pair, 0) + f
            if c in pair:
                where.setdefault(pair, set()).add(w)
                grown[pair] = None
        seqs[w] = out
    for pair, d in delta.items():
        if d:
            n = counts.get(pair, 0) + d
            if n > 0:
                counts[pair] = n
            else:
                counts.pop(pair, None)
    counts.pop((a, b), None)
    return grown
