"""Evaluation results in CLIP_benchmark's JSON layout, and their merge into one CSV table.

One JSON file per (dataset, model, task): ``{"dataset", "model", "pretrained", "task",
"metrics", "language"}``, written atomically, so a table can be rebuilt from whatever runs
finished; see docs/metrics.md.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import DataError
from ..io import atomic_write_text

__all__ = ["ID_FIELDS", "result_record", "write_result", "read_result", "merge_results", "write_csv"]

ID_FIELDS = ("dataset", "model", "pretrained", "task", "language")


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON types: numpy/torch scalars and arrays become numbers/lists, NaN/inf become None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    tolist = getattr(value, "tolist", None)          # numpy / torch scalars and arrays
    if callable(tolist):
        return _jsonable(tolist(), where)
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")


def result_record(dataset: str, model: str, task: str, metrics: Mapping[str, Any], language: str = "en",
                  pretrained: str = "") -> dict[str, Any]:
    """One evaluation result as CLIP_benchmark writes it.

    ``{"dataset", "model", "pretrained", "task", "metrics", "language"}``; ``task`` is e.g.
    ``zeroshot_classification``, ``zeroshot_retrieval`` or ``linear_probe``.  ``pretrained`` is
    CLIP_benchmark's checkpoint tag (empty when ``model`` already names the checkpoint).  Metric
    values are made JSON-safe (numpy/torch -> Python, NaN -> null).
    """
    for name, value in (("dataset", dataset), ("model", model), ("task", task), ("language", language)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if not isinstance(pretrained, str):
        raise ValueError(f"pretrained must be a string, got {pretrained!r}")
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, got {type(metrics).__name__}")
    return {"dataset": dataset, "model": model, "pretrained": pretrained, "task": task,
            "metrics": _jsonable(dict(metrics), "metrics"), "language": language}


def write_result(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write a :func:`result_record` as JSON, atomically (a crash never leaves half a file)."""
    missing = [k for k in ("dataset", "model", "task", "metrics") if k not in record]
    if missing:
        raise ValueError(f"result record lacks {missing}; build it with result_record()")
    text = json.dumps(_jsonable(dict(record), "record"), indent=2, ensure_ascii=False, allow_nan=False)
    path = Path(path)
    atomic_write_text(path, text + "\n")
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    """Read and check one result JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    missing = [k for k in ("dataset", "model", "task", "metrics") if k not in data]
    if missing:
        raise DataError(f"{path}: not a CLIP_benchmark-style result (missing {missing})")
    if not isinstance(data["metrics"], dict):
        raise DataError(f"{path}: 'metrics' must be an object")
    return data


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(p.glob("*.json")))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no result file or directory: {p}")
    return out


def merge_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Rows for a table: one per (dataset, model, pretrained, task, language).

    ``paths``: result JSON files and/or directories (their ``*.json``).  Each row holds the id
    fields, ``model_fullname`` (``model`` + " " + ``pretrained``, as CLIP_benchmark's ``build``)
    and every scalar metric; list/dict metrics (per-class accuracy, confusion matrix, sweep table)
    stay in the JSON files.  The same key in two files is an error naming both.
    """
    rows: list[dict[str, Any]] = []
    seen: dict[tuple, Path] = {}
    for path in _expand(paths):
        data = read_result(path)
        row: dict[str, Any] = {k: data.get(k, "en" if k == "language" else "") for k in ID_FIELDS}
        row["model_fullname"] = f"{row['model']} {row['pretrained']}".strip()
        key = tuple(row[k] for k in ID_FIELDS)
        if key in seen:
            raise DataError(f"{path} and {seen[key]} both hold {dict(zip(ID_FIELDS, key))}")
        seen[key] = path
        for name, value in data["metrics"].items():
            if value is None or isinstance(value, (bool, int, float, str)):
                if name in row:
                    raise DataError(f"{path}: metric {name!r} clashes with an id column")
                row[name] = value
        rows.append(row)
    return rows


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as CSV (atomically): id columns first, then every metric column seen, in order
    of first appearance; a row without a column leaves the cell empty."""
    rows = list(rows)
    columns: list[str] = [c for c in (*ID_FIELDS, "model_fullname") if any(c in r for r in rows)]
    for r in rows:
        for c in r:
            if c not in columns:
                columns.append(c)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path
