"""Keep processed rows of file inputs in memory: each recording or image decoded once per run.

Binding re-reads the same files every epoch, and for audio the decoding, resampling and
filterbank are most of the work of a step (Tux Paint's spoken descriptions: about 20 ms a
recording against 3 ms for the filterbank alone). The processors that
:class:`~tether.data.ModalityPairDataset` calls are deterministic (no augmentation there), so
a row computed once is the row every later epoch would compute, bit for bit.

Only inputs named by a path (``str`` / ``os.PathLike``) are kept, keyed by (modality, path):
arrays and bytes that a source builds per sample may differ between epochs (augmentation).
Rows are kept up to ``max_mib``; after that new rows are computed and not stored. The cache
lives in the process that runs the processors: with ``workers=0`` it lasts the run, with
workers each one keeps its own for one epoch (the DataLoader starts them afresh).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

__all__ = ["RowCache"]


class RowCache:
    """``get(modality, item, compute)``: the row of a path input, computed at most once."""

    def __init__(self, max_mib: float) -> None:
        self.max_bytes = int(max_mib * 2**20)
        self.store: dict[tuple[str, str], Any] = {}
        self.stored_bytes = self.hits = self.misses = 0

    def get(self, modality: str, item: Any, compute: Callable[[Any], Any]) -> Any:
        if not isinstance(item, (str, os.PathLike)):
            return compute(item)
        key = (modality, os.fspath(item))
        row = self.store.get(key)
        if row is not None:
            self.hits += 1
            return row
        self.misses += 1
        row = compute(item)  # a refused input raises: nothing is stored, the next epoch refuses it again
        size = row.nbytes if isinstance(row, torch.Tensor) else 0
        if isinstance(row, torch.Tensor) and self.stored_bytes + size <= self.max_bytes:
            self.store[key] = row
            self.stored_bytes += size
        return row

    def as_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self.store),
                "stored_mib": round(self.stored_bytes / 2**20, 1)}
