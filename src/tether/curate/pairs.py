"""Every pair of rows with cosine similarity >= a threshold, without the N x N matrix.

What "cosine" means here (so that "exact" has one meaning): rows are L2-normalised in float32
(:func:`normalize_rows`); the cosine of rows i and j is the float64 value of the exact dot product
of those float32 rows (each product of two float32 numbers is exact in float64, and
``math.fsum`` rounds the sum once). A pair is a duplicate when that value is ``>= threshold``.

How it is found fast: blocks of rows are multiplied in float32 (BLAS). A float32 dot product of
D terms of unit vectors is off by at most ``gamma_D = D u / (1 - D u)`` (u = 2^-24, any summation
order), so :func:`float32_tolerance` takes ``tol = 2 (D + 2) 2^-24`` (6.1e-5 at D = 512):
products ``>= threshold + tol`` are pairs, products ``< threshold - tol`` are not, and only the
few in between are recomputed exactly. The result is the brute-force pair set, pairs exactly at
the threshold included.

Exact mode prunes with k-means (FAISS): each row x is compared only with the clusters B whose
centroid c_B could hold a partner, by the triangle inequality on angles,
``angle(x, y) >= angle(x, c_B) - r_B`` (r_B: the largest angle of B's members to c_B), with the
float32 tolerance added on every side so that no pair is lost. Cluster mode (SemDeDup) compares
rows only within their own cluster: faster, and it misses the pairs that straddle clusters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["Pairs", "normalize_rows", "float32_tolerance", "exact_cosine", "kmeans", "brute_force_pairs",
           "exact_pairs", "cluster_pairs"]

BLOCK = 4096  # rows per matrix-product block: 4096 x 4096 float32 = 64 MiB


@dataclass
class Pairs:
    """Pairs (i < j) with their cosine (float64), plus the k-means clustering used, if any."""

    i: np.ndarray
    j: np.ndarray
    sim: np.ndarray
    assign: np.ndarray | None = None      # cluster of each row
    centroids: np.ndarray | None = None   # (k, D) float32, unit rows

    def __len__(self) -> int:
        return len(self.i)

    def at_least(self, threshold: float) -> "Pairs":
        """The pairs with cosine >= ``threshold`` (a threshold at or above the one they were found at)."""
        m = self.sim >= threshold
        return Pairs(self.i[m], self.j[m], self.sim[m], self.assign, self.centroids)


def check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not -1.0 <= t <= 1.0:
        raise ConfigError(f"threshold must lie in [-1, 1] (a cosine similarity), got {threshold}")
    return t


def normalize_rows(embeddings: Any, name: str = "embeddings") -> np.ndarray:
    """(N, D) float32, C-contiguous, rows L2-normalised; one-line errors for NaN/inf or zero rows."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] == 0:
        raise DataError(f"{name} must be a 2-D (rows, dim) matrix, got shape {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty (0 rows): nothing to compare")
    norms = np.linalg.norm(x, axis=1)
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(f"{name}: {len(rows)} row(s) with NaN/inf values or zero norm, first at row(s) "
                         f"{rows[:5].tolist()}")
    return np.ascontiguousarray(x / norms[:, None], dtype=np.float32)


def float32_tolerance(dim: int) -> float:
    """Bound on |float32 dot - exact dot| for unit rows of width ``dim`` (twice gamma_{D+2})."""
    return 2.0 * (dim + 2) * 2.0 ** -24


