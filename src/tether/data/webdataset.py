"""Read img2dataset / WebDataset tar shards with the standard library's ``tarfile``.

A record is the run of consecutive tar members sharing a key (the member name up to the first
dot of its last path component, as in webdataset): ``key.jpg|png|webp|...`` (image),
``key.txt`` (caption), ``key.json`` (metadata; tether writes key, caption, label, extra),
optionally ``key.cls`` (integer label).

Order and splitting (used by :class:`WebDatasetSource` on its own and by
:class:`tether.data.PairDataset`):

* For ``(seed, epoch)`` the shard list is permuted (``shuffle=True``); the permuted shard ``i``
  goes to *unit* ``i % (world_size * num_workers)``, unit ``rank * num_workers + worker``.
* A unit reads its shards in that order, optionally through a shuffle buffer seeded by
  ``(seed, epoch, unit)``.  So the order depends on the number of ranks and DataLoader workers.
* The number of records of each shard comes from ``index.json`` next to the shards (written by
  :func:`tether.data.write_shards`), or from one scan of the tar headers.  A unit always yields
  exactly that many records per shard: a missing or truncated shard yields placeholder records
  that are skipped and counted as ``unreadable_shard``, so the position arithmetic of resuming
  and rank balancing never drifts.
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import random
import re
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import DataError
from .sample import Sample, mix_seed, resolve_rank_world
from .shards import INDEX_NAME, read_index

__all__ = ["WebDatasetSource", "expand_urls", "iter_tar_records", "count_tar_records", "record_to_sample",
           "SKIP_REASON_KEY"]

log = logging.getLogger("tether.data")

#: ``sample.extra`` key through which a stream marks a record it could not read.
SKIP_REASON_KEY = "skip_reason"
_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
_BRACE = re.compile(r"\{([^{}]*)\}")


def _braceexpand(pattern: str) -> list[str]:
    """``shard-{000..009}.tar`` (zero padding kept) and ``{a,b}`` alternatives, as webdataset writes them."""
    m = _BRACE.search(pattern)
    if not m:
        return [pattern]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    head, tail = pattern[: m.start()], pattern[m.end():]
    return [x for opt in options for x in _braceexpand(head + opt + tail)]


def expand_urls(urls: str | Path | Sequence[str | Path], split: str | None = None) -> list[Path]:
    """Shard paths from a list, a brace pattern, a glob, a folder (its index.json split, or all
    ``*.tar``), or an ``index.json`` path.  Only local files: there is no network access."""
    items = [urls] if isinstance(urls, (str, Path)) else list(urls)
    out: list[Path] = []
    for item in items:
        text = str(item)
        if text.startswith("file://"):
            text = text[len("file://"):]
        if re.match(r"^[a-z][a-z0-9+.-]*://", text) or text.startswith("pipe:"):
            raise DataError(f"webdataset: {text!r} is not a local path; only local shard files are supported")
        path = Path(text)
        if path.is_dir() or path.name == INDEX_NAME:
            folder = path if path.is_dir() else path.parent
            index = read_index(folder)
            if index is not None:
                splits = index.get("splits", {})
                if split is None and len(splits) > 1:
                    raise DataError(f"webdataset: {folder} holds splits {sorted(splits)}; say which with split=")
                name = split if split is not None else next(iter(splits), None)
                if name not in splits:
                    raise DataError(f"webdataset: split {name!r} not in {folder / INDEX_NAME} "
                                    f"(splits: {sorted(splits)})")
                out += [folder / s["file"] for s in splits[name]["shards"]]
            elif path.is_dir():
                found = sorted(folder.glob("*.tar")) + sorted(folder.glob("*.tar.gz")) + sorted(folder.glob("*.tgz"))
                if split is not None:
                    found = [p for p in found if p.name.startswith(f"{split}-")]
                out += found
            else:
                raise FileNotFoundError(f"webdataset: {path} does not exist")
            continue
        expanded_all = _braceexpand(text)
        missing = []
        for expanded in expanded_all:
            if any(c in expanded for c in "*?["):
                matches = sorted(glob.glob(expanded))
                if not matches:
                    raise FileNotFoundError(f"webdataset: no shards match {expanded!r}")
                out += [Path(m) for m in matches]
            elif Path(expanded).is_file():
                out.append(Path(expanded))
            else:
                missing.append(expanded)
        if missing:
            raise FileNotFoundError(f"webdataset: {len(missing)} of {len(expanded_all)} shard(s) of {text!r} do not "
                                    f"exist: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if not out:
        raise FileNotFoundError(f"webdataset: no shards found in {urls!r}")
    return out


def _split_name(name: str) -> tuple[str | None, str]:
    folder, _, base = name.rpartition("/")
    if "." not in base or base.startswith("."):
        return None, ""
    stem, ext = base.split(".", 1)
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def iter_tar_records(path: str | Path, skip: int = 0) -> Iterator[dict[str, Any]]:
    """Records (dicts ``{"__key__", "__index__", ext: bytes...}``) of a tar, in file order.

    The first ``skip`` records are passed over without reading their data.  Errors (missing
    file, truncated tar) propagate after the complete records before them were yielded.
    """
    with tarfile.open(path, "r:*") as tf:
        key: str | None = None
        rec: dict[str, Any] | None = None
        idx = -1
        for member in tf:
            if not member.isfile():
                continue
            k, ext = _split_name(member.name)
            if k is None:
                continue
            if k != key:
                if rec is not None:
                    yield rec
                idx += 1
                key = k
                rec = {"__key__": k, "__index__": idx} if idx >= skip else None
            if rec is not None:
                f = tf.extractfile(member)
                rec[ext] = f.read() if f is not None else b""
        if rec is not None:
            yield rec


@lru_cache(maxsize=4096)
def _scan_count(path: str, mtime_ns: int, size: int) -> int:
    n = 0
    with tarfile.open(path, "r:*") as tf:
        key = None
        for member in tf:
            if member.isfile():
                k, _ = _split_name(member.name)
                if k is not None and k != key:
                    n, key = n + 1, k
    return n


def count_tar_records(path: str | Path) -> int:
    """Number of records in a tar by reading its headers only (cached per file version)."""
    st = Path(path).stat()
    return _scan_count(str(path), st.st_mtime_ns, st.st_size)


def record_to_sample(rec: dict[str, Any]) -> Sample:
    """A raw record -> :class:`Sample` (image stays encoded bytes)."""
    shard = rec.get("__shard__", "")
    if "__error__" in rec:
        reason, detail = rec["__error__"]
        return Sample(rec["__key__"], None, "", None,
                      {"shard": shard, SKIP_REASON_KEY: reason, "skip_detail": detail})
    meta: Any = {}
    extra: dict[str, Any] = {}
    if "json" in rec:
        try:
            meta = json.loads(rec["json"].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            extra["meta_error"] = str(exc)
    if not isinstance(meta, dict):
        meta = {"value": meta}
    image = next((rec[e] for e in _IMAGE_EXTS if e in rec), None)
    if "txt" in rec:
        caption = rec["txt"].decode("utf-8", errors="replace").strip()
    elif isinstance(meta.get("caption"), str):
        caption = meta["caption"].strip()
    else:
        caption = ""
        extra[SKIP_REASON_KEY], extra["skip_detail"] = "missing_caption", "no .txt member"
    label = meta.get("label")
    if label is None and "cls" in rec:
        try:
            label = int(rec["cls"].decode("utf-8").strip())
        except ValueError:
            label = None
    if isinstance(meta.get("extra"), dict):
        extra.update(meta["extra"])
    elif meta:
        extra["meta"] = meta
    extra["shard"] = shard
    if image is None and SKIP_REASON_KEY not in extra:
        extra[SKIP_REASON_KEY], extra["skip_detail"] = "missing_image", "no image member"
    key = meta.get("key") if isinstance(meta.get("key"), str) else rec["__key__"]
    return Sample(key, image, caption, label if isinstance(label, int) else None, extra)


def _shuffle_buffer(records: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    buf: list[Any] = []
    for rec in records:
        if len(buf) < size:
            buf.append(rec)
            continue
        i = rng.randrange(size)
        yield buf[i]
        buf[i] = rec
    rng.shuffle(buf)
    yield from buf


class WebDatasetSource(IterableDataset):
    """Tar shards in img2dataset's layout, streamed as :class:`Sample` objects (image = bytes).

    ``urls_or_glob``: a list of paths, ``"dir/train-{00000..00009}.tar"``, ``"dir/*.tar"``, a
    folder (with ``index.json``: the shards of ``split``; otherwise every ``*.tar``).

    Iterating it directly (e.g. in a DataLoader) splits shards over DataLoader workers and ranks
    (``rank``/``world_size``, else torch.distributed's, else a single process) in the
    ``(seed, epoch)`` order described in the module docstring; call :meth:`set_epoch` each
    epoch.  Wrap it in :class:`tether.data.PairDataset` for decoding, batching, skip accounting,
    rank balancing and resume.
    """

    def __init__(self, urls_or_glob: str | Path | Sequence[str | Path], *, split: str | None = None,
                 shuffle: bool = True, shuffle_buffer: int = 0, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, name: str | None = None):
        super().__init__()
        self.shards = expand_urls(urls_or_glob, split)
        self.name = name or f"webdataset:{self.shards[0].parent.name or self.shards[0].name}"
        self.shuffle, self.shuffle_buffer, self.seed, self.epoch = shuffle, int(shuffle_buffer), int(seed), 0
        self.rank, self.world_size = resolve_rank_world(rank, world_size)
        self._counts: list[int] | None = None
        self.class_names: list[str] | None = None
        index = read_index(self.shards[0].parent)
        if index is not None:
            self.class_names = index.get("class_names")

    # ------------------------------------------------------------------ sizes
    @property
    def counts(self) -> list[int]:
        """Records per shard: from index.json where listed, otherwise by scanning the tar headers."""
        if self._counts is None:
            known: dict[Path, int] = {}
            for folder in {p.parent for p in self.shards}:
                index = read_index(folder)
                for split in (index or {}).get("splits", {}).values():
                    for s in split.get("shards", []):
                        known[folder / s["file"]] = int(s["count"])
            counts = []
            for p in self.shards:
                if p in known:
                    counts.append(known[p])
                else:
                    try:
                        counts.append(count_tar_records(p))
                    except (OSError, tarfile.TarError, EOFError) as exc:
                        log.warning("%s: cannot count records of %s (%s); treating it as empty", self.name, p, exc)
                        counts.append(0)
            self._counts = counts
        return self._counts

    def __len__(self) -> int:
        return sum(self.counts)

    def describe_empty(self) -> str:
        return f"{len(self.shards)} shard(s) with no records"

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ order
    def shard_order(self, seed: int, epoch: int, shuffle: bool | None = None) -> list[int]:
        """Shard ids in the order of ``(seed, epoch)``."""
        n = len(self.shards)
        if not (self.shuffle if shuffle is None else shuffle):
            return list(range(n))
        g = torch.Generator().manual_seed(mix_seed(seed, epoch, 0x5A4D))
        return torch.randperm(n, generator=g).tolist()

    def unit_shards(self, order: Sequence[int], unit: int, units: int) -> list[int]:
        return list(order[unit::units])

    def _shard_records(self, sid: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        """Exactly ``counts[sid] - skip`` records of shard ``sid`` (placeholders for unreadable ones)."""
        path, expected = self.shards[sid], self.counts[sid]
        done = skip
        error = None
        if skip < expected:
            try:
                for rec in iter_tar_records(path, skip=skip):
                    if done >= expected:
                        log.warning("%s: %s has more records than its index says (%d); extra ones ignored",
                                    self.name, path.name, expected)
                        break
                    rec["__shard__"] = path.name
                    yield rec
                    done += 1
            except (OSError, tarfile.TarError, EOFError) as exc:
                error = f"{path.name}: {type(exc).__name__}: {exc}"
        if done < expected:
            error = error or f"{path.name}: ended after {done} of {expected} records"
            for i in range(done, expected):
                yield {"__key__": f"{path.name}#{i}", "__shard__": path.name, "__index__": i,
                       "__error__": ("unreadable_shard", error)}

    def unit_records(self, shard_ids: Sequence[int], rng_seed: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        """Raw records of ``shard_ids`` in order (through the shuffle buffer), minus the first ``skip``.

        Without a shuffle buffer whole shards are skipped by their counts and partial ones by
        reading tar headers only.  With a buffer the skipped records are read (not decoded) to
        replay the buffer's state exactly.
        """
        if self.shuffle_buffer <= 1:
            for sid in shard_ids:
                c = self.counts[sid]
                if skip >= c:
                    skip -= c
                    continue
                yield from self._shard_records(sid, skip)
                skip = 0
            return
        stream = itertools.chain.from_iterable(self._shard_records(sid) for sid in shard_ids)
        it = _shuffle_buffer(stream, self.shuffle_buffer, random.Random(rng_seed))
        for _ in itertools.islice(it, skip):
            pass
        yield from it

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        units = self.world_size * workers
        unit = self.rank * workers + worker
        order = self.shard_order(self.seed, self.epoch)
        mine = self.unit_shards(order, unit, units)
        for rec in self.unit_records(mine, mix_seed(self.seed, self.epoch, unit)):
            yield record_to_sample(rec)

    def __repr__(self) -> str:
        return f"WebDatasetSource(name={self.name!r}, shards={len(self.shards)})"
