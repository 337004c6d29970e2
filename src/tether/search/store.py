"""An index folder's own copy of the vectors and metadata, read by row number through memory maps.

The vectors stay in clip-retrieval's part files (``img_emb/img_emb_0000.npy``; hard links to the
embedding folder's files where the file system allows, copies otherwise), opened with
``np.load(mmap_mode="r")``: exact re-ranking, search by an indexed row and pair checks read only the
rows they need. The metadata of each part is rewritten from Parquet (compressed, read a row group
at a time) to an uncompressed Arrow IPC file (``metadata/metadata_0000.arrow``) that is memory-mapped:
looking up k rows touches those rows' pages, never the whole table (clip-retrieval #22, #256).
Row ids are positions in part order, the same ids the FAISS indexes return.
"""
from __future__ import annotations

import os
import shutil
from bisect import bisect_right
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..curate import layout
from ..errors import InputError
from ..io import atomic_file

ARROW_SUFFIX = ".arrow"


def arrow_path(root: str | Path, part: int) -> Path:
    return layout.metadata_path(root, part).with_suffix(ARROW_SUFFIX)


def copy_part(emb_dir: str | Path, index_dir: str | Path, part: int, modalities: Sequence[str]) -> None:
    """Bring part ``part``'s vectors (linked) and metadata (as Arrow IPC) into ``index_dir``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for modality in modalities:
        src, dst = layout.embedding_path(emb_dir, modality, part), layout.embedding_path(index_dir, modality, part)
        with atomic_file(dst) as tmp:
            tmp.unlink()
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
    table = pq.read_table(layout.metadata_path(emb_dir, part))
    with atomic_file(arrow_path(index_dir, part)) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


class _Parts:
    """Offsets of the parts: global row id -> (part position, row in part)."""

    def __init__(self, rows: Sequence[int]) -> None:
        self.starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        n = len(self)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise InputError(f"row id {i} is out of range (the index holds rows 0..{n - 1})")
            k = bisect_right(self.starts, i) - 1
            out.append((k, i - int(self.starts[k])))
        return out


class VectorStore:
    """One modality's vectors of every indexed part, memory-mapped; ``take(ids)`` -> float32 rows."""

    def __init__(self, root: str | Path, modality: str, parts: Sequence[int], rows: Sequence[int]) -> None:
        self.arrays = [np.load(layout.embedding_path(root, modality, p), mmap_mode="r") for p in parts]
        self.parts = _Parts(rows)

    def __len__(self) -> int:
        return len(self.parts)

    def take(self, ids: Sequence[int]) -> np.ndarray:
        """Rows ``ids`` as float32, in the order asked; only those rows are read from the files."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        dim = self.arrays[0].shape[1] if self.arrays else 0
        out = np.empty((len(ids), dim), np.float32)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            bad = int(ids[(ids < 0) | (ids >= len(self))][0])
            raise InputError(f"row id {bad} is out of range (the index holds rows 0..{len(self) - 1})")
        part = np.searchsorted(self.parts.starts, ids, side="right") - 1
        for k in np.unique(part):
            mask = part == k
            out[mask] = self.arrays[k][ids[mask] - self.parts.starts[k]]
        return out

    def chunks(self, rows: int = 65536):
        """(start id, float32 block) over every row in order, a block at a time."""
        start = 0
        for array in self.arrays:
            for a in range(0, len(array), rows):
                block = np.asarray(array[a:a + rows], dtype=np.float32)
                yield start + a, block
            start += len(array)


def _value_reader(array: Any) -> Callable[[int], Any]:
    """``i -> array[i]`` as a Python value, without copying the (memory-mapped) array: strings and
    fixed-width numbers through numpy views of its buffers (a query's k rows cost microseconds,
    where ``Table.take(...).to_pylist()`` costs more than the index search), anything else, and
    any column with nulls, through pyarrow's scalars."""
    import pyarrow as pa

    t = array.type
    if array.null_count == 0 and (pa.types.is_string(t) or pa.types.is_large_string(t)
                                  or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        code, size = ("q", 8) if pa.types.is_large_string(t) or pa.types.is_large_binary(t) else ("i", 4)
        _, offsets, data = array.buffers()
        start = array.offset * size            # memoryview indexing: Python ints, 4x faster than numpy's
        o = memoryview(offsets).cast("B")[start:start + (len(array) + 1) * size].cast(code)
        d = memoryview(data) if data is not None else memoryview(b"")
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return lambda i: str(d[o[i]:o[i + 1]], "utf-8")
        return lambda i: bytes(d[o[i]:o[i + 1]])
    if array.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        values = array.to_numpy(zero_copy_only=True)
        return lambda i: values[i].item()
    return lambda i: array[i].as_py()


class _PartRows:
    """One part's metadata table, read a row at a time through :func:`_value_reader` per column."""

    def __init__(self, table: Any) -> None:
        self.batches = table.to_batches()
        self.starts = [0]
        for batch in self.batches:
            self.starts.append(self.starts[-1] + batch.num_rows)
        self.readers: dict[int, dict[str, Callable[[int], Any]]] = {}

    def row(self, r: int, columns: Sequence[str] | None) -> dict[str, Any]:
        b = bisect_right(self.starts, r) - 1
        readers = self.readers.get(b)
        if readers is None:       # built once per batch; a race builds it twice, harmlessly
            batch = self.batches[b]
            readers = self.readers[b] = {name: _value_reader(batch.column(j))
                                         for j, name in enumerate(batch.schema.names)}
        local = r - self.starts[b]
        names = readers if columns is None else [c for c in columns if c in readers]
        return {name: readers[name](local) for name in names}


class MetadataStore:
    """Every indexed part's metadata, memory-mapped Arrow; ``rows(ids)`` -> one dict per id."""

    def __init__(self, root: str | Path, parts: Sequence[int], rows: Sequence[int]) -> None:
        self.root, self.part_numbers = Path(root), list(parts)
        self.parts = _Parts(rows)
        self._tables: dict[int, Any] = {}
        self._rows: dict[int, _PartRows] = {}

    def _table(self, k: int):
        import pyarrow as pa

        if k not in self._tables:   # zero-copy: the table's buffers point into the mapped file
            source = pa.memory_map(str(arrow_path(self.root, self.part_numbers[k])), "r")
            self._tables[k] = pa.ipc.open_file(source).read_all()
        return self._tables[k]

    @property
    def columns(self) -> list[str]:
        return self._table(0).column_names if self.part_numbers else []

    def rows(self, ids: Sequence[int], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        out = []
        for k, r in self.parts.locate(ids):
            part = self._rows.get(k)
            if part is None:
                part = self._rows[k] = _PartRows(self._table(k))
            out.append(part.row(r, columns))
        return out

    def column(self, name: str) -> list[Any]:
        """One column over every row (a filter scan reads only this column's pages)."""
        out: list[Any] = []
        for k in range(len(self.part_numbers)):
            table = self._table(k)
            out += table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
        return out


__all__ = ["MetadataStore", "VectorStore", "arrow_path", "copy_part"]
