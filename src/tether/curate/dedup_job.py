"""``tether dedup``: semantic deduplication of an embedding folder, with files a person can check.

Outputs in ``OUT``:

* ``groups.parquet``: one row per member of a duplicate group: group_id, key, row (index in the
  folder), kept, similarity to the kept member (1 for the kept one);
* ``keep.parquet``: every row: key, kept, reason (``duplicate`` or null), duplicate_of (the key
  of its group's kept member);
* ``sweep.md`` / ``sweep.png``: pairs, groups and the fraction removed at several thresholds
  (pairs are found once, at the lowest threshold, and each threshold keeps those above it);
* ``largest_groups.png``: a contact sheet of the largest groups (kept member framed green);
* ``summary.json`` (threshold, mode, keep rule, counts, seconds; in cluster mode the recall
  against exact mode, measured on the exact partners of a sample of rows).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .contact_sheet import GREEN, Tile, contact_sheet, image_file
from .dedup import DedupResult, deduplicate, removed_fraction
from .layout import read_embeddings, read_metadata
from .pairs import BLOCK, Pairs, _Collector, check_threshold, cluster_pairs, exact_pairs, normalize_rows

__all__ = ["DedupJob", "dedup_folder", "sample_recall", "DEFAULT_SWEEP"]

DEFAULT_SWEEP = (0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99)


@dataclass
class DedupJob:
    result: DedupResult
    keys: list[str]
    sweep: list[dict]
    seconds: float
    recall: dict | None = None
    files: list[Path] = field(default_factory=list)


def sample_recall(x: np.ndarray, pairs: Pairs, threshold: float, rows: int = 2000, seed: int = 0) -> dict:
    """Recall of ``pairs`` against the exact pair set, on the exact partners of ``rows`` random rows
    (all rows when there are fewer): found by brute force against every row, so it is exact."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(x), size=min(rows, len(x)), replace=False))
    col = _Collector(x, threshold)
    everyone = np.arange(len(x))
    for s in range(0, len(sample), BLOCK):
        col.add(sample[s:s + BLOCK], everyone, upper=False)
    ref = col.result()
    keep = ref.i != ref.j
    truth = set(zip(ref.i[keep].tolist(), ref.j[keep].tolist()))
    in_sample = np.isin(pairs.i, sample) | np.isin(pairs.j, sample)
    found = set(zip(pairs.i[in_sample].tolist(), pairs.j[in_sample].tolist()))
    hit = len(truth & found)
    return {"sample_rows": int(len(sample)), "exact_pairs": len(truth), "found": hit,
            "recall": hit / len(truth) if truth else 1.0}


def dedup_folder(folder: str | Path, out: str | Path, threshold: float, *, mode: str = "exact",
                 keep: str = "first", modality: str = "image", n_clusters: int | None = None,
                 sweep: Sequence[float] | None = None, recall_rows: int = 2000, seed: int = 0,
                 sheet_groups: int = 8, progress: bool = False) -> DedupJob:
    """Deduplicate ``folder``'s ``modality`` embeddings and write the outputs (module docstring)."""
    threshold = check_threshold(threshold)
    folder, out = Path(folder), Path(out)
    sweep = sorted(set([threshold] + [float(t) for t in (sweep if sweep is not None else
                                                         [t for t in DEFAULT_SWEEP if t >= threshold - 0.1])]))
    for t in sweep:
        check_threshold(t)
    x = normalize_rows(read_embeddings(folder, modality), f"{folder.name}/{modality} embeddings")
    meta = read_metadata(folder)
    columns = meta.to_pydict()
    keys = [str(k) for k in columns.get("key", range(len(x)))]
    scores = None
    if keep == "score":
        from .score import read_scores
        scores = read_scores(folder)
    started = time.perf_counter()
    find = exact_pairs if mode == "exact" else cluster_pairs
    if mode not in ("exact", "cluster"):
        raise ConfigError(f"mode must be 'exact' or 'cluster', got {mode!r}")
    pairs = find(x, sweep[0], n_clusters=n_clusters, seed=seed, progress=progress)
    result = deduplicate(x, threshold, mode, keep, scores=scores, pairs=pairs)
    seconds = time.perf_counter() - started
    recall = sample_recall(x, result.pairs, threshold, recall_rows, seed) if mode == "cluster" else None
    job = DedupJob(result, keys, removed_fraction(pairs, len(x), sweep), seconds, recall)
    job.files = _write_outputs(out, folder, job, columns, modality, sheet_groups)
    return job


