"""One modality's FAISS index: built from a :class:`Choice`, tuned to a target recall, searched.

Inner product on L2-normalised vectors (cosine). The search parameter of each type (HNSW
``efSearch``, IVF ``nprobe``; for PQ also how many candidates are re-ranked exactly) is tuned on
held-out queries (:meth:`VectorIndex.tune`): raised until the measured recall@10 reaches the
target, then further while recall still rises and one query stays within a time budget (autofaiss
spends a query-time budget on recall; tether first makes sure of the target, then spends a small
budget where it buys recall). PQ's candidates are re-ranked by exact inner product read from the
memory-mapped vectors.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_file
from .choice import Choice
from .recall import K, drop_rows, recall_at_k
from .store import VectorStore

EF_SEARCH = (16, 32, 64, 128, 256, 512, 1024, 2048)
#: Queries timed one at a time at each tried parameter (for the time budget).
TIMED_QUERIES = 50
RERANK_FACTORS = (2, 4, 8, 16, 32)
TRAIN_ROWS_MAX = 200_000
OPQ_ITERATIONS, OPQ_TRAIN_ROWS = 10, 20_000


def _faiss():
    import faiss
    return faiss


def train_rows(choice: Choice, n: int) -> int:
    """Rows to train on: enough for each inverted list and PQ centroid (FAISS wants 39+ each)."""
    need = 0
    if "nlist" in choice.params:
        need = max(need, 64 * choice.params["nlist"])
    if "pq_bits" in choice.params:
        need = max(need, 256 * 2 ** choice.params["pq_bits"])
    return min(n, max(need, 10_000), TRAIN_ROWS_MAX)


class VectorIndex:
    """A FAISS index with its type, tuned search parameters and (for PQ) its re-ranking store."""

    def __init__(self, index: Any, kind: str, key: str, search_params: dict[str, int], store: VectorStore) -> None:
        self.index, self.kind, self.key, self.store = index, kind, key, store
        self.search_params: dict[str, int] = {}
        self.set_params(search_params)

    @classmethod
    def build(cls, choice: Choice, store: VectorStore, seed: int = 0) -> "VectorIndex":
        faiss = _faiss()
        n = len(store)
        d = store.arrays[0].shape[1]
        index = faiss.index_factory(d, choice.key, faiss.METRIC_INNER_PRODUCT)
        if choice.kind == "hnsw":
            index.hnsw.efConstruction = choice.params.get("efConstruction", 40)
        if choice.kind == "ivf-pq":
            opq = faiss.downcast_VectorTransform(index.chain.at(0))
            opq.niter, opq.max_train_points = OPQ_ITERATIONS, OPQ_TRAIN_ROWS  # FAISS's 50 passes: hours at 1M
        if not index.is_trained:
            rows = np.random.default_rng(seed).choice(n, train_rows(choice, n), replace=False)
            index.train(store.take(np.sort(rows)))
        self = cls(index, choice.kind, choice.key, {}, store)
        self.add_blocks(store.chunks())
        return self

    def add_blocks(self, blocks) -> None:
        for _, block in blocks:
            self.index.add(np.ascontiguousarray(block))

    def set_params(self, params: dict[str, int]) -> None:
        faiss = _faiss()
        space = faiss.ParameterSpace()
        for name, value in params.items():
            if name != "k_factor":
                space.set_index_parameter(self.index, name, int(value))
        self.search_params = dict(params)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), best first; ids -1 where fewer than k rows exist."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, int(k))
        if self.kind != "ivf-pq":
            return self.index.search(q, k)
        _, cand = self.index.search(q, k * self.search_params.get("k_factor", 8))
        return self._rerank(q, cand, k)

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for i, row in enumerate(cand):
            row = row[row >= 0]
            if not len(row):
                continue
            exact = self.store.take(row) @ q[i]
            order = np.argsort(-exact, kind="stable")[:k]
            scores[i, :len(order)], ids[i, :len(order)] = exact[order], row[order]
        return scores, ids

    def top10(self, queries: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
        """Ids of the 10 best rows a query; with ``own`` (each query's own row id) leave-one-out."""
        if own is None:
            return self.search(queries, K)[1]
        return drop_rows(self.search(queries, K + 1)[1], own, K)

    def exact_scores(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact inner products of each query with its rows ``ids`` (-inf where an id is -1)."""
        valid = ids >= 0
        rows = self.store.take(np.where(valid, ids, 0).ravel()).reshape(*ids.shape, -1)
        return np.where(valid, np.einsum("qd,qkd->qk", queries, rows), -np.inf)

    def recall(self, queries: np.ndarray, truth: np.ndarray, own: np.ndarray | None = None) -> float:
        """recall@10 against ``truth`` (exact top 10 ids), rows tied with the 10th best counted as hits."""
        found = self.top10(queries, own)
        kth = self.exact_scores(queries, truth[:, K - 1:K])[:, 0]
        return recall_at_k(found, truth, K, self.exact_scores(queries, found), kth)

    def tune(self, queries: np.ndarray, truth: np.ndarray, target: float, own: np.ndarray | None = None,
             max_query_ms: float = 0.0) -> tuple[float, list[dict[str, Any]]]:
        """Pick the search parameters: the cheapest reaching ``target`` recall@10; then dearer ones
        while recall still rises and one query takes at most ``max_query_ms`` (0: stop at the
        target). Missing the target, the best recall tried. Returns the recall and every point
        tried (parameters, recall, ms a query one at a time)."""
        curve: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        for params in self._grid() or [dict(self.search_params)]:
            self.set_params(params)
            point = {"params": dict(params), "recall_at_10": round(self.recall(queries, truth, own), 5),
                     "single_ms": round(self._single_ms(queries), 4)}
            curve.append(point)
            if best is None or best["recall_at_10"] < target:
                best = point if best is None or point["recall_at_10"] >= best["recall_at_10"] else best
            elif point["single_ms"] > max_query_ms:
                break                                   # over the budget: dearer ones only more so
            elif point["recall_at_10"] > best["recall_at_10"]:
                best = point
            elif self.kind != "ivf-pq":
                break                                   # recall no longer rises with the parameter
            if best["recall_at_10"] >= target and (best["recall_at_10"] >= 1.0 or max_query_ms <= 0):
                break
        self.set_params(best["params"])
        return best["recall_at_10"], curve

    def _single_ms(self, queries: np.ndarray) -> float:
        few = queries[:TIMED_QUERIES]
        t0 = time.perf_counter()
        for q in few:
            self.search(q[None], K)
        return (time.perf_counter() - t0) * 1000 / max(1, len(few))

    def _grid(self) -> list[dict[str, int]]:
        if self.kind == "hnsw":
            return [{"efSearch": ef} for ef in EF_SEARCH]
        if self.kind in ("ivf-flat", "ivf-pq"):
            nlist = _faiss().extract_index_ivf(self.index).nlist
            probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if p < nlist] + [nlist]
            if self.kind == "ivf-flat":
                return [{"nprobe": p} for p in probes]
            return [{"nprobe": p, "k_factor": f} for p in probes for f in RERANK_FACTORS if f <= 4 * p or p == nlist]
        return []

    def write(self, path: str | Path) -> None:
        with atomic_file(path) as tmp:
            _faiss().write_index(self.index, str(tmp))


def read_faiss(path: str | Path, kind: str, writable: bool = False) -> Any:
    """Read an index file; IVF types memory-mapped read-only unless it will be added to.

    FAISS's memory-mapped lists start ``prefetch_nthread`` (32) threads on every search to touch
    the probed lists' pages: for one query at a time that multiplied the search time 5-8x
    (Fashion-MNIST, IVF1024 nprobe 128: 0.7 -> 4.6 ms a query). The page cache does the same
    work lazily, so prefetching is turned off."""
    faiss = _faiss()
    if kind.startswith("ivf") and not writable:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
        if hasattr(lists, "prefetch_nthread"):
            lists.prefetch_nthread = 0
        return index
    return faiss.read_index(str(path))


__all__ = ["VectorIndex", "read_faiss", "train_rows"]
