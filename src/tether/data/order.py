"""Where every position of an epoch goes: the epoch's permutation, and which output step a
DataLoader worker's batch lands on.  Index arithmetic only (see :mod:`tether.data.pipeline`
for the order it implements)."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from .sample import mix_seed

__all__ = ["epoch_permutation", "key_int", "round_robin_steps"]


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The fixed order of ``n`` indices for ``(seed, epoch)`` (numpy PCG64; identity without shuffle)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.Generator(np.random.PCG64(mix_seed(seed, epoch, 0x9E37))).permutation(n).astype(np.int64)


def key_int(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def round_robin_steps(counts: Sequence[int], worker: int) -> list[int]:
    """Output positions of ``worker``'s batches when a DataLoader interleaves workers round-robin
    and workers with ``counts[v]`` batches drop out once exhausted."""
    steps = []
    for t in range(counts[worker]):
        before = sum(min(c, t) for c in counts) + sum(1 for v in range(worker) if counts[v] > t)
        steps.append(before)
    return steps
