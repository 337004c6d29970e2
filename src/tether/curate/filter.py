"""``tether filter``: keep pairs by CLIP score (DataComp's semantics) and DataComp's basic rules.

Score rule: ``--min-score T`` keeps ``score >= T``; ``--top-fraction F`` first turns F into a
threshold with :func:`fraction_threshold` over the whole pool (every row with a score, before any
other rule), then keeps ``score >= threshold`` -- so ties at the threshold are all kept and a
little more than F may be kept. The basic rules are in :mod:`tether.curate.rules`.

Outputs in ``OUT``: ``keep.parquet`` (key, kept, reason: the first rule the row failed, reasons:
all of them, clip_score), ``report.md`` + ``histogram.png`` (with the cut) + contact sheets
``lowest_rejected.png`` / ``lowest_kept.png``, ``summary.json``; on request ``manifest.parquet``
(the kept rows: key, image, caption and the source's columns; ``--data manifest:OUT/manifest.parquet``
reads it) and ``shards/`` (WebDataset shards of the kept samples, written by
:func:`tether.data.write_shards`: streamed, each shard atomic).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .contact_sheet import GREEN, RED, Tile, contact_sheet, image_file
from .layout import read_metadata
from .rules import BASIC_RULES, caption_rules, image_sizes, language_rule, size_rules
from .score import clip_scores

__all__ = ["fraction_threshold", "FilterResult", "filter_folder", "RULE_ORDER"]

RULE_ORDER = ("caption_words", "caption_chars", "language", "image_min_side", "aspect_ratio", "no_score",
              "clip_score")


def fraction_threshold(scores: Any, fraction: float) -> float:
    """DataComp's threshold for keeping the top ``fraction``: the scores sorted descending, the
    element at index ``floor(N * fraction)`` (``fraction == 1`` -> the lowest score: keep all).
    NaN scores (rows without a valid pair) are left out of the pool."""
    f = float(fraction)
    if not 0.0 < f <= 1.0:
        raise ConfigError(f"fraction must lie in (0, 1], got {fraction}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[~np.isnan(s)]
    if s.size == 0:
        raise DataError("no scores: the pool is empty")
    ordered = np.sort(s)[::-1]
    return float(ordered[min(int(s.size * f), s.size - 1)])


@dataclass
class FilterResult:
    keys: list[str]
    scores: np.ndarray
    kept: np.ndarray
    reason: list[str | None]
    threshold: float | None
    rule_failures: dict[str, int]      # rows failing each rule (a row may fail several)
    first_reasons: dict[str, int]      # rows rejected, by the first rule they failed
    size_unknown: int
    files: list[Path] = field(default_factory=list)
    shards_skipped: int = 0


def _check_score_args(min_score: float | None, top_fraction: float | None) -> None:
    if (min_score is None) == (top_fraction is None):
        raise ConfigError("give exactly one of --min-score and --top-fraction")
    if min_score is not None and not -1.0 <= min_score <= 1.0:
        raise ConfigError(f"--min-score must lie in [-1, 1] (a cosine similarity), got {min_score}")
    if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
        raise ConfigError(f"--top-fraction must lie in (0, 1], got {top_fraction}")


def _rule_masks(columns: dict, rules: Sequence[str], language: str | None, progress: bool
                ) -> tuple[dict[str, np.ndarray], int]:
    masks: dict[str, np.ndarray] = {}
    captions = columns.get("caption") or [None] * len(next(iter(columns.values())))
    if {"caption_words", "caption_chars"} & set(rules):
        for name, mask in caption_rules(captions).items():
            if name in rules:
                masks[name] = mask
    if language:
        masks["language"] = language_rule(captions, language, progress)
    unknown = 0
    if {"image_min_side", "aspect_ratio"} & set(rules):
        w, h = image_sizes(columns, progress)
        size, unknown_mask = size_rules(w, h)
        unknown = int(unknown_mask.sum())
        masks.update({k: v for k, v in size.items() if k in rules})
    return masks, unknown


def filter_folder(folder: str | Path, out: str | Path, *, min_score: float | None = None,
                  top_fraction: float | None = None, rules: Sequence[str] = BASIC_RULES,
                  language: str | None = None, write_manifest: bool = False, write_shards: bool = False,
                  shard_size: int = 1000, sheet_size: int = 24, progress: bool = False) -> FilterResult:
    """Decide every row of an embedding folder and write the outputs (module docstring)."""
    _check_score_args(min_score, top_fraction)
    unknown_rules = set(rules) - set(BASIC_RULES)
    if unknown_rules:
        raise ConfigError(f"unknown rule(s) {sorted(unknown_rules)}; the rules are {BASIC_RULES}")
    folder, out = Path(folder), Path(out)
    scores = clip_scores(folder, progress=progress)
    if not (~np.isnan(scores)).any():
        raise DataError(f"{folder}: no row has a valid image-caption pair to score ({len(scores)} rows)")
    columns = read_metadata(folder).to_pydict()
    keys = [str(k) for k in columns.get("key", range(len(scores)))]
    threshold = min_score if min_score is not None else fraction_threshold(scores, top_fraction)
    masks, unknown = _rule_masks(columns, rules, language, progress)
    masks["no_score"] = ~np.isnan(scores)
    masks["clip_score"] = np.where(np.isnan(scores), True, scores >= threshold)
    kept = np.logical_and.reduce([masks[r] for r in RULE_ORDER if r in masks])
    reasons = [[r for r in RULE_ORDER if r in masks and not masks[r][i]] for i in range(len(keys))]
    result = FilterResult(
        keys, scores, kept, [r[0] if r else None for r in reasons], float(threshold),
        {r: int((~masks[r]).sum()) for r in RULE_ORDER if r in masks},
        {r: sum(1 for x in reasons if x and x[0] == r) for r in RULE_ORDER if r in masks}, unknown)
    _write_keep_list(out / "keep.parquet", result, reasons)
    result.files.append(out / "keep.parquet")
    if write_manifest:
        result.files.append(_write_manifest(out / "manifest.parquet", columns, kept))
    if write_shards:
        result.files.append(out / "shards")
        result.shards_skipped = _write_shards(out / "shards", columns, keys, kept, shard_size)
    result.files += _write_report(out, folder, result, columns, top_fraction, sheet_size)
    return result


def _write_keep_list(path: Path, result: FilterResult, reasons: list[list[str]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({"key": result.keys, "kept": result.kept, "reason": result.reason,
                      "reasons": [",".join(r) for r in reasons],
                      "clip_score": pa.array(result.scores.astype(np.float32), mask=np.isnan(result.scores))})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def _write_manifest(path: Path, columns: dict, kept: np.ndarray) -> Path:
    """The kept rows as a manifest tether's ManifestSource reads (image column: the image file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = np.flatnonzero(kept)
    names = list(columns)
    images = []
    for r in rows.tolist():
        f = image_file({c: columns[c][r] for c in names})
        images.append(str(f) if f else None)
    data = {"image": images} if "image" not in columns else {}
    data.update({c: [columns[c][r] for r in rows.tolist()] for c in names})
    buf = io.BytesIO()
    pq.write_table(pa.table(data), buf)
    return atomic_write_bytes(path, buf.getvalue())


