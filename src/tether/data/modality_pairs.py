"""Training batches of any two modalities (binding, distillation): (depth, image), (imu, text) ...

:class:`ModalityPairDataset` is :class:`~tether.data.PairDataset` (same order, rank sharding,
worker split, resume arithmetic and skip records: it inherits them) with the per-sample work
done by each modality's own processor instead of the image preprocessor and tokenizer. A
sample's input of a modality is ``sample.image`` for "image", ``sample.caption`` for "text",
``sample.extra[modality]`` otherwise (a manifest's extra column, a built-in source's field).

Batch dict: one collated tensor per modality under its name, plus ``keys``, ``labels``,
``indices``, ``skipped``, ``n_positions``, ``samples_consumed`` as in PairDataset. A sample is
kept only when both of its inputs process; otherwise it is skipped with its reason (the
processor's ValueError/OSError: ``invalid_input`` / ``unreadable_input``; nothing there:
``missing_input``). Map-style sources only (streams of shards carry images and captions).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset

from ..errors import DataError, MissingProcessorError
from .pipeline import PairDataset
from .row_cache import RowCache
from .sample import Sample, SampleRandom, mix_seed, resolve_rank_world, sample_item
from .skips import skip_reason
from .webdataset import SKIP_REASON_KEY, WebDatasetSource

__all__ = ["ModalityPairDataset"]


class ModalityPairDataset(PairDataset):
    """Batches of ``modalities`` (two or more) from a map-style source, processed in the workers.

    ``processors``: modality -> processor (``model.processors``); ``prepare``: modality ->
    ``(processor, item) -> row`` (the modality registry's ``prepare``; default: the processor);
    ``row_cache_mib``: keep the rows of path inputs in memory up to this size (:class:`RowCache`).
    """

    def __init__(self, source: Any, processors: Mapping[str, Any], modalities: Sequence[str], *,
                 prepare: Mapping[str, Any] | None = None, batch_size: int = 64, shuffle: bool = True,
                 seed: int = 0, epoch: int = 0, start: int = 0, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None, num_workers: int | None = None,
                 row_cache_mib: float = 0.0) -> None:
        IterableDataset.__init__(self)
        if isinstance(source, WebDatasetSource) or not (hasattr(source, "sample") and hasattr(source, "__len__")):
            raise DataError(f"{getattr(source, 'name', source)!r}: pairs of {', '.join(modalities)} come from a "
                            "map-style source (a manifest, a built-in dataset, a list), not from shards")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        for modality in modalities:
            if processors.get(modality) is None:
                raise MissingProcessorError.for_modality(modality)
        self.source, self.modalities = source, tuple(modalities)
        self.processors = {m: processors[m] for m in self.modalities}
        self.prepare = dict(prepare or {})
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, int(seed), drop_last
        self.rank, self.world_size = resolve_rank_world(rank, world_size)
        self.num_workers, self.is_stream, self.return_extra = num_workers, False, False
        self.train_transform = False
        self.row_cache = RowCache(row_cache_mib) if row_cache_mib > 0 else None
        self.set_epoch(epoch, start)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def _row(self, modality: str, item: Any) -> Any:
        prepare = self.prepare.get(modality)
        processor = self.processors[modality]
        def compute(item: Any) -> Any:
            return prepare(processor, item) if prepare is not None else processor(item)
        return self.row_cache.get(modality, item, compute) if self.row_cache is not None else compute(item)

    def _rows(self, sample: Sample) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        """(row per modality, None) or (None, (reason, detail)) for a sample to skip."""
        if sample.extra.get(SKIP_REASON_KEY):
            return None, (sample.extra[SKIP_REASON_KEY], str(sample.extra.get("skip_detail", "")))
        rows = {}
        for modality in self.modalities:
            item = sample_item(sample, modality)
            if item is None or (isinstance(item, str) and not item.strip()):
                return None, ("missing_input", f"no {modality} input")
            try:
                rows[modality] = self._row(modality, item)
            except (ValueError, OSError) as exc:
                return None, (skip_reason(exc), f"{modality}: {exc}")
        return rows, None

    def _map_batch(self, indices: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": {m: [] for m in self.modalities}, "keys": [], "labels": [],
                               "indices": [], "extra": [], "skipped": []}
        for i in indices.tolist():
            key = f"{self.name}[{i}]"
            try:
                sample = self.source.sample(i, SampleRandom(mix_seed(self.seed, self.epoch, i)))
            except Exception as exc:  # SkipSample or a broken sample: counted, never fatal
                out["skipped"].append({"key": getattr(exc, "key", None) or key,
                                       "reason": getattr(exc, "reason", "source_error"),
                                       "detail": getattr(exc, "detail", f"{type(exc).__name__}: {exc}")})
                continue
            rows, skip = self._rows(sample)
            if rows is None:
                out["skipped"].append({"key": sample.key, "reason": skip[0], "detail": skip[1]})
                continue
            for modality, row in rows.items():
                out["rows"][modality].append(row)
            out["keys"].append(sample.key)
            out["labels"].append(-1 if sample.label is None else int(sample.label))
            out["indices"].append(i)
        return out

    def _finish(self, out: dict[str, Any], step: int, consumed: int, n_positions: int) -> dict[str, Any]:
        rows = out.pop("rows")
        for modality in self.modalities:
            out[modality] = self.processors[modality].collate(rows[modality]) if rows[modality] else None
        out["labels"] = torch.tensor(out["labels"], dtype=torch.long)
        out["indices"] = torch.tensor(out["indices"], dtype=torch.long)
        out.pop("extra")
        out.update(epoch=self.epoch, step=step, samples_consumed=consumed, n_positions=n_positions)
        return out
