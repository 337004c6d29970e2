"""Measuring an index against exact search: the ground truth, recall@k and query time.

Ground truth is exact inner product over every stored row, a block at a time (never all vectors
at once). recall@k is |approximate top k ∩ exact top k| / k, averaged over the queries; a tie at the
k-th score can swap equal-scoring rows, so even exact search scores below 1 when scores repeat
(duplicate rows). Queries that are rows of the index itself are held out by leave-one-out: their
own row is dropped from both the exact and the approximate results (:func:`drop_rows`).
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np

K = 10
#: Scores this close are ties: float32 rounding of an inner product of unit vectors of width <= 4096.
TIE_TOL = 1e-5


def exact_topk(queries: np.ndarray, blocks: Iterable[tuple[int, np.ndarray]],
               k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``k`` highest inner products of each query over ``blocks`` of (start id, rows)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for start, block in blocks:
        s = q @ block.T
        ids = np.broadcast_to(np.arange(start, start + block.shape[0], dtype=np.int64), s.shape)
        s, ids = np.concatenate([best_s, s], 1), np.concatenate([best_i, ids], 1)
        keep = min(k, s.shape[1])
        part = np.argpartition(-s, keep - 1, axis=1)[:, :keep]
        best_s, best_i = np.take_along_axis(s, part, 1), np.take_along_axis(ids, part, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def drop_rows(found: np.ndarray, rows: np.ndarray, k: int = K) -> np.ndarray:
    """Each result row without its query's own row id (leave-one-out), cut to ``k`` (padded with -1)."""
    out = np.full((len(found), k), -1, np.int64)
    for i, (row, own) in enumerate(zip(found, rows)):
        kept = row[row != own][:k]
        out[i, :len(kept)] = kept
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = K, found_scores: np.ndarray | None = None,
                kth: np.ndarray | None = None, tol: float = TIE_TOL) -> float:
    """Mean over queries of |found[:, :k] ∩ truth[:, :k]| / k (ids < 0, FAISS's 'none', never match).

    With ``found_scores`` (the exact scores of the found rows) and ``kth`` (each query's exact k-th
    best score), a found row outside ``truth`` that scores within ``tol`` of the k-th best counts as
    a hit too: with repeated rows (the same caption on many images) any of the tied rows is a right
    answer, and which of them exact search lists is arbitrary."""
    hits = []
    for i, (f, t) in enumerate(zip(found, truth)):
        f, t = f[:k], set(t[:k].tolist()) - {-1}
        n = len(set(f.tolist()) & t)
        if found_scores is not None and kth is not None:
            n += sum(1 for j, row in enumerate(f.tolist())
                     if row >= 0 and row not in t and found_scores[i][j] >= kth[i] - tol)
        hits.append(min(n, k))
    return float(np.mean(hits) / min(k, truth.shape[1])) if len(hits) else 0.0


def query_time(search: Callable[[np.ndarray], object], queries: np.ndarray, singles: int = 50) -> dict[str, float]:
    """Milliseconds a query: in one batch of every query, and one query at a time (first ``singles``)."""
    t0 = time.perf_counter()
    search(queries)
    batch = (time.perf_counter() - t0) * 1000 / max(1, len(queries))
    few = queries[:singles]
    t0 = time.perf_counter()
    for q in few:
        search(q[None])
    single = (time.perf_counter() - t0) * 1000 / max(1, len(few))
    return {"batch_ms_per_query": round(batch, 4), "single_ms": round(single, 4)}


__all__ = ["K", "TIE_TOL", "drop_rows", "exact_topk", "query_time", "recall_at_k"]
