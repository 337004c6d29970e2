"""clip-retrieval's embedding layout: the one reader and writer of embedding parts on disk.

An embedding folder holds row-aligned parts, readable by clip-retrieval, autofaiss and
embedding-reader without tether::

    OUT/img_emb/img_emb_0000.npy          (rows, D) float16 or float32, L2-normalised
    OUT/text_emb/text_emb_0000.npy        the same rows' captions (when texts were embedded)
    OUT/metadata/metadata_0000.parquet    one row per embedding row: key, image_path / url,
                                          caption, the source's own columns
    OUT/summary.json                      written by the job that made the parts

Other modalities use ``<modality>_emb/<modality>_emb_NNNN.npy``. A part is *finished* when its
metadata file exists: :func:`write_part` writes every embedding file first and the metadata last,
each atomically (``tether.io``), so a part killed half-way is never taken as finished and a
resumed job simply writes it again.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..io import atomic_write_bytes

EMBEDDING_DIRS = {"image": "img_emb", "text": "text_emb"}
METADATA_DIR = "metadata"
PART_DIGITS = 4
DTYPES = ("float16", "float32")
_PART = re.compile(r"^metadata_(\d+)\.parquet$")


class LayoutError(ValueError):
    """An embedding folder that does not hold consistent parts."""


def embedding_dir(modality: str) -> str:
    """``img_emb`` / ``text_emb`` (clip-retrieval's names), ``<modality>_emb`` for the others."""
    return EMBEDDING_DIRS.get(modality, f"{modality}_emb")


def embedding_path(root: str | Path, modality: str, part: int) -> Path:
    name = embedding_dir(modality)
    return Path(root) / name / f"{name}_{part:0{PART_DIGITS}d}.npy"


def metadata_path(root: str | Path, part: int) -> Path:
    return Path(root) / METADATA_DIR / f"{METADATA_DIR}_{part:0{PART_DIGITS}d}.parquet"


def write_part(root: str | Path, part: int, embeddings: Mapping[str, np.ndarray], metadata: Any,
               dtype: str = "float16") -> None:
    """Write part ``part``: each modality's (rows, D) array, then the metadata (a pyarrow Table or a
    mapping of column name -> list), all row-aligned. The metadata file is written last: it marks
    the part finished."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if dtype not in DTYPES:
        raise LayoutError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    table = metadata if isinstance(metadata, pa.Table) else pa.table(dict(metadata))
    for modality, array in embeddings.items():
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[0] != table.num_rows:
            raise LayoutError(f"part {part}: {modality} embeddings have shape {array.shape}, expected "
                              f"({table.num_rows}, D) to match the metadata's rows")
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array, dtype=dtype))
        atomic_write_bytes(embedding_path(root, modality, part), buf.getvalue())
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(metadata_path(root, part), buf.getvalue())


def finished_parts(root: str | Path) -> list[int]:
    """Numbers of the parts whose metadata exists (written last, so the part is complete), sorted."""
    folder = Path(root) / METADATA_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _PART.match(p.name)))


@dataclass
class EmbeddingFolder:
    """What an embedding folder holds: its finished parts, their row counts and the modalities."""

    root: Path
    parts: list[int]
    rows: list[int]
    modalities: list[str]
    dim: int

    def __len__(self) -> int:
        return sum(self.rows)


def open_folder(root: str | Path) -> EmbeddingFolder:
    """Check an embedding folder: every finished part has the same modalities, matching row counts
    and one embedding width. Errors name the file, what was expected and what was found."""
    import pyarrow.parquet as pq

    root = Path(root)
    parts = finished_parts(root)
    if not parts:
        raise LayoutError(f"{root}: no finished parts (expected {METADATA_DIR}/{METADATA_DIR}_0000.parquet "
                          "beside img_emb/ or text_emb/, as `tether embed` writes)")
    modalities = sorted(_modalities(root))
    if not modalities:
        raise LayoutError(f"{root}: metadata but no embedding folder (expected img_emb/ or text_emb/)")
    rows, dim = [], None
    for part in parts:
        n = pq.ParquetFile(metadata_path(root, part)).metadata.num_rows
        for modality in modalities:
            path = embedding_path(root, modality, part)
            if not path.is_file():
                raise LayoutError(f"{path}: missing (part {part} has metadata, so every modality needs this file)")
            shape = np.load(path, mmap_mode="r").shape
            if len(shape) != 2 or shape[0] != n or (dim is not None and shape[1] != dim):
                raise LayoutError(f"{path}: shape {shape}, expected ({n}, {dim or 'D'}) to match "
                                  f"{metadata_path(root, part).name} and the other parts")
            dim = shape[1]
        rows.append(n)
    return EmbeddingFolder(root, parts, rows, modalities, int(dim))


def _modalities(root: Path) -> list[str]:
    names = {v: k for k, v in EMBEDDING_DIRS.items()}
    found = []
    for child in root.iterdir():
        if child.is_dir() and child.name.endswith("_emb"):
            found.append(names.get(child.name, child.name[: -len("_emb")]))
    return found


def read_embeddings(root: str | Path, modality: str, dtype: str = "float32") -> np.ndarray:
    """All finished parts' embeddings of ``modality``, in part order, as one (N, D) array."""
    folder = open_folder(root)
    if modality not in folder.modalities:
        raise LayoutError(f"{folder.root}: no {embedding_dir(modality)}/ (found: "
                          f"{', '.join(embedding_dir(m) for m in folder.modalities)})")
    arrays = [np.load(embedding_path(folder.root, modality, p)) for p in folder.parts]
    return np.concatenate(arrays).astype(dtype, copy=False)


def read_metadata(root: str | Path, columns: list[str] | None = None):
    """All finished parts' metadata as one pyarrow Table, row-aligned with :func:`read_embeddings`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = open_folder(root)
    tables = [pq.read_table(metadata_path(folder.root, p), columns=columns) for p in folder.parts]
    return pa.concat_tables(tables, promote_options="default")


__all__ = ["DTYPES", "EMBEDDING_DIRS", "EmbeddingFolder", "LayoutError", "embedding_dir", "embedding_path",
           "finished_parts", "metadata_path", "open_folder", "read_embeddings", "read_metadata", "write_part"]
