"""Semantic deduplication: duplicate pairs -> groups (connected components) -> one member kept per group.

``find_duplicates(embeddings, threshold, mode="exact", keep="first")`` returns a group id per row
(-1 for rows in no group; groups numbered 0, 1, ... in the order of their first row) and a
boolean keep mask. Exactly one member of every group is kept, chosen by ``keep``:

* ``first``: the first in input order;
* ``score``: the highest CLIP score (``scores=``, e.g. from ``tether score``);
* ``centroid``: the member most similar to the group's reference point, ``farthest``: the least
  similar (SemDeDup's ``keep_hard`` choice: keep the hardest, least typical example). The
  reference point is the member's k-means centroid in cluster mode (SemDeDup's) and the mean of
  the group's unit embeddings in exact mode (which has no cluster of its own).

Ties go to the first in input order. Unlike SemDeDup's reference code, which removes an item when
any earlier item in its cluster's sort order is a duplicate (so a chain a~b~c with a !~ c can keep
two), a group here is a connected component of the duplicate graph and keeps exactly one member.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .pairs import Pairs, check_threshold, cluster_pairs, exact_pairs, normalize_rows

__all__ = ["MODES", "KEEP_RULES", "DedupResult", "find_duplicates", "deduplicate", "group_pairs",
           "choose_kept", "removed_fraction"]

MODES = ("exact", "cluster")
KEEP_RULES = ("first", "score", "centroid", "farthest")


@dataclass
class DedupResult:
    """Groups and keep decisions of one threshold, with the pairs behind them."""

    group_ids: np.ndarray   # (N,) int64, -1 for rows in no group
    keep: np.ndarray        # (N,) bool
    kept_row: np.ndarray    # (N,) int64: the kept member of each row's group (the row itself if none)
    sim_to_kept: np.ndarray  # (N,) float64 cosine to the kept member (1 for kept rows)
    pairs: Pairs
    threshold: float
    mode: str
    keep_rule: str

    @property
    def n_groups(self) -> int:
        return int(self.group_ids.max()) + 1 if len(self.group_ids) else 0

    @property
    def n_removed(self) -> int:
        return int((~self.keep).sum())


def group_pairs(pairs: Pairs, n: int) -> np.ndarray:
    """Connected components of the pair graph: group id per row, -1 for rows in no pair."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    groups = np.full(n, -1, dtype=np.int64)
    if not len(pairs):
        return groups
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs.i, pairs.j)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    in_pair = np.zeros(n, bool)
    in_pair[pairs.i] = in_pair[pairs.j] = True
    # renumber the components that have pairs 0, 1, ... in the order of their first row
    first_rows = np.flatnonzero(in_pair)
    uniq, first = np.unique(labels[first_rows], return_index=True)
    order = np.argsort(first_rows[first], kind="stable")
    renumber = np.full(labels.max() + 1, -1, dtype=np.int64)
    renumber[uniq[order]] = np.arange(len(order))
    groups[in_pair] = renumber[labels[in_pair]]
    return groups


def _reference_similarity(x: np.ndarray, groups: np.ndarray, rule_mode: str, pairs: Pairs) -> np.ndarray:
    """Each grouped row's cosine to its group's reference point (see the module docstring)."""
    rows = np.flatnonzero(groups >= 0)
    sim = np.zeros(len(x))
    if rule_mode == "cluster" and pairs.centroids is not None:
        ref = pairs.centroids[pairs.assign[rows]].astype(np.float64)
    else:
        g = groups[rows]
        sums = np.zeros((g.max() + 1, x.shape[1])) if len(g) else np.zeros((0, x.shape[1]))
        np.add.at(sums, g, x[rows].astype(np.float64))
        ref = sums[g] / np.linalg.norm(sums[g], axis=1, keepdims=True).clip(1e-300)
    sim[rows] = np.einsum("ij,ij->i", x[rows].astype(np.float64), ref)
    return sim


