"""One part of an embedding job: its inputs read from the source, embedded, turned into rows.

Part ``k`` covers the input positions ``[k * part_size, (k + 1) * part_size)`` of the source in
its deterministic order (map-style sources: index order, read with the pipeline's unshuffled
epoch-0 randomness so a templated caption is always the same; WebDataset shards: the listed
shards in order, records in file order, no shuffle buffer). So a part always holds the same
inputs, whichever run, engine or worker count writes it.

Both engines (local and Ray) call :func:`read_part` and :func:`embed_samples`; a sample that
cannot be used in one modality is dropped from every modality, so the files of a part stay
row-aligned.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.sample import Sample, SampleRandom, SkipSample, mix_seed
from ..data.skips import SkipStats
from ..data.webdataset import SKIP_REASON_KEY, WebDatasetSource, record_to_sample

#: Text first: it is cheap, and an empty caption then spares decoding and encoding its image.
MODALITY_ORDER = ("text", "image")
#: Metadata columns the job fills itself; the source's own columns with these names are left out.
RESERVED_COLUMNS = ("key", "image_path", "url", "caption", "label")
_INTERNAL_EXTRA = (SKIP_REASON_KEY, "skip_detail")


@dataclass
class PartRows:
    """What one part yields: the kept samples (position, sample), each modality's (rows, D) float32
    embeddings row-aligned with them, and the skipped inputs (position, key, reason, detail)."""

    kept: list[tuple[int, Sample]]
    vectors: dict[str, np.ndarray]
    skipped: list[dict[str, Any]] = field(default_factory=list)


def part_count(n_inputs: int, part_size: int) -> int:
    return math.ceil(n_inputs / part_size)


def part_range(part: int, part_size: int, n_inputs: int) -> tuple[int, int]:
    """The input positions ``[start, stop)`` of ``part``."""
    return part * part_size, min((part + 1) * part_size, n_inputs)


def read_part(source: Any, part: int, part_size: int) -> tuple[list[tuple[int, Sample]], list[dict[str, Any]]]:
    """The samples of ``part`` as (position, sample), and the positions the source itself refused."""
    start, stop = part_range(part, part_size, len(source))
    samples, skipped = [], []
    if isinstance(source, WebDatasetSource):
        stream = copy.copy(source)
        stream.shuffle_buffer = 0  # the job's order is the shards' own
        records = stream.unit_records(list(range(len(stream.shards))), 0, skip=start)
        for pos, record in zip(range(start, stop), itertools.islice(records, stop - start)):
            samples.append((pos, record_to_sample(record)))
        return samples, skipped
    for pos in range(start, stop):
        try:
            samples.append((pos, source.sample(pos, SampleRandom(mix_seed(0, 0, pos)))))
        except SkipSample as exc:
            skipped.append(_skip(pos, exc.key or f"{source.name}[{pos}]", exc.reason, exc.detail))
        except Exception as exc:  # one broken sample never stops a job
            skipped.append(_skip(pos, f"{source.name}[{pos}]", "source_error", f"{type(exc).__name__}: {exc}"))
    return samples, skipped


def _skip(pos: int, key: str, reason: str, detail: str) -> dict[str, Any]:
    return {"position": int(pos), "key": str(key), "reason": reason, "detail": detail}


def _precheck(sample: Sample, modalities: Sequence[str]) -> tuple[str, str] | None:
    """A reason to skip ``sample`` before embedding: the source marked it, or its caption is empty."""
    reason = sample.extra.get(SKIP_REASON_KEY)
    needs = {"missing_image": "image", "missing_caption": "text"}
    if reason and (reason not in needs or needs[reason] in modalities):
        return reason, str(sample.extra.get("skip_detail", ""))
    if "text" in modalities and not (sample.caption or "").strip():
        return "empty_caption", "the caption is empty"
    return None


class _PartView:
    """The part's samples as a map-style source for the engine, keyed by input position (unique, and
    what lets the rows be matched across modalities). An ArraySource's vectorised ``pixel_batch``
    is kept, with the part's indices mapped back to the source's."""

    def __init__(self, samples: list[tuple[int, Sample]], base: Any = None) -> None:
        self.samples, self.name = samples, "part"
        if base is not None and hasattr(base, "pixel_batch") and not isinstance(base, WebDatasetSource):
            self.pixel_batch = lambda idx, *a: base.pixel_batch([samples[i][0] for i in idx], *a)

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, i: int, rng: Any = None) -> Sample:
        pos, s = self.samples[i]
        return Sample(str(pos), s.image, s.caption, s.label, s.extra)


def embed_samples(model: Any, samples: list[tuple[int, Sample]], modalities: Sequence[str], *, base: Any = None,
                  batch_size: int = 64, workers: int = 0, precision: str = "fp32", device: Any = None,
                  progress: bool = False) -> PartRows:
    """Embed ``samples`` in every modality through the engine; a sample skipped in one is dropped from all."""
    from ..embedding import embed

    by_pos = {pos: s for pos, s in samples}
    skipped, alive = [], []
    for pos, s in samples:
        why = _precheck(s, modalities)
        if why:
            skipped.append(_skip(pos, s.key, *why))
        else:
            alive.append((pos, s))
    vectors: dict[str, dict[int, np.ndarray]] = {}
    order = [m for m in MODALITY_ORDER if m in modalities] + [m for m in modalities if m not in MODALITY_ORDER]
    for modality in order:
        stats = SkipStats(max_examples=max(1, len(alive)))
        size = max(batch_size, 256) if modality == "text" else batch_size
        result = embed(model, modality, _PartView(alive, base), batch_size=size, precision=precision,
                       workers=0 if modality == "text" else workers, device=device, progress=progress, skips=stats)
        for reason, examples in stats.examples.items():
            skipped += [_skip(int(key), by_pos[int(key)].key, reason, detail) for key, detail in examples]
        rows = result.vectors.numpy()
        vectors[modality] = {int(i): rows[j] for j, i in enumerate(result.ids)}
        kept_now = set(vectors[modality])
        alive = [(pos, s) for pos, s in alive if pos in kept_now]
    dim = _embed_dim(model)
    arrays = {m: (np.stack([vectors[m][pos] for pos, _ in alive]) if alive else np.zeros((0, dim), np.float32))
              for m in modalities}
    return PartRows(alive, arrays, sorted(skipped, key=lambda r: r["position"]))


def _embed_dim(model: Any) -> int:
    return int(getattr(getattr(model, "config", None), "embed_dim", 0))


def metadata_columns(kept: list[tuple[int, Sample]], caption: bool, label: bool) -> dict[str, list[Any]]:
    """The metadata of the kept rows: key, image_path / url, caption, label, then the source's own
    columns (``Sample.extra``, img2dataset's JSON fields flattened), as Parquet-friendly values."""
    rows = [_metadata_row(s, caption, label) for _, s in kept]
    names = list(dict.fromkeys(["key"] + [k for r in rows for k in r]))
    columns = {name: [r.get(name) for r in rows] for name in names}
    return {name: _uniform(values) for name, values in columns.items()}


def _metadata_row(s: Sample, caption: bool, label: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"key": str(s.key)}
    if isinstance(s.image, (str, Path)):
        row["image_path"] = str(s.image)
    extra = dict(s.extra)
    meta = extra.pop("meta", None)
    if isinstance(meta, dict):
        extra = {**{k: v for k, v in meta.items() if k not in extra}, **extra}
    if extra.get("url") is not None:
        row["url"] = str(extra["url"])
    if caption:
        row["caption"] = s.caption
    if label:
        row["label"] = s.label
    for name, value in extra.items():
        # raw inputs (encoded bytes, arrays of an IMU series or point cloud) are data, not metadata
        if name not in RESERVED_COLUMNS and name not in _INTERNAL_EXTRA and \
                not isinstance(value, (bytes, bytearray, np.ndarray)):
            row[name] = _plain(value)
    return row


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return str(value)


def _uniform(values: list[Any]) -> list[Any]:
    """One Parquet type per column: values of mixed types become strings."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) > 1 and not kinds <= {int, float}:
        return [None if v is None else str(v) for v in values]
    return values


__all__ = ["PartRows", "embed_samples", "metadata_columns", "part_count", "part_range", "read_part"]
