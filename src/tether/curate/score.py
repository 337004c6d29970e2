"""CLIP scores of an embedding folder: the cosine of each row's image and caption embeddings.

Written beside the metadata, one Parquet part per embedding part, row-aligned::

    DIR/scores/scores_0000.parquet     key, clip_score (float32; null where a row has no valid pair)
    DIR/scores/summary.json            statistics overall and per group, histogram file names
    DIR/scores/hist.png, hist_by_<column>.png

The metadata parts are left untouched (a separate folder, not a new metadata column), so
clip-retrieval, autofaiss and embedding-reader read the folder exactly as before; tether's own
jobs read the scores with :func:`read_scores`. A scores part is reused when its keys match its
metadata part, so rerunning after the embedding job added parts scores only the new ones.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_write_bytes, atomic_write_json
from ..metrics.scores import (pair_scores, plot_score_histograms, summarize_by_group,
                              summarize_scores)
from .layout import (LayoutError, PART_DIGITS, embedding_dir, embedding_path, metadata_path, open_folder,
                     read_metadata)

__all__ = ["SCORES_DIR", "SCORE_COLUMN", "ScoreResult", "scores_path", "clip_scores", "write_scores",
           "read_scores", "score_folder"]

SCORES_DIR = "scores"
SCORE_COLUMN = "clip_score"
THRESHOLDS = (0.2, 0.25, 0.28, 0.3, 0.32, 0.35)


def scores_path(root: str | Path, part: int) -> Path:
    return Path(root) / SCORES_DIR / f"{SCORES_DIR}_{part:0{PART_DIGITS}d}.parquet"


def _require_pairs(folder) -> None:
    missing = [embedding_dir(m) for m in ("image", "text") if m not in folder.modalities]
    if missing:
        raise LayoutError(f"{folder.root}: no {' or '.join(missing)}/ -- a CLIP score needs both image and "
                          "text embeddings of the same rows (embed with --images and captions)")


def _part_keys(root: Path, part: int, rows: int) -> list[str]:
    import pyarrow.parquet as pq
    path = metadata_path(root, part)
    names = pq.ParquetFile(path).schema_arrow.names
    if "key" not in names:
        return [f"{part}:{r}" for r in range(rows)]
    return [str(k) for k in pq.read_table(path, columns=["key"]).column("key").to_pylist()]


def _part_scores(root: Path, part: int) -> tuple[np.ndarray, int]:
    """One part's scores (NaN where a row's embeddings are zero or not finite) and the count of such rows."""
    img = np.load(embedding_path(root, "image", part)).astype(np.float32)
    txt = np.load(embedding_path(root, "text", part)).astype(np.float32)
    out = np.full(len(img), np.nan)
    ok = (np.isfinite(img).all(1) & np.isfinite(txt).all(1) & (np.abs(img).sum(1) > 0)
          & (np.abs(txt).sum(1) > 0))
    if ok.any():
        out[ok] = pair_scores(img[ok], txt[ok])
    return out, int((~ok).sum())


def clip_scores(folder: str | Path, *, progress: bool = False) -> np.ndarray:
    """Every row's CLIP score (float64, NaN for rows without a valid pair), in part order.

    Reads ``DIR/scores/`` where it is up to date and computes the rest (nothing is written)."""
    return _collect(folder, write=False, progress=progress)[0]


def read_scores(folder: str | Path) -> np.ndarray:
    """The scores ``tether score`` wrote, row-aligned with :func:`tether.curate.read_embeddings`."""
    import pyarrow.parquet as pq
    info = open_folder(folder)
    out = []
    for part, rows in zip(info.parts, info.rows):
        path = scores_path(info.root, part)
        if not path.is_file():
            raise LayoutError(f"{path}: missing -- run `tether score {info.root}` first")
        col = pq.read_table(path, columns=[SCORE_COLUMN]).column(SCORE_COLUMN).to_numpy(zero_copy_only=False)
        if len(col) != rows:
            raise LayoutError(f"{path}: {len(col)} rows, expected {rows} (its metadata part); rerun `tether score`")
        out.append(np.asarray(col, dtype=np.float64))
    return np.concatenate(out)


def _up_to_date(path: Path, keys: list[str]) -> np.ndarray | None:
    import pyarrow.parquet as pq
    if not path.is_file():
        return None
    table = pq.read_table(path)
    if table.column("key").to_pylist() != keys:
        return None
    return np.asarray(table.column(SCORE_COLUMN).to_numpy(zero_copy_only=False), dtype=np.float64)


def _collect(folder: str | Path, *, write: bool, progress: bool) -> tuple[np.ndarray, int, int]:
    """(scores, parts computed now, rows without a valid pair)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = open_folder(folder)
    _require_pairs(info)
    parts = zip(info.parts, info.rows)
    if progress:
        from tqdm import tqdm
        parts = tqdm(list(parts), desc="score", unit="part")
    out, computed, invalid = [], 0, 0
    for part, rows in parts:
        keys = _part_keys(info.root, part, rows)
        scores = _up_to_date(scores_path(info.root, part), keys)
        if scores is None:
            scores, _ = _part_scores(info.root, part)
            computed += 1
            if write:
                table = pa.table({"key": keys, SCORE_COLUMN: pa.array(scores.astype(np.float32),
                                                                     mask=np.isnan(scores))})
                buf = io.BytesIO()
                pq.write_table(table, buf)
                atomic_write_bytes(scores_path(info.root, part), buf.getvalue())
        invalid += int(np.isnan(scores).sum())
        out.append(scores)
    return np.concatenate(out), computed, invalid