def exact_cosine(x: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The defining cosine of pairs (i, j) of float32 unit rows: exact products, one rounding (fsum)."""
    out = np.empty(len(i), dtype=np.float64)
    for k, (a, b) in enumerate(zip(np.asarray(i).tolist(), np.asarray(j).tolist())):
        out[k] = math.fsum((x[a].astype(np.float64) * x[b].astype(np.float64)).tolist())
    return out


def _float64_cosine(x: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """float64 dot products of float32 rows (error < 1e-13): the recorded similarity of clear pairs."""
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), 65536):
        a, b = x[i[s:s + 65536]].astype(np.float64), x[j[s:s + 65536]].astype(np.float64)
        out[s:s + 65536] = np.einsum("ij,ij->i", a, b)
    return out


class _Collector:
    """Accumulates the pairs of float32 similarity blocks, deciding the uncertain band exactly."""

    def __init__(self, x: np.ndarray, threshold: float) -> None:
        self.x, self.threshold = x, threshold
        self.tol = float32_tolerance(x.shape[1])
        self.i: list[np.ndarray] = []
        self.j: list[np.ndarray] = []
        self.band = 0  # pairs recomputed exactly

    def add(self, rows: np.ndarray, cols: np.ndarray, upper: bool) -> None:
        """Pairs between rows and cols (global indices); ``upper``: the same list, pairs p < q only."""
        s = self.x[rows] @ self.x[cols].T
        if upper:
            s[np.tril_indices(len(rows), 0, len(cols))] = -np.inf
        p, q = np.nonzero(s >= self.threshold - self.tol)
        if not len(p):
            return
        sure = s[p, q] >= self.threshold + self.tol
        gi, gj = rows[p], cols[q]
        if not sure.all():
            unsure = ~sure
            self.band += int(unsure.sum())
            sure[unsure] = exact_cosine(self.x, gi[unsure], gj[unsure]) >= self.threshold
        gi, gj = gi[sure], gj[sure]
        self.i.append(np.minimum(gi, gj))
        self.j.append(np.maximum(gi, gj))

    def result(self, assign=None, centroids=None) -> Pairs:
        i = np.concatenate(self.i) if self.i else np.zeros(0, np.int64)
        j = np.concatenate(self.j) if self.j else np.zeros(0, np.int64)
        order = np.lexsort((j, i))
        i, j = i[order].astype(np.int64), j[order].astype(np.int64)
        return Pairs(i, j, _float64_cosine(self.x, i, j), assign, centroids)


def _blocks(index: np.ndarray, block: int) -> Iterator[np.ndarray]:
    for s in range(0, len(index), block):
        yield index[s:s + block]


def _scan(col: _Collector, rows: np.ndarray, cols: np.ndarray | None, block: int) -> None:
    """All pairs within ``rows`` (cols None) or between ``rows`` and ``cols``, block by block."""
    rb = list(_blocks(rows, block))
    for a, r in enumerate(rb):
        if cols is None:
            col.add(r, r, upper=True)
            for c in rb[a + 1:]:
                col.add(r, c, upper=False)
        else:
            for c in _blocks(cols, block):
                col.add(r, c, upper=False)


def _progress(iterable, total: int, desc: str, progress: bool, unit: str = "cluster"):
    if not progress:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)


def brute_force_pairs(x: np.ndarray, threshold: float, *, block: int = BLOCK) -> Pairs:
    """Every pair, all N (N - 1) / 2 products (blocked): the reference the other modes are held to."""
    col = _Collector(x, check_threshold(threshold))
    _scan(col, np.arange(len(x)), None, block)
    return col.result()


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, niter: int = 20, max_points_per_centroid: int = 256,
           assign: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Spherical k-means (FAISS) on unit rows -> (unit centroids (k, D), nearest centroid of each row)."""
    try:
        import faiss
    except ImportError as e:
        raise ImportError("deduplication needs FAISS: pip install faiss-cpu (or tether[curate])") from e
    k = max(1, min(int(k), len(x)))
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1)
    km.train(x)
    centroids = normalize_rows(km.centroids, "centroids")
    if not assign:
        return centroids, None
    nearest = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), BLOCK):
        nearest[s:s + BLOCK] = np.argmax(x[s:s + BLOCK] @ centroids.T, axis=1)
    return centroids, nearest


def default_clusters(n: int) -> int:
    """sqrt(N) clusters: balances the row-to-centroid products against the within-cluster ones."""
    return max(1, int(round(math.sqrt(n))))


