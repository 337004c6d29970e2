"""An opened index folder: search each modality's index, look up metadata and vectors by row id.

``open_index(dir)`` is what ``tether serve`` and Python callers use. Searches are read-only and
may run from several threads at once. :meth:`SearchIndex.refresh` reopens the folder when
``index_info.json`` changed (``tether index`` added parts), so a server picks up new rows without a
restart and keeps answering from the old ones meanwhile.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from .build import INFO_FILE, read_info
from .store import MetadataStore, VectorStore
from .vector_index import VectorIndex, read_faiss


@dataclass
class Hits:
    """One query's results, best first: row ids and inner products (cosine on unit vectors)."""

    ids: list[int]
    scores: list[float]


class _State:
    """Everything opened from one version of index_info.json."""

    def __init__(self, root: Path) -> None:
        self.info = read_info(root)
        self.stamp = (root / INFO_FILE).stat().st_mtime_ns
        parts, rows = self.info["parts"], self.info["rows"]
        self.n = int(sum(rows))
        self.stores = {m: VectorStore(root, m, parts, rows) for m in self.info["indexes"]}
        self.indexes = {m: VectorIndex(read_faiss(root / e["file"], e["type"]), e["type"], e["key"],
                                       e["search_params"], self.stores[m])
                        for m, e in self.info["indexes"].items()}
        self.metadata = MetadataStore(root, parts, rows)


class SearchIndex:
    """An index folder opened for search (see :func:`open_index`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._state = _State(self.root)

    @property
    def info(self) -> dict[str, Any]:
        return self._state.info

    @property
    def modalities(self) -> list[str]:
        return list(self._state.indexes)

    @property
    def dim(self) -> int:
        return int(self._state.info["dim"])

    def __len__(self) -> int:
        return self._state.n

    @property
    def stamp(self) -> int:
        """index_info.json's modification time (ns) when the open version was read: changes on refresh."""
        return self._state.stamp

    def refresh(self) -> bool:
        """Reopen if index_info.json changed since it was read; True if it did."""
        try:
            stamp = (self.root / INFO_FILE).stat().st_mtime_ns
        except OSError:
            return False
        if stamp == self._state.stamp:
            return False
        with self._lock:
            if stamp != self._state.stamp:
                self._state = _State(self.root)
        return True

    def _modality(self, modality: str) -> str:
        if modality not in self._state.indexes:
            raise InputError(f"no {modality!r} index here (this index has: {', '.join(self._state.indexes)})")
        return modality

    def search(self, modality: str, queries: np.ndarray, k: int = 10) -> list[Hits]:
        """The ``k`` rows of ``modality`` nearest each query vector (rows of ``queries``)."""
        state = self._state
        index = state.indexes[self._modality(modality)]
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.shape[1] != self.dim:
            raise InputError(f"query vectors have width {q.shape[1]}, the index holds width {self.dim}")
        if not np.all(np.isfinite(q)):
            raise InputError("query vectors must be finite numbers")
        scores, ids = index.search(q, min(int(k), state.n))
        valid = (ids >= 0) & (ids < state.n)       # FAISS pads with -1; rows added after this state: never
        return [Hits(i[v].tolist(), s[v].tolist()) for i, s, v in zip(ids, scores, valid)]

    def vectors(self, modality: str, ids: Sequence[int]) -> np.ndarray:
        """Stored (float32) vectors of rows ``ids``."""
        return self._state.stores[self._modality(modality)].take(ids)

    def metadata(self, ids: Sequence[int], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Metadata rows by id, reading only those rows from the memory-mapped files."""
        return self._state.metadata.rows(ids, columns)

    @property
    def columns(self) -> list[str]:
        return self._state.metadata.columns

    def column(self, name: str) -> list[Any]:
        return self._state.metadata.column(name)


def open_index(root: str | Path) -> SearchIndex:
    """Open an index folder written by :func:`tether.search.build_index` / ``tether index``."""
    return SearchIndex(root)


__all__ = ["Hits", "SearchIndex", "open_index"]
