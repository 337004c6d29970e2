"""Inputs of an embedding job, cut into batches that DataLoader workers turn into tensor rows.

Each batch is a dict: ``rows`` (the processor's collated tensor, or None when every input of the
batch was skipped), ``ids`` (which input each row is), ``samples`` (data sources: each row's
:class:`~tether.data.Sample` without its image), and ``skipped`` / ``n_positions`` / ``keys`` in
the form :meth:`tether.data.SkipStats.update` adds up.

Items of a data source are read with the pipeline's unshuffled epoch-0 randomness (seed 0), so a
templated caption is the one ``tether eval`` and the data pipeline (``shuffle=False``) pick.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..data.sample import SAMPLE_FIELDS, Sample, SampleRandom, SkipSample, mix_seed, sample_item
from ..data.skips import skip_reason
from ..data.webdataset import SKIP_REASON_KEY, WebDatasetSource, record_to_sample
from ..errors import MissingProcessorError

Prepare = Callable[[Any], Any]  # one raw input -> one row (modality.prepare bound to the processor)


class _Batch:
    """Accumulates one batch: rows, ids, samples and skip records."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.rows: list[Any] = []
        self.ids: list[str] = []
        self.samples: list[Sample] = []
        self.skipped: list[dict[str, str]] = []
        self.positions = 0

    def add(self, key: str, item: Any, prepare: Prepare, sample: Sample | None = None,
            missing: str = "missing_input") -> None:
        """Prepare one input; a bad one is recorded with its reason instead of raising."""
        self.positions += 1
        if item is None:
            self.skip(key, missing, "nothing to embed")
            return
        try:
            row = prepare(item)
        except (ValueError, OSError) as exc:
            if self.strict:
                raise
            self.skip(key, skip_reason(exc), str(exc))
            return
        self.rows.append(row)
        self.ids.append(key)
        if sample is not None:
            self.samples.append(Sample(sample.key, None, sample.caption, sample.label, sample.extra))

    def skip(self, key: str, reason: str, detail: str) -> None:
        self.skipped.append({"key": key, "reason": reason, "detail": detail})

    def finish(self, collate: Callable[[list[Any]], torch.Tensor], rows: torch.Tensor | None = None) -> dict:
        if rows is None and self.rows:
            rows = collate(self.rows)
        return {"rows": rows, "ids": self.ids, "keys": self.ids, "samples": self.samples,
                "skipped": self.skipped, "n_positions": self.positions}


def item_id(index: int, item: Any) -> str:
    """A path (or a string input) names itself; other in-memory inputs are named by their position."""
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else str(index)