def _members(assign: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(k + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(k)]


def cluster_pairs(x: np.ndarray, threshold: float, *, n_clusters: int | None = None, seed: int = 0,
                  niter: int = 20, block: int = BLOCK, progress: bool = False) -> Pairs:
    """SemDeDup: k-means, then pairs within each cluster only (misses pairs across clusters)."""
    col = _Collector(x, check_threshold(threshold))
    centroids, assign = kmeans(x, n_clusters or default_clusters(len(x)), seed=seed, niter=niter)
    members = _members(assign, len(centroids))
    for rows in _progress(members, len(members), "dedup (cluster)", progress):
        if len(rows) > 1:
            _scan(col, rows, None, block)
    return col.result(assign, centroids)


def _assign_top(x: np.ndarray, centroids: np.ndarray, top: int, progress: bool = False) -> tuple[np.ndarray, ...]:
    """One pass over the rows: nearest centroid, its cosine, and the ``top`` largest cosines with their ids."""
    n, k = len(x), len(centroids)
    t = min(top, k)
    assign, own = np.empty(n, np.int64), np.empty(n, np.float32)
    ids, sims = np.empty((n, t), np.int64), np.empty((n, t), np.float32)
    starts = range(0, n, BLOCK)
    for s in _progress(starts, len(starts), "dedup (exact, rows to centroids)", progress, "block"):
        block = x[s:s + BLOCK] @ centroids.T
        part = np.argpartition(-block, t - 1, axis=1)[:, :t] if t < k else np.broadcast_to(np.arange(k), block.shape)
        ids[s:s + BLOCK] = part
        sims[s:s + BLOCK] = np.take_along_axis(block, part, axis=1)
        assign[s:s + BLOCK] = np.argmax(block, axis=1)
        own[s:s + BLOCK] = block[np.arange(len(block)), assign[s:s + BLOCK]]
    return assign, own, ids, sims


def _candidates(x: np.ndarray, centroids: np.ndarray, assign: np.ndarray, ids: np.ndarray, sims: np.ndarray,
                need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, cluster) pairs with cluster > the row's own and cosine to its centroid >= ``need[cluster]``.

    From the stored top cosines; a row whose smallest stored cosine still reaches some cluster's
    ``need`` might reach clusters it did not store, so its products with every centroid are redone."""
    hit = (sims >= need[ids]) & (ids > assign[:, None])
    rows, cols = np.nonzero(hit)
    out_r, out_c = [rows], [ids[rows, cols]]
    if ids.shape[1] < len(centroids):
        redo = np.flatnonzero(sims.min(axis=1) >= need.min())
        for s in range(0, len(redo), BLOCK):
            r = redo[s:s + BLOCK]
            full = (x[r] @ centroids.T >= need[None, :]) & (np.arange(len(centroids))[None, :] > assign[r, None])
            fr, fc = np.nonzero(full)
            out_r.append(r[fr])
            out_c.append(fc)
        if len(redo):  # the redone rows' stored hits are in the full products too
            keep = ~np.isin(rows, redo)
            out_r[0], out_c[0] = rows[keep], out_c[0][keep]
    return np.concatenate(out_r), np.concatenate(out_c)


def exact_pairs(x: np.ndarray, threshold: float, *, n_clusters: int | None = None, seed: int = 0,
                niter: int = 10, block: int = BLOCK, top: int = 8, progress: bool = False) -> Pairs:
    """Every pair with cosine >= threshold (the brute-force set), pruned by clusters (module docstring).

    Row x in cluster A is compared with cluster B's members only if
    ``angle(x, c_B) - r_B <= arccos(threshold)``, i.e. ``cos(x, c_B) >= cos(arccos(threshold) + r_B)``,
    every cosine and radius widened by the float32 tolerance."""
    threshold = check_threshold(threshold)
    k = n_clusters or 2 * default_clusters(len(x))  # more, tighter clusters than cluster mode: sharper bounds
    if k <= 1 or len(x) <= block:
        return brute_force_pairs(x, threshold, block=block)
    col = _Collector(x, threshold)
    centroids, _ = kmeans(x, k, seed=seed, niter=niter, max_points_per_centroid=64, assign=False)
    k, tol = len(centroids), col.tol
    assign, own, ids, sims = _assign_top(x, centroids, top, progress)
    members = _members(assign, k)
    lowest = np.full(k, 1.0)  # smallest cosine of a member to its centroid -> radius, rounded up
    np.minimum.at(lowest, assign, own.astype(np.float64))
    radius = np.arccos(np.clip(lowest - tol, -1.0, 1.0))
    reach = np.arccos(max(-1.0, threshold - tol)) + 1e-9  # largest angle of a pair, rounded up
    need = np.where(reach + radius >= np.pi, -np.inf, np.cos(np.minimum(reach + radius, np.pi)) - tol - 1e-9)
    rows, near = _candidates(x, centroids, assign, ids, sims, need)
    order = np.lexsort((near, assign[rows]))
    rows, near = rows[order], near[order]
    starts = np.flatnonzero(np.r_[True, (near[1:] != near[:-1]) | (assign[rows][1:] != assign[rows][:-1])])
    groups = np.split(np.arange(len(rows)), starts[1:]) if len(rows) else []
    for a in _progress(range(k), k, "dedup (exact, within clusters)", progress):
        if len(members[a]) > 1:
            _scan(col, members[a], None, block)
    for g in _progress(groups, len(groups), "dedup (exact, across clusters)", progress, "cluster pair"):
        _scan(col, rows[g], members[near[g[0]]], block)
    return col.result(assign, centroids)
