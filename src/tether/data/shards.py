"""Write image-text pairs as tar shards in img2dataset's layout, plus a JSON index.

Each record is ``<key>.<ext>`` (the image: original encoded bytes, or PNG for in-memory
images), ``<key>.txt`` (the caption, UTF-8) and ``<key>.json`` (key, caption, label, extra).
Members have fixed owner/mtime, so the same samples always give byte-identical shards.
Shards are written to a temporary file and renamed, so a crash never leaves half a shard
under a real name; the index is replaced atomically too.

``index.json`` (one per output folder, shared by the splits written there)::

    {"format": "tether.shards/1", "name": "fashion-mnist", "num_samples": 70000,
     "class_names": [...], "info": {...},
     "splits": {"train": {"num_samples": 60000, "shards": [{"file": "train-00000.tar", "count": 5000}, ...],
                          "skipped": {"missing_image": 0, ...}}}}

:class:`tether.data.WebDatasetSource` reads the per-shard counts from it (so resuming and
rank balancing need no scan of the tars).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from PIL import Image

from ..errors import DataError
from ..io import PendingFile, atomic_write_json
from .sample import Sample, sniff_image_format

__all__ = ["write_shards", "ShardWriteResult", "read_index", "INDEX_NAME", "INDEX_FORMAT", "safe_key"]

INDEX_NAME = "index.json"
INDEX_FORMAT = "tether.shards/1"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-/]+")
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}


@dataclass
class ShardWriteResult:
    """What :func:`write_shards` wrote."""

    shards: list[Path]
    counts: list[int]
    split: str
    index_path: Path
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (key, reason, detail)

    @property
    def num_samples(self) -> int:
        return sum(self.counts)


def safe_key(key: str) -> str:
    """A tar-member-safe key: no dots (webdataset splits the extension at the first dot), no '..'."""
    parts = [_UNSAFE.sub("_", p) for p in str(key).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(p for p in parts if p) or "_"


class _Unwritable(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def _encode_image(image: Any, image_format: str) -> tuple[bytes, str]:
    """-> (bytes, extension); raises :class:`_Unwritable` for unusable input."""
    if image is None:
        raise _Unwritable("missing_image", "no image")
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        img = image
        if image_format == "png":
            if img.mode not in _PNG_MODES:
                img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
            img.save(buf, format="PNG")
            return buf.getvalue(), "png"
        if img.mode not in ("L", "RGB"):
            from ..preprocess import load_image
            img = load_image(img)
        img.save(buf, format="JPEG" if image_format == "jpg" else image_format.upper(), quality=95)
        return buf.getvalue(), image_format
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        ext = sniff_image_format(data)
        if ext is None:
            raise _Unwritable("unknown_image_format", "bytes are not PNG/JPEG/WebP/GIF/BMP/TIFF")
        return data, ext
    if isinstance(image, (str, Path)):
        path = Path(image)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise _Unwritable("missing_image", f"file not found: {path}") from None
        except OSError as exc:
            raise _Unwritable("missing_image", f"{path}: {exc}") from None
        ext = sniff_image_format(data) or path.suffix.lower().lstrip(".") or "bin"
        return data, {"jpeg": "jpg", "tif": "tiff"}.get(ext, ext)
    raise _Unwritable("unknown_image_format", f"unsupported image type {type(image).__name__}")


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


class _ShardFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending = PendingFile(path)
        self.tar = tarfile.open(self.pending.tmp, "w", format=tarfile.PAX_FORMAT)
        self.count = 0

    def close(self) -> None:
        self.tar.close()
        self.pending.commit()

    def abort(self) -> None:
        try:
            self.tar.close()
        finally:
            self.pending.discard()


def read_index(directory: str | Path) -> dict[str, Any] | None:
    """The ``index.json`` in ``directory`` (None if there is none)."""
    p = Path(directory) / INDEX_NAME
    if not p.is_file():
        return None
    data = json.loads(p.read_text(encoding="utf-8"))
    if data.get("format") != INDEX_FORMAT:
        raise DataError(f"{p} is not a tether shard index (format {data.get('format')!r})")
    return data


def write_shards(samples: Iterable[Sample], out_dir: str | Path, shard_size: int = 1000,
                 prefix: str | None = None, *, split: str = "all", name: str | None = None,
                 class_names: Sequence[str] | None = None, info: dict[str, Any] | None = None,
                 image_format: str = "png") -> ShardWriteResult:
    """Write ``samples`` to ``out_dir/<prefix>00000.tar``... and record them in ``out_dir/index.json``.

    * ``prefix`` defaults to ``"<split>-"``; earlier shards with the same prefix that this run
      did not rewrite are deleted, so a glob over the folder never picks up stale data.
    * Encoded image bytes and image files are stored as they are (not decoded or validated:
      readers skip and count corrupt ones); PIL images are encoded as ``image_format``
      (``png`` by default; lossless).  Samples with no image, an unreadable file, bytes of an
      unknown format or a duplicate key are not written and are listed in ``skipped``.
    * The index keeps other splits already recorded in ``out_dir`` and replaces this one.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if image_format not in ("png", "jpg", "webp"):
        raise ValueError(f"image_format must be 'png', 'jpg' or 'webp', got {image_format!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"{split}-" if prefix is None else prefix
    if "/" in prefix:
        raise ValueError(f"prefix must not contain '/', got {prefix!r}")
    shards, counts, skipped = _write_tars(samples, out, prefix, shard_size, image_format)
    _remove_stale_shards(out, prefix, shards)
    index_path = _update_index(out, split, name, class_names, info, shards, counts, skipped)
    return ShardWriteResult(shards, counts, split, index_path, skipped)


def _write_tars(samples: Iterable[Sample], out: Path, prefix: str, shard_size: int, image_format: str
                ) -> tuple[list[Path], list[int], list[tuple[str, str, str]]]:
    """Write the samples to ``out/<prefix>00000.tar``...; -> (shard paths, counts, skipped)."""
    shards: list[Path] = []
    counts: list[int] = []
    skipped: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    current: _ShardFile | None = None
    try:
        for sample in samples:
            key = str(sample.key)
            member = safe_key(key)
            if member in seen:
                skipped.append((key, "duplicate_key", f"tar key {member!r} already written"))
                continue
            try:
                data, ext = _encode_image(sample.image, image_format)
            except _Unwritable as exc:
                skipped.append((key, exc.reason, exc.detail))
                continue
            seen.add(member)
            if current is None:
                current = _ShardFile(out / f"{prefix}{len(shards):05d}.tar")
            _add_record(current, sample, key, member, ext, data)
            if current.count >= shard_size:
                current.close()
                shards.append(current.path)
                counts.append(current.count)
                current = None
        if current is not None:
            current.close()
            shards.append(current.path)
            counts.append(current.count)
            current = None
    except BaseException:
        if current is not None:
            current.abort()
        raise
    return shards, counts, skipped


def _add_record(shard: _ShardFile, sample: Sample, key: str, member: str, ext: str, data: bytes) -> None:
    """The image, ``.txt`` caption and ``.json`` metadata members of one sample."""
    meta = {"key": key, "caption": sample.caption, "label": sample.label, "extra": sample.extra}
    _add_member(shard.tar, f"{member}.{ext}", data)
    _add_member(shard.tar, f"{member}.txt", (sample.caption or "").encode("utf-8"))
    _add_member(shard.tar, f"{member}.json",
                json.dumps(meta, ensure_ascii=False, default=str, sort_keys=True).encode("utf-8"))
    shard.count += 1


def _remove_stale_shards(out: Path, prefix: str, shards: list[Path]) -> None:
    """Delete earlier ``<prefix>NNNNN.tar`` shards that this run did not rewrite."""
    written = {p.name for p in shards}
    stale = re.compile(re.escape(prefix) + r"\d{5}\.tar")
    for p in out.iterdir():
        if stale.fullmatch(p.name) and p.name not in written:
            p.unlink()


def _update_index(out: Path, split: str, name: str | None, class_names: Sequence[str] | None,
                  info: dict[str, Any] | None, shards: list[Path], counts: list[int],
                  skipped: list[tuple[str, str, str]]) -> Path:
    """Record ``split`` in ``out/index.json`` (other splits kept), atomically; -> the index path."""
    index = read_index(out) or {"format": INDEX_FORMAT, "name": name, "num_samples": 0,
                                "class_names": None, "splits": {}, "info": {}}
    if name is not None:
        index["name"] = name
    if class_names is not None:
        index["class_names"] = list(class_names)
    if info:
        index.setdefault("info", {}).update(info)
    index["splits"][split] = {
        "num_samples": sum(counts),
        "shards": [{"file": p.name, "count": c} for p, c in zip(shards, counts)],
        "skipped": dict(sorted(Counter(r for _, r, _ in skipped).items())),
    }
    index["num_samples"] = sum(s["num_samples"] for s in index["splits"].values())
    index_path = out / INDEX_NAME
    atomic_write_json(index_path, index, indent=1, ensure_ascii=False)
    return index_path