class ItemBatches(Dataset):
    """A list of raw inputs (paths, PIL images, bytes, strings, arrays) in batches."""

    def __init__(self, items: Sequence[Any], prepare: Prepare, collate: Callable, batch_size: int,
                 strict: bool = False) -> None:
        self.items, self.prepare, self.collate, self.batch_size = items, prepare, collate, batch_size
        self.strict = strict

    def __len__(self) -> int:
        return -(-len(self.items) // self.batch_size)

    def __getitem__(self, j: int) -> dict:
        batch = _Batch(self.strict)
        start = j * self.batch_size
        for i in range(start, min(start + self.batch_size, len(self.items))):
            batch.add(item_id(i, self.items[i]), self.items[i], self.prepare)
        return batch.finish(self.collate)


class TensorBatches(Dataset):
    """Already-processed inputs (pixels (N, 3, H, W), token ids (N, L), ...) sliced into batches."""

    def __init__(self, tensor: torch.Tensor, batch_size: int) -> None:
        if tensor.ndim < 2:
            raise ValueError(f"a tensor of processed inputs needs a batch dimension, got shape {tuple(tensor.shape)}")
        self.tensor, self.batch_size = tensor, batch_size

    def __len__(self) -> int:
        return -(-self.tensor.shape[0] // self.batch_size)

    def __getitem__(self, j: int) -> dict:
        lo, hi = j * self.batch_size, min((j + 1) * self.batch_size, self.tensor.shape[0])
        ids = [str(i) for i in range(lo, hi)]
        return {"rows": self.tensor[lo:hi], "ids": ids, "keys": ids, "samples": [], "skipped": [],
                "n_positions": hi - lo}


def _add_sample(batch: _Batch, sample: Sample, modality: str, prepare: Prepare) -> None:
    batch.add(sample.key, sample_item(sample, modality), prepare, sample,
              missing=sample.extra.get(SKIP_REASON_KEY) or "missing_input")


class SourceBatches(Dataset):
    """A map-style tether data source (list, arrays, manifest, folder, ...) in batches.

    Where the source has a vectorised ``pixel_batch`` (ArraySource) and the processor says how
    (``processor.config``: image_size, mean, std), a batch of its images is made in one call.
    """

    def __init__(self, source: Any, modality: str, processor: Any, prepare: Prepare, batch_size: int,
                 strict: bool = False) -> None:
        self.source, self.modality, self.processor = source, modality, processor
        self.prepare, self.batch_size, self.strict = prepare, batch_size, strict
        self.fast = (SAMPLE_FIELDS.get(modality) == "image" and hasattr(source, "pixel_batch")
                     and hasattr(getattr(processor, "config", None), "image_size"))

    def __len__(self) -> int:
        return -(-len(self.source) // self.batch_size)

    def __getitem__(self, j: int) -> dict:
        batch = _Batch(self.strict)
        start = j * self.batch_size
        for i in range(start, min(start + self.batch_size, len(self.source))):
            try:
                sample = self.source.sample(i, SampleRandom(mix_seed(0, 0, i)))
            except SkipSample as exc:
                batch.positions += 1
                batch.skip(exc.key or f"{self.source.name}[{i}]", exc.reason, exc.detail)
                continue
            except Exception as exc:  # one broken sample never stops a job
                batch.positions += 1
                batch.skip(f"{self.source.name}[{i}]", "source_error", f"{type(exc).__name__}: {exc}")
                continue
            # fast path: the row is the index, and pixel_batch makes the whole batch below
            _add_sample(batch, sample, self.modality, (lambda _, i=i: i) if self.fast else self.prepare)
        rows = None
        if self.fast and batch.rows:
            cfg = self.processor.config
            rows = self.source.pixel_batch(batch.rows, cfg.image_size, cfg.mean, cfg.std)
        return batch.finish(self.processor_collate, rows)

    def processor_collate(self, rows: list[Any]) -> torch.Tensor:
        return self.processor.collate(rows)


class StreamBatches(IterableDataset):
    """A webdataset source in batches: shards dealt to workers in order, unshuffled.

    With workers the interleaving of shards depends on their number; ``ids`` say which record
    each row is.
    """

    def __init__(self, source: WebDatasetSource, modality: str, prepare: Prepare, collate: Callable,
                 batch_size: int, strict: bool = False) -> None:
        self.source, self.modality, self.prepare = source, modality, prepare
        self.collate, self.batch_size, self.strict = collate, batch_size, strict

    def __len__(self) -> int:
        return -(-len(self.source) // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        src = self.source
        shards = src.unit_shards(src.shard_order(0, 0, shuffle=False), worker, workers)
        batch = _Batch(self.strict)
        for record in src.unit_records(shards, mix_seed(0, 0, worker)):
            _add_sample(batch, record_to_sample(record), self.modality, self.prepare)
            if batch.positions == self.batch_size:
                yield batch.finish(self.collate)
                batch = _Batch(self.strict)
        if batch.positions:
            yield batch.finish(self.collate)


def is_source(inputs: Any) -> bool:
    """A tether data source: a WebDatasetSource, or anything with ``sample(i, rng)`` and a length."""
    return isinstance(inputs, WebDatasetSource) or (hasattr(inputs, "sample") and hasattr(inputs, "__len__"))


def make_batches(inputs: Any, modality: str, processor: Any, prepare: Prepare, batch_size: int,
                 strict: bool = False) -> Dataset | IterableDataset:
    """The batch dataset for ``inputs``; see :func:`tether.embedding.embed` for what is accepted.

    ``strict``: a bad input raises its error instead of being skipped.
    """
    if isinstance(inputs, torch.Tensor):
        return TensorBatches(inputs, batch_size)
    if processor is None:
        raise MissingProcessorError.for_modality(modality)
    if isinstance(inputs, WebDatasetSource):
        return StreamBatches(inputs, modality, prepare, processor.collate, batch_size, strict)
    if is_source(inputs):
        return SourceBatches(inputs, modality, processor, prepare, batch_size, strict)
    if isinstance(inputs, (str, os.PathLike, bytes, Image.Image)):
        inputs = [inputs]
    if isinstance(inputs, np.ndarray):
        inputs = list(inputs)
    if not isinstance(inputs, Sequence):
        inputs = list(inputs)
    return ItemBatches(inputs, prepare, processor.collate, batch_size, strict)
