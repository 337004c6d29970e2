"""Image-text batches for training: order, sharding over ranks and workers, skips, resume.

:class:`PairDataset` is an ``IterableDataset`` of **whole batches** (use it with
``DataLoader(batch_size=None)``, or :class:`PairLoader`).  Workers decode images, apply
the eval or train transform and tokenize, so the main process only receives tensors.

Order (map-style sources: lists, arrays, manifests, folders)
    For ``(seed, epoch)`` the epoch is a fixed permutation ``perm`` of the source's indices
    (identity if ``shuffle=False``), of length ``n_epoch``: ``N`` rounded down to a multiple of
    ``batch_size * world_size`` with ``drop_last``, otherwise rounded *up* to a multiple of
    ``world_size`` by wrapping around (like ``DistributedSampler``) so every rank gets the same
    number of batches.  Global position ``g`` belongs to rank ``g % world_size``; a rank's
    ``l``-th local position is ``g = l * world_size + rank``.  Local batch ``j`` holds local
    positions ``[j*B, (j+1)*B)`` and is built by DataLoader worker ``j % num_workers``; the
    DataLoader's round-robin returns them in order ``j = 0, 1, 2...``.  Global step ``j`` (all
    ranks together) therefore consumes the contiguous block ``[j*B*W, (j+1)*B*W)`` of the
    permutation, and the order is independent of the number of workers.

Resume
    Every batch carries ``samples_consumed``, the number of epoch positions consumed by all
    ranks once this step is done.  ``set_epoch(epoch, start=samples_consumed)`` restarts the
    stream there: the remaining batches are exactly the tail of the uninterrupted stream (index
    arithmetic only; nothing before ``start`` is read or decoded).  Map-style sources accept
    any ``start`` that is a multiple of ``world_size``.  Skipped samples still consume their
    position, so the arithmetic never depends on what was skipped.

Order and resume (WebDatasetSource)
    Shards are permuted per ``(seed, epoch)`` and dealt to ``world_size * num_workers`` units
    (see :mod:`tether.data.webdataset`); each worker cuts its unit's record stream into batches
    of ``B`` records, and the DataLoader interleaves workers round-robin.  The order depends on
    ``num_workers`` (give the same value when resuming).  Because record counts per shard are
    known (index.json or a header scan), the step index of every worker batch is computed up
    front: ``start`` must be a multiple of ``B * world_size`` (a step boundary) and each worker
    skips its share of the consumed batches by whole shards plus a record count, reading no image
    data (with a shuffle buffer the skipped records are read, not decoded, to replay the buffer).
    With ``world_size > 1`` every rank yields ``min`` over ranks of the batch counts (equalised
    from the counts, so no rank waits forever in a collective).

Skips
    Corrupt or missing images, empty or missing captions, unreadable shards and source errors
    never stop the stream: each batch lists the positions it skipped in ``batch["skipped"]``
    (``{"key", "reason", "detail"}``).  Batches may therefore be shorter than ``batch_size``,
    even empty (``n = 0``; a worker must still emit it to keep the round-robin aligned).  The
    main process aggregates them with :class:`SkipStats` (:class:`PairLoader` does this), which
    works with any number of worker processes and counts exactly the consumed positions.

Batch dict: ``pixels`` (n, 3, S, S) float32; ``input_ids`` (n, L) long if a tokenizer was given;
``texts`` (captions); ``labels`` (n,) long, -1 where unknown; ``keys``; ``indices`` (n,) source
index (-1 for shards); ``epoch``, ``step`` (this rank's batch number in the epoch),
``samples_consumed``, ``n_positions`` (positions covered on this rank), ``skipped``; ``extra``
(list of dicts) with ``return_extra=True``.

Randomness per sample (caption template choice, random-resized-crop) is seeded from
``(seed, epoch, source index)`` (shards: the key), so it does not depend on workers or resume.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..preprocess import ImageDecodeError, ImagePreprocessor, PreprocessConfig
from .loader import PairLoader
from .order import epoch_permutation, key_int, round_robin_steps
from .sample import Sample, SampleRandom, SkipSample, mix_seed, resolve_rank_world
from .skips import SkipStats, skip_reason
from .sources import Source
from .webdataset import SKIP_REASON_KEY, WebDatasetSource, record_to_sample

# PairLoader, SkipStats and epoch_permutation live in loader.py, skips.py and order.py; they stay
# importable from here, where they used to be defined.
__all__ = ["PairDataset", "PairLoader", "SkipStats", "epoch_permutation"]



class PairDataset(IterableDataset):
    """Batches of (pixels, token ids or captions, labels) from a source, deterministic and resumable.

    Args:
        source: a map-style :class:`~tether.data.Source` (list, arrays, manifest, folder, Tux Paint
            stamps...) or a :class:`~tether.data.WebDatasetSource`.
        preprocess: an :class:`ImagePreprocessor`, a :class:`PreprocessConfig`, or an image size.
        tokenizer: a :class:`tether.tokenizer.Tokenizer` (tokenized in the workers) or None (only
            ``texts``).
        batch_size: samples per rank per step (positions; skips make batches shorter).
        shuffle: permute the epoch (map-style) / the shards (webdataset) per ``(seed, epoch)``.
        drop_last: drop the incomplete last step (map-style: of the whole epoch; webdataset: each
            worker's last partial batch).
        train_transform: random-resized-crop (``crop_scale``, ``crop_ratio``) instead of the eval
            transform, seeded per sample.
        rank, world_size: explicit distributed position (default: torch.distributed's, if
            initialised, read here in the main process).
        num_workers: the DataLoader's worker count (set by :class:`PairLoader`); needed for
            ``len()`` and checked in workers for webdataset sources, whose order depends on it.
        fast_arrays: use :meth:`ArraySource.pixel_batch` (vectorised) for eval transforms.
        token_cache: captions whose ids each worker keeps (0: none); template captions repeat,
            and tokenizing is then the main cost of a batch.
    """

    def __init__(self, source: Source | WebDatasetSource, preprocess: ImagePreprocessor | PreprocessConfig | int,
                 tokenizer: Any = None, *, batch_size: int = 64, shuffle: bool = True, seed: int = 0,
                 epoch: int = 0, start: int = 0, drop_last: bool = False, train_transform: bool = False,
                 crop_scale: tuple[float, float] = (0.9, 1.0),
                 crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), rank: int | None = None,
                 world_size: int | None = None, num_workers: int | None = None, return_extra: bool = False,
                 fast_arrays: bool = True, token_cache: int = 20000):
        super().__init__()
        if isinstance(preprocess, int) and not isinstance(preprocess, bool):
            preprocess = PreprocessConfig(image_size=preprocess)
        if isinstance(preprocess, PreprocessConfig):
            preprocess = ImagePreprocessor(preprocess)
        if not isinstance(preprocess, ImagePreprocessor):
            raise TypeError("preprocess must be an ImagePreprocessor, PreprocessConfig or int, got "
                            f"{type(preprocess).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(source, WebDatasetSource) and not (hasattr(source, "sample") and hasattr(source, "__len__")):
            raise TypeError(f"source must be a tether.data Source (len + sample(i, rng)) or a WebDatasetSource, got "
                            f"{type(source).__name__}; wrap a list of Samples in ListSource")
        self.source = source
        self.preprocessor = preprocess
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.train_transform, self.crop_scale, self.crop_ratio = train_transform, crop_scale, crop_ratio
        self.rank, self.world_size = resolve_rank_world(rank, world_size)
        self.num_workers = num_workers
        self.return_extra = return_extra
        self.fast_arrays = fast_arrays
        self.token_cache = int(token_cache)
        self._cache: dict[str, torch.Tensor] | None = None
        self.is_stream = isinstance(source, WebDatasetSource)
        self._transform = None
        self._generator: torch.Generator | None = None
        self.set_epoch(epoch, start)

    @property
    def name(self) -> str:
        return getattr(self.source, "name", type(self.source).__name__)

    def __getstate__(self) -> dict[str, Any]:
        # per-process state (a closure over a generator, the token cache) is rebuilt in each worker
        state = dict(self.__dict__)
        state.update(_transform=None, _generator=None, _cache=None)
        return state

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and the position (samples consumed, all ranks) to start from.

        Takes effect for DataLoader iterators created afterwards (do not use
        ``persistent_workers=True``: persistent workers keep their old copy of the dataset).
        """
        if int(epoch) < 0 or int(start) < 0:
            raise ValueError(f"epoch and start must be >= 0, got epoch={epoch}, start={start}")
        self.epoch, self.start = int(epoch), int(start)

    # --------------------------------------------------------------------- plans
    def epoch_length(self) -> int:
        """Positions in this epoch, all ranks together (map-style sources)."""
        n, bw, w = len(self.source), self.batch_size * self.world_size, self.world_size
        return n // bw * bw if self.drop_last else -(-n // w) * w

    def _map_plan(self) -> tuple[int, int, int]:
        n_epoch, w = self.epoch_length(), self.world_size
        if self.start % w:
            raise ValueError(f"{self.name}: start={self.start} must be a multiple of world_size={w}")
        if self.start > n_epoch:
            raise ValueError(f"{self.name}: start={self.start} is beyond the epoch's {n_epoch} positions")
        n_local, local_start = n_epoch // w, self.start // w
        return n_epoch, local_start, -(-(n_local - local_start) // self.batch_size)

    def _stream_plan(self, workers: int) -> tuple[list[int], list[list[int]], int, int]:
        """-> (shard order, batch counts [rank][worker], steps per rank, start step)."""
        src, b, w = self.source, self.batch_size, self.world_size
        if self.start % (b * w):
            raise ValueError(f"{self.name}: a webdataset stream resumes at step boundaries; start={self.start} "
                             f"is not a multiple of batch_size * world_size = {b * w}")
        order = src.shard_order(self.seed, self.epoch, self.shuffle)
        counts, units = src.counts, w * workers
        per_rank = []
        for r in range(w):
            row = []
            for k in range(workers):
                n = sum(counts[s] for s in src.unit_shards(order, r * workers + k, units))
                row.append(n // b if self.drop_last else -(-n // b))
            per_rank.append(row)
        steps = min(sum(row) for row in per_rank) if w > 1 else sum(per_rank[self.rank])
        return order, per_rank, steps, self.start // (b * w)

    def __len__(self) -> int:
        """Batches this rank will yield from ``start`` to the end of the epoch."""
        if self.is_stream:
            _, _, steps, start_step = self._stream_plan(max(1, self.num_workers or 1))
            return max(0, steps - start_step)
        return self._map_plan()[2]

    # ------------------------------------------------------------------ samples
    def _pixels(self, image: Any, sample_seed: int) -> torch.Tensor:
        if not self.train_transform:
            return self.preprocessor(image)
        if self._transform is None:  # built lazily: closures don't pickle into spawned workers
            self._generator = torch.Generator()
            self._transform = self.preprocessor.train_transform(self.crop_scale, self.crop_ratio, self._generator)
        self._generator.manual_seed(sample_seed)
        return self._transform(image)

    def _empty_batch(self) -> dict[str, Any]:
        s = self.preprocessor.config.image_size
        return {"pixels": torch.empty(0, 3, s, s), "texts": [], "keys": [], "labels": [], "indices": [],
                "extra": [], "skipped": []}

    def _add(self, out: dict[str, Any], sample: Sample | BaseException, index: int, sample_seed: int,
             fallback_key: str) -> None:
        skip = out["skipped"]
        if isinstance(sample, SkipSample):
            skip.append({"key": sample.key or fallback_key, "reason": sample.reason, "detail": sample.detail})
            return
        if isinstance(sample, BaseException):
            skip.append({"key": fallback_key, "reason": "source_error",
                         "detail": f"{type(sample).__name__}: {sample}"})
            return
        key = sample.key
        if sample.extra.get(SKIP_REASON_KEY):
            skip.append({"key": key, "reason": sample.extra[SKIP_REASON_KEY],
                         "detail": str(sample.extra.get("skip_detail", ""))})
            return
        caption = sample.caption.strip() if isinstance(sample.caption, str) else ""
        if not caption:
            skip.append({"key": key, "reason": "empty_caption", "detail": ""})
            return
        if sample.image is None:
            skip.append({"key": key, "reason": "missing_image", "detail": "no image"})
            return
        try:
            pixels = self._pixels(sample.image, sample_seed)
        except ImageDecodeError as exc:
            skip.append({"key": key, "reason": skip_reason(exc), "detail": exc.reason})
            return
        except Exception as exc:  # never let one sample stop a run
            skip.append({"key": key, "reason": "corrupt_image", "detail": f"{type(exc).__name__}: {exc}"})
            return
        out["pixels_list"].append(pixels)
        out["texts"].append(caption)
        out["keys"].append(key)
        out["labels"].append(-1 if sample.label is None else int(sample.label))
        out["indices"].append(index)
        out["extra"].append(sample.extra)

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids, with a per-worker cache of captions seen before (template captions repeat a lot)."""
        if not texts:
            return torch.zeros(0, self.tokenizer.context_length, dtype=torch.long)
        if self.token_cache <= 0:
            return self.tokenizer(texts)
        if self._cache is None:
            self._cache = {}
        cache = self._cache
        todo = list(dict.fromkeys(t for t in texts if t not in cache))
        if todo:
            ids = self.tokenizer(todo)
            fresh = dict(zip(todo, ids))
            for t, row in fresh.items():
                if len(cache) < self.token_cache:
                    cache[t] = row.clone()
        else:
            fresh = {}
        return torch.stack([cache[t] if t in cache else fresh[t] for t in texts])

    def _finish(self, out: dict[str, Any], step: int, consumed: int, n_positions: int) -> dict[str, Any]:
        pix = out.pop("pixels_list", None)
        if pix:
            out["pixels"] = torch.stack(pix)
        out["labels"] = torch.tensor(out["labels"], dtype=torch.long)
        out["indices"] = torch.tensor(out["indices"], dtype=torch.long)
        if self.tokenizer is not None:
            out["input_ids"] = self._tokenize(out["texts"])
        if not self.return_extra:
            out.pop("extra")
        out.update(epoch=self.epoch, step=step, samples_consumed=consumed, n_positions=n_positions)
        return out

    def _map_batch(self, indices: np.ndarray) -> dict[str, Any]:
        src = self.source
        out = self._empty_batch()
        if self.fast_arrays and not self.train_transform and hasattr(src, "pixel_batch"):
            cfg = self.preprocessor.config
            keep = []
            for i in indices.tolist():
                cap = src.caption(i, SampleRandom(mix_seed(self.seed, self.epoch, i))).strip()
                if not cap:
                    out["skipped"].append({"key": src.key(i), "reason": "empty_caption", "detail": ""})
                    continue
                keep.append(i)
                out["texts"].append(cap)
                out["keys"].append(src.key(i))
                label = src.label(i)
                out["labels"].append(label)
                out["indices"].append(i)
                out["extra"].append({"source": src.name, "class_name": src.class_names[label]})
            if keep:
                out["pixels"] = src.pixel_batch(keep, cfg.image_size, cfg.mean, cfg.std)
            return out
        out["pixels_list"] = []
        for i in indices.tolist():
            seed_i = mix_seed(self.seed, self.epoch, i)
            try:
                sample: Sample | BaseException = src.sample(i, SampleRandom(seed_i))
            except Exception as exc:
                sample = exc
            self._add(out, sample, i, mix_seed(seed_i, 1), f"{self.name}[{i}]")
        return out

    # ----------------------------------------------------------------- iterate
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.is_stream:
            yield from self._iter_stream(worker, workers)
        else:
            yield from self._iter_map(worker, workers)

    def _iter_map(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        n = len(self.source)
        n_epoch, local_start, n_batches = self._map_plan()
        if n_batches <= 0:
            return
        perm = epoch_permutation(n, self.seed, self.epoch, self.shuffle)
        b, w, r, start = self.batch_size, self.world_size, self.rank, self.start
        n_local = n_epoch // w
        for j in range(worker, n_batches, workers):
            lo = local_start + j * b
            hi = min(lo + b, n_local)
            g = np.arange(lo, hi, dtype=np.int64) * w + r
            out = self._map_batch(perm[g % n])
            yield self._finish(out, j, min(start + (j + 1) * b * w, n_epoch), hi - lo)

    def _iter_stream(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        if self.num_workers is not None and max(1, self.num_workers) != workers:
            raise RuntimeError(f"{self.name}: dataset was set up for num_workers={self.num_workers} but runs in "
                               f"{workers} worker(s); the shard order depends on it")
        src, b, w = self.source, self.batch_size, self.world_size
        order, per_rank, steps, start_step = self._stream_plan(workers)
        counts = per_rank[self.rank]
        unit_steps = [round_robin_steps(counts, k) for k in range(workers)]
        # The DataLoader always starts its round-robin at worker 0, so on resume the workers are
        # rotated: worker 0 takes the unit that owns the first remaining step.  Rotating a cyclic
        # interleaving (exhausted units dropping out) gives the same sequence from that point.
        first = next((k for k in range(workers) if start_step in unit_steps[k]), 0)
        local_unit = (first + worker) % workers
        my_steps = unit_steps[local_unit]
        done = sum(1 for s in my_steps if s < start_step)
        todo = [(t, s) for t, s in enumerate(my_steps) if start_step <= s < steps]
        if not todo:
            return
        unit = self.rank * workers + local_unit
        records = src.unit_records(src.unit_shards(order, unit, w * workers),
                                   mix_seed(self.seed, self.epoch, unit), skip=done * b)
        for t, step in todo:
            out = self._empty_batch()
            out["pixels_list"] = []
            n_pos = 0
            for rec in records:
                sample = record_to_sample(rec)
                self._add(out, sample, -1, mix_seed(self.seed, self.epoch, key_int(sample.key)), sample.key)
                n_pos += 1
                if n_pos == b:
                    break
            yield self._finish(out, step, (step + 1) * b * w, n_pos)
