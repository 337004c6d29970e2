"""The DataLoader wrapper around a :class:`~tether.data.PairDataset`: skip statistics and the
resume position (``state_dict`` / ``load_state_dict``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

from torch.utils.data import DataLoader

from ..errors import CheckpointError
from .skips import SkipStats

if TYPE_CHECKING:
    from .pipeline import PairDataset

__all__ = ["PairLoader"]

log = logging.getLogger("tether.data")


class PairLoader:
    """A DataLoader over a :class:`PairDataset` that aggregates skips and tracks the resume position.

    >>> loader = PairLoader(dataset, num_workers=2)
    >>> for epoch in range(3):
    ...     loader.set_epoch(epoch)
    ...     for batch in loader: ...                 # loader.state_dict() -> {"epoch", "samples_consumed"}
    >>> loader.stats.summary()                       # every skip, by reason, across workers and epochs

    ``load_state_dict(state)`` restarts mid-epoch exactly where ``state_dict()`` was taken.
    At the end of each epoch the epoch's skip summary is logged (logger ``tether.data``).
    """

    def __init__(self, dataset: PairDataset, num_workers: int = 0, *, pin_memory: bool = False,
                 prefetch_factor: int | None = None, timeout: float = 0, multiprocessing_context: Any = None):
        self.dataset = dataset
        self.num_workers = num_workers
        dataset.num_workers = num_workers
        self.kwargs = dict(batch_size=None, num_workers=num_workers, pin_memory=pin_memory, timeout=timeout,
                           multiprocessing_context=multiprocessing_context, persistent_workers=False)
        if num_workers > 0 and prefetch_factor is not None:
            self.kwargs["prefetch_factor"] = prefetch_factor
        self.stats = SkipStats()
        self.epoch_stats = SkipStats()
        self.samples_consumed = dataset.start

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.dataset.set_epoch(epoch, start)
        self.samples_consumed = start

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.dataset.epoch, "samples_consumed": self.samples_consumed, "seed": self.dataset.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if "seed" in state and int(state["seed"]) != self.dataset.seed:
            raise CheckpointError(f"state was recorded with seed {state['seed']}, dataset has seed {self.dataset.seed}")
        self.set_epoch(int(state["epoch"]), int(state["samples_consumed"]))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.epoch_stats = SkipStats()
        loader = DataLoader(self.dataset, **self.kwargs)
        for batch in loader:
            self.epoch_stats.update(batch)
            self.stats.update(batch)
            self.samples_consumed = batch["samples_consumed"]
            yield batch
        level = logging.WARNING if self.epoch_stats.skipped else logging.INFO
        log.log(level, "epoch %d: %s", self.dataset.epoch, self.epoch_stats.summary(self.dataset.name))