def _parquet(path: Path, data: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(pa.table(data), buf)
    return atomic_write_bytes(path, buf.getvalue())


def _write_outputs(out: Path, folder: Path, job: DedupJob, columns: dict, modality: str, sheet_groups: int
                   ) -> list[Path]:
    r = job.result
    grouped = np.flatnonzero(r.group_ids >= 0)
    grouped = grouped[np.lexsort((grouped, r.group_ids[grouped]))]
    files = [_parquet(out / "groups.parquet", {
        "group_id": r.group_ids[grouped], "key": [job.keys[i] for i in grouped.tolist()], "row": grouped,
        "kept": r.keep[grouped], "similarity_to_kept": r.sim_to_kept[grouped]})]
    files.append(_parquet(out / "keep.parquet", {
        "key": job.keys, "kept": r.keep, "reason": [None if k else "duplicate" for k in r.keep.tolist()],
        "duplicate_of": [None if k else job.keys[p] for k, p in zip(r.keep.tolist(), r.kept_row.tolist())]}))
    files += _write_sweep(out, job)
    files.append(_largest_groups_sheet(out / "largest_groups.png", job, columns, modality, sheet_groups))
    summary = {"folder": str(folder), "modality": modality, "rows": len(job.keys), "threshold": r.threshold,
               "mode": r.mode, "keep": r.keep_rule, "pairs": len(r.pairs), "groups": r.n_groups,
               "removed": r.n_removed, "fraction_removed": r.n_removed / len(job.keys),
               "seconds": round(job.seconds, 3), "recall_vs_exact": job.recall, "sweep": job.sweep}
    files.append(atomic_write_json(out / "summary.json", summary))
    return files


def _write_sweep(out: Path, job: DedupJob) -> list[Path]:
    from ..metrics.scores import _import_matplotlib
    from ..io import atomic_file
    lines = ["| threshold | pairs | groups | rows removed | fraction removed |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['threshold']:g} | {s['pairs']} | {s['groups']} | {s['removed']} | {s['fraction_removed']:.2%} |"
              for s in job.sweep]
    md = atomic_write_text(out / "sweep.md", "\n".join(lines) + "\n")
    _, Figure, FigureCanvasAgg = _import_matplotlib()
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([s["threshold"] for s in job.sweep], [s["fraction_removed"] for s in job.sweep], "o-")
    ax.axvline(job.result.threshold, color="crimson", linestyle="--", linewidth=1)
    ax.set_xlabel("cosine threshold")
    ax.set_ylabel("fraction of rows removed")
    ax.set_title(f"{job.result.mode} mode, keep={job.result.keep_rule}", fontsize="medium")
    fig.tight_layout()
    FigureCanvasAgg(fig)
    with atomic_file(out / "sweep.png") as tmp:
        fig.savefig(tmp, format="png")
    return [md, out / "sweep.png"]


def _largest_groups_sheet(path: Path, job: DedupJob, columns: dict, modality: str, n_groups: int) -> Path:
    r = job.result
    per_row = 6
    sizes = np.bincount(r.group_ids[r.group_ids >= 0], minlength=r.n_groups)
    largest = np.argsort(-sizes, kind="stable")[:n_groups]
    tiles, labels, names = [], [], list(columns)
    for g in largest.tolist():
        members = np.flatnonzero(r.group_ids == g)
        members = np.r_[members[r.keep[members]], members[~r.keep[members]]][:per_row]
        labels.append(f"group {g}\n{sizes[g]} rows")
        for i in members.tolist():
            row = {c: columns[c][i] for c in names}
            tag = "kept" if r.keep[i] else f"{r.sim_to_kept[i]:.3f}"
            tiles.append(Tile(image_file(row) if modality == "image" else None,
                              [f"{tag}  {job.keys[i]}", str(row.get("caption") or "")],
                              GREEN if r.keep[i] else None))
        tiles += [None] * (per_row - len(members))
    title = f"largest duplicate groups ({modality}, threshold {r.threshold:g}); green: kept, number: cosine to kept"
    return contact_sheet(tiles, path, columns=per_row, title=title, row_labels=labels)