def choose_kept(x: np.ndarray, groups: np.ndarray, keep: str, *, scores: np.ndarray | None = None,
                mode: str = "exact", pairs: Pairs | None = None) -> np.ndarray:
    """The kept row of every group (index g -> row), by the ``keep`` rule; ties to the first row."""
    if keep not in KEEP_RULES:
        raise ConfigError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    rows = np.flatnonzero(groups >= 0)
    if keep == "first":
        value = np.zeros(len(x))
    elif keep == "score":
        if scores is None:
            raise DataError("keep='score' needs the CLIP scores (run `tether score DIR` first)")
        value = -np.asarray(scores, dtype=np.float64)  # highest score first
        if value.shape != (len(x),):
            raise DataError(f"scores has shape {value.shape}, expected ({len(x)},): one per row")
        value = np.where(np.isnan(value), np.inf, value)  # rows without a score go last
    else:
        sim = _reference_similarity(x, groups, mode, pairs or Pairs(*(np.zeros(0, np.int64),) * 3))
        value = -sim if keep == "centroid" else sim
    order = np.lexsort((rows, value[rows], groups[rows]))  # by group, then value, then input order
    g_sorted = groups[rows][order]
    first = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    return rows[order][first]


def deduplicate(embeddings: Any, threshold: float, mode: str = "exact", keep: str = "first", *,
                scores: Any = None, n_clusters: int | None = None, seed: int = 0, pairs: Pairs | None = None,
                progress: bool = False) -> DedupResult:
    """Find the duplicate pairs (or take ``pairs`` found at a threshold <= this one), group, keep one each."""
    threshold = check_threshold(threshold)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if keep not in KEEP_RULES:
        raise ConfigError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    x = normalize_rows(embeddings)
    if keep == "score" and scores is None:
        raise DataError("keep='score' needs the CLIP scores (run `tether score DIR` first)")
    if pairs is None:
        find = exact_pairs if mode == "exact" else cluster_pairs
        pairs = find(x, threshold, n_clusters=n_clusters, seed=seed, progress=progress)
    else:
        pairs = pairs.at_least(threshold)
    groups = group_pairs(pairs, len(x))
    kept_rows = choose_kept(x, groups, keep, scores=scores, mode=mode, pairs=pairs)
    keep_mask = groups < 0
    keep_mask[kept_rows] = True
    kept_row = np.arange(len(x))
    grouped = groups >= 0
    kept_row[grouped] = kept_rows[groups[grouped]]
    sim = np.ones(len(x))
    removed = np.flatnonzero(~keep_mask)
    sim[removed] = np.einsum("ij,ij->i", x[removed].astype(np.float64), x[kept_row[removed]].astype(np.float64))
    return DedupResult(groups, keep_mask, kept_row, sim, pairs, threshold, mode, keep)


def find_duplicates(embeddings: Any, threshold: float, mode: str = "exact", keep: str = "first", *,
                    scores: Any = None, n_clusters: int | None = None, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Group ids (-1: no group) and the keep mask (one member of each group); see the module docstring."""
    result = deduplicate(embeddings, threshold, mode, keep, scores=scores, n_clusters=n_clusters, seed=seed)
    return result.group_ids, result.keep


def removed_fraction(pairs: Pairs, n: int, thresholds: Sequence[float]) -> list[dict[str, float]]:
    """For each threshold (>= the one the pairs were found at): pairs, groups, rows removed, fraction."""
    rows = []
    for t in sorted(set(float(t) for t in thresholds)):
        sub = pairs.at_least(t)
        groups = group_pairs(sub, n)
        n_groups = int(groups.max()) + 1 if len(groups) and groups.max() >= 0 else 0
        removed = int((groups >= 0).sum()) - n_groups
        rows.append({"threshold": t, "pairs": len(sub), "groups": n_groups, "removed": removed,
                     "fraction_removed": removed / n if n else 0.0})
    return rows