def write_scores(folder: str | Path, *, progress: bool = False) -> np.ndarray:
    """Compute and write ``DIR/scores/scores_NNNN.parquet`` for the parts not yet scored; -> all scores."""
    return _collect(folder, write=True, progress=progress)[0]


@dataclass
class ScoreResult:
    scores: np.ndarray
    summary: dict[str, Any]
    by_group: dict[str, dict[str, Any]] | None
    files: list[Path] = field(default_factory=list)
    computed_parts: int = 0
    invalid: int = 0


def score_folder(folder: str | Path, *, group_by: str | None = None, thresholds=THRESHOLDS,
                 out: str | Path | None = None, progress: bool = False) -> ScoreResult:
    """``tether score``: write the scores, their statistics (overall and per ``group_by`` value) and histograms."""
    folder = Path(folder)
    scores, computed, invalid = _collect(folder, write=True, progress=progress)
    valid = ~np.isnan(scores)
    if not valid.any():
        raise DataError(f"{folder}: no row has a valid image-caption pair to score ({len(scores)} rows)")
    out = Path(out) if out else folder / SCORES_DIR
    groups = None
    if group_by:
        meta = read_metadata(folder)
        if group_by not in meta.column_names:
            raise ConfigError(f"--group-by {group_by!r}: no such metadata column (columns: {meta.column_names})")
        groups = np.asarray(meta.column(group_by).to_pylist(), dtype=object)[valid]
    summary = summarize_scores(scores[valid], thresholds)
    summary["invalid_rows"] = invalid
    by_group = summarize_by_group(scores[valid], groups, thresholds) if groups is not None else None
    files = [plot_score_histograms(scores[valid], out / "hist.png", thresholds=thresholds,
                                   title=f"CLIP scores of {folder.name}")]
    if groups is not None:
        files.append(plot_score_histograms(scores[valid], out / f"hist_by_{group_by}.png", groups,
                                           thresholds=thresholds, title=f"CLIP scores by {group_by}"))
    atomic_write_json(out / "summary.json", {"folder": str(folder), "rows": len(scores), "overall": summary,
                                             "group_by": group_by, "by_group": by_group,
                                             "histograms": [p.name for p in files]})
    files.append(out / "summary.json")
    return ScoreResult(scores, summary, by_group, files, computed, invalid)