def _write_shards(path: Path, columns: dict, keys: list[str], kept: np.ndarray, shard_size: int) -> int:
    """Stream the kept samples into WebDataset shards; -> samples skipped (no readable image)."""
    from ..data.sample import Sample
    from ..data.shards import write_shards
    names = [c for c in columns if c not in ("key", "caption")]

    def samples():
        for r in np.flatnonzero(kept).tolist():
            row = {c: columns[c][r] for c in columns}
            yield Sample(keys[r], image_file(row), str(row.get("caption") or ""),
                         extra={c: row[c] for c in names})

    result = write_shards(samples(), path, shard_size, split="kept", name="tether filter")
    return len(result.skipped)


def _sheet(path: Path, rows: np.ndarray, result: FilterResult, columns: dict, colour, title: str) -> Path:
    names = list(columns)
    tiles = []
    for r in rows.tolist():
        row = {c: columns[c][r] for c in names}
        tiles.append(Tile(image_file(row), [f"{result.scores[r]:.3f}  {result.keys[r]}",
                                            str(row.get("caption") or "")], colour))
    return contact_sheet(tiles, path, columns=6, title=title)


def _write_report(out: Path, folder: Path, result: FilterResult, columns: dict, top_fraction, sheet_size
                  ) -> list[Path]:
    from ..metrics.scores import plot_score_histograms
    valid = ~np.isnan(result.scores)
    how = (f"top {top_fraction:g} of the pool" if top_fraction is not None else "--min-score")
    files = [plot_score_histograms(result.scores[valid], out / "histogram.png", thresholds=[result.threshold],
                                   title=f"CLIP scores; cut at {result.threshold:.4f} ({how})")]
    order = np.argsort(np.where(valid, result.scores, np.inf), kind="stable")
    rejected_by_score = [r for r in order if result.reason[r] == "clip_score"][:sheet_size]
    kept = [r for r in order if result.kept[r]][:sheet_size]
    files.append(_sheet(out / "lowest_rejected.png", np.array(rejected_by_score, dtype=int), result, columns,
                        RED, "lowest-scoring pairs rejected by the score rule"))
    files.append(_sheet(out / "lowest_kept.png", np.array(kept, dtype=int), result, columns, GREEN,
                        "lowest-scoring kept pairs"))
    n = len(result.keys)
    summary = {"folder": str(folder), "rows": n, "kept": int(result.kept.sum()), "threshold": result.threshold,
               "top_fraction": top_fraction, "rule_failures": result.rule_failures,
               "first_reasons": result.first_reasons, "size_unknown": result.size_unknown,
               "shards_skipped": result.shards_skipped}
    atomic_write_json(out / "summary.json", summary)
    lines = [f"# Filter report: {folder}", "",
             f"{n} pairs, **{int(result.kept.sum())} kept** ({result.kept.mean():.1%}); CLIP-score threshold "
             f"**{result.threshold:.4f}** ({how}; kept when score >= threshold).", "",
             "| rule | rows failing it | rejected by it first |", "|---|---:|---:|"]
    lines += [f"| {r} | {result.rule_failures[r]} | {result.first_reasons[r]} |" for r in result.rule_failures]
    if result.size_unknown:
        lines += ["", f"{result.size_unknown} rows had no known image size: the size rules did not judge them."]
    lines += ["", "![histogram with the cut](histogram.png)", "",
              "Lowest-scoring rejected pairs:", "", "![lowest rejected](lowest_rejected.png)", "",
              "Lowest-scoring kept pairs:", "", "![lowest kept](lowest_kept.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return files + [out / "summary.json", out / "report.md"]
