"""``tether embed`` as a job: a dataset to an embedding folder in clip-retrieval's layout, resumable.

The source is read in a fixed order and cut into parts of ``part_size`` inputs (``part.py``);
each part is embedded in every asked modality and written with :func:`layout.write_part`
(embeddings first, metadata last, each atomically). ``OUT/job.json`` records the parameters
that decide the rows; rerunning the same job skips the finished parts and writes the others, so
after a kill at any point the folder ends up with exactly the rows of an uninterrupted run. A
rerun with other parameters is refused. Each part's skipped inputs, input range and time are
kept in its metadata file's Parquet key-value metadata (``tether.part``); ``OUT/summary.json``
adds up every part.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..io import atomic_write_json
from . import layout
from .job_inputs import JobError, resolve_model, resolve_source
from .part import PartRows, embed_samples, metadata_columns, part_count, part_range, read_part

DEFAULT_PART_SIZE = 10_000
JOB_FILE, SUMMARY_FILE = "job.json", "summary.json"
PART_KEY = b"tether.part"
ENGINES = ("local", "ray")
#: Test hook: ``PART:STAGE`` kills the job with SIGKILL at that point (stages: ``embedded``,
#: before any file of the part; ``files``, embeddings written, metadata not; ``written``, after).
KILL_ENV = "TETHER_TEST_KILL"
SKIPPED_LISTED = 10_000


class Job:
    """A resolved job: model, source, parameters, and how to write a part."""

    def __init__(self, model: Any, source: Any, out_dir: str | Path, *, modalities: Sequence[str],
                 part_size: int, precision: str, dtype: str, random_weights: bool = False) -> None:
        _check_options(modalities, part_size, precision, dtype)
        self.model, model_id = resolve_model(model, random_weights)
        _check_processors(self.model, modalities, model_id)
        self.source, source_id = resolve_source(source)
        self.n_inputs = len(self.source)
        if self.n_inputs == 0:
            raise JobError(f"{source_id}: the dataset is empty (no inputs to embed)")
        self.out, self.modalities, self.part_size = Path(out_dir), list(modalities), int(part_size)
        self.precision, self.dtype = precision, dtype
        self.params = {"model": model_id, "source": source_id, "inputs": self.n_inputs, "part_size": self.part_size,
                       "precision": precision, "dtype": dtype, "modalities": self.modalities}
        self.dim = int(getattr(getattr(self.model, "config", None), "embed_dim", 0))
        no_captions = getattr(self.source, "images_only", False) or getattr(self.source, "no_captions", False)
        self.caption = "text" in self.modalities or not no_captions
        self.label = getattr(self.source, "class_names", None) is not None
        self.n_parts = part_count(self.n_inputs, self.part_size)

    def prepare(self) -> list[int]:
        """Check or record ``job.json``; the numbers of the parts still to write."""
        _check_job_file(self.out, self.params)
        done = [p for p in layout.finished_parts(self.out) if p < self.n_parts]
        if done:
            width = np.load(layout.embedding_path(self.out, self.modalities[0], done[0]), mmap_mode="r").shape[1]
            if self.dim and width != self.dim:
                raise JobError(f"{layout.embedding_path(self.out, self.modalities[0], done[0])}: embeddings of width "
                               f"{width}, but the model embeds to {self.dim}; use another --out")
        return [p for p in range(self.n_parts) if p not in set(done)]

    def write(self, part: int, rows: PartRows, skipped: list[dict], seconds: float) -> None:
        """Write one part: embeddings, then the metadata with the part's record (input range, skips, time)."""
        import pyarrow as pa

        _kill_point(part, "embedded")
        start, stop = part_range(part, self.part_size, self.n_inputs)
        record = {"part": part, "start": start, "stop": stop, "rows": len(rows.kept), "seconds": round(seconds, 4),
                  "skipped": sorted(skipped + rows.skipped, key=lambda r: r["position"])}
        table = pa.table(metadata_columns(rows.kept, self.caption, self.label))
        table = table.replace_schema_metadata({PART_KEY: json.dumps(record).encode()})
        vectors = {m: rows.vectors[m] for m in self.modalities}
        layout.write_part(self.out, part, vectors, table, dtype=self.dtype,
                          before_metadata=lambda: _kill_point(part, "files"))
        _kill_point(part, "written")


def _check_processors(model: Any, modalities: Sequence[str], model_id: Any) -> None:
    """Refuse before anything is read or written: a modality the model cannot process, or a
    processor its tower cannot take (a tokenizer larger than the text tower)."""
    from ..errors import MissingProcessorError
    from ..modalities import check_processor

    for modality in modalities:
        processor = model.processors.get(modality)
        if processor is None:
            raise MissingProcessorError.for_modality(modality, model_id)
        check_processor(model, modality, processor, model_id)


def embed_dataset(model: Any, source: Any, out_dir: str | Path, *, modalities: Sequence[str] = ("image", "text"),
                  part_size: int = DEFAULT_PART_SIZE, precision: str = "fp32", dtype: str = "float16",
                  workers: int = 0, batch_size: int = 64, device: Any = None, engine: str = "local",
                  ray_address: str | None = None, ray_actors: int = 1, compare_fp32: int = 0,
                  progress: bool = True, random_weights: bool = False) -> dict[str, Any]:
    """Embed ``source`` with ``model`` into ``out_dir`` (clip-retrieval's layout); returns the summary.

    ``model``: a loaded model, a checkpoint path or a model name. ``source``: a tether data source,
    a spec dict (``tether.data.build_source``) or ``"TYPE:PATH"`` (also ``images:DIR`` and
    ``texts:FILE``). Rerunning with the same arguments resumes; other rows-deciding arguments
    (model, source, modalities, part_size, precision, dtype) are refused. ``workers`` /
    ``batch_size`` / ``engine`` may change between runs. ``compare_fp32``: embed the first N
    inputs again in fp32 and report the agreement (``summary["agreement"]``). ``random_weights``: allow
    an architecture name (random init, for testing pipelines; the Ray actors get this one model).
    """
    if engine not in ENGINES:
        raise JobError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    job = Job(model, source, out_dir, modalities=modalities, part_size=part_size, precision=precision, dtype=dtype,
              random_weights=random_weights)
    _check_precision(job.model, precision, device)
    todo = job.prepare()
    bar = _progress_bar(job, todo, progress)
    t0 = time.perf_counter()
    if engine == "ray":
        from .ray_engine import run_parts_on_ray
        spec = model if isinstance(model, (str, Path)) and not random_weights else job.model
        written = run_parts_on_ray(job, todo, model_spec=spec,
                                   batch_size=batch_size, workers=workers, device=device, address=ray_address,
                                   actors=ray_actors, on_part=bar)
    else:
        written = _run_local(job, todo, batch_size=batch_size, workers=workers, device=device, on_part=bar)
    if bar is not None:
        bar.close()
    summary = summarize(job.out, job.params, {"engine": engine, "parts_written": written,
                                               "seconds": round(time.perf_counter() - t0, 3)})
    if compare_fp32:
        from .agreement import precision_agreement
        summary["agreement"] = precision_agreement(job, compare_fp32, batch_size=batch_size, device=device)
    atomic_write_json(job.out / SUMMARY_FILE, summary)
    return summary


def _run_local(job: Job, todo: Iterable[int], *, batch_size: int, workers: int, device: Any,
               on_part: Callable[[int, int], None] | None) -> int:
    written = 0
    for part in todo:
        t0 = time.perf_counter()
        samples, skipped = read_part(job.source, part, job.part_size)
        rows = embed_samples(job.model, samples, job.modalities, base=job.source, batch_size=batch_size,
                             workers=workers, precision=job.precision, device=device)
        job.write(part, rows, skipped, time.perf_counter() - t0)
        written += 1
        if on_part is not None:
            on_part(part, len(rows.kept))
    return written


def _check_options(modalities: Sequence[str], part_size: int, precision: str, dtype: str) -> None:
    from ..embedding.precision import PRECISIONS

    if isinstance(modalities, str) or not modalities or len(set(modalities)) != len(modalities):
        raise JobError(f"modalities must be a non-empty list of distinct names, got {modalities!r}")
    if isinstance(part_size, bool) or not isinstance(part_size, int) or part_size < 1:
        raise JobError(f"part_size must be a positive integer, got {part_size!r}")
    if precision not in PRECISIONS:
        raise JobError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if dtype not in layout.DTYPES:
        raise JobError(f"dtype must be one of {', '.join(layout.DTYPES)}, got {dtype!r}")


def _check_precision(model: Any, precision: str, device: Any) -> None:
    """Stop before any file is written when the device cannot run ``precision`` (fp16 on a CPU)."""
    import torch

    from ..embedding.precision import autocast

    from ..devices import pick_device

    param = next(model.parameters(), None)
    autocast(precision, pick_device(device, "--device") if device is not None else
             (param.device if param is not None else torch.device("cpu")))


def _check_job_file(out: Path, params: dict[str, Any]) -> None:
    """Record the job's parameters, or refuse a folder made with other ones (naming the differences)."""
    path = out / JOB_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        params = json.loads(json.dumps(params))  # tuples -> lists, as read back
        differ = [f"{k} {params.get(k)!r} (was {old.get(k)!r})" for k in sorted(set(old) | set(params))
                  if old.get(k) != params.get(k)]
        if differ:
            raise JobError(f"{out} was made by another job; differing: {'; '.join(differ)}. "
                           "Rerun with the original parameters to resume, or use another --out")
        return
    if layout.finished_parts(out):
        raise JobError(f"{out} holds embedding parts but no {JOB_FILE}: not a folder `tether embed` can resume; "
                       "use another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, params)


def _kill_point(part: int, stage: str) -> None:
    if os.environ.get(KILL_ENV) == f"{part}:{stage}":
        os.kill(os.getpid(), signal.SIGKILL)


def _progress_bar(job: Job, todo: list[int], enabled: bool):
    """A bar over input positions (finished parts count as done); returns its per-part update."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    left = {p: part_range(p, job.part_size, job.n_inputs) for p in todo}
    bar = tqdm(total=job.n_inputs, initial=job.n_inputs - sum(b - a for a, b in left.values()),
               unit="sample", desc=f"embedding {'+'.join(job.modalities)}")

    class _Update:
        def __call__(self, part: int, rows: int) -> None:
            a, b = left[part]
            bar.update(b - a)

        def close(self) -> None:
            bar.close()
    return _Update()


def part_record(root: str | Path, part: int) -> dict[str, Any]:
    """The record a finished part keeps in its metadata file (input range, rows, skipped inputs, time)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(layout.metadata_path(root, part)).metadata or {}
    if PART_KEY not in meta:
        raise JobError(f"{layout.metadata_path(root, part)}: no {PART_KEY.decode()} record "
                       "(not written by tether embed)")
    return json.loads(meta[PART_KEY])


def summarize(root: str | Path, params: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The job's summary over every finished part: counts, skips by reason, throughput, parts."""
    root = Path(root)
    records = [part_record(root, p) for p in layout.finished_parts(root)]
    skipped = [s for r in records for s in r["skipped"]]
    by_reason: dict[str, int] = {}
    for s in skipped:
        by_reason[s["reason"]] = by_reason.get(s["reason"], 0) + 1
    positions = sum(r["stop"] - r["start"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    n_parts = part_count(params["inputs"], params["part_size"])
    return {
        "model": params["model"], "source": params["source"], "modalities": params["modalities"],
        "precision": params["precision"], "dtype": params["dtype"], "part_size": params["part_size"],
        "complete": len(records) == n_parts,
        "counts": {"inputs": params["inputs"], "read": positions, "rows": sum(r["rows"] for r in records),
                   "skipped": len(skipped), "parts": len(records), "parts_expected": n_parts},
        "skips": dict(sorted(by_reason.items())),
        "skipped": skipped[:SKIPPED_LISTED], "skipped_truncated": len(skipped) > SKIPPED_LISTED,
        "throughput": {"samples_per_s": round(positions / seconds, 3) if seconds > 0 else None,
                       "seconds": round(seconds, 3)},
        "run": run,
        "parts": [{k: r[k] for k in ("part", "start", "stop", "rows", "seconds")} | {"skipped": len(r["skipped"])}
                  for r in records],
    }


def summary_line(summary: dict[str, Any], out: str | Path) -> str:
    """One line for the end of a job: rows, skips by reason, throughput, where."""
    c, t = summary["counts"], summary["throughput"]
    skips = ", ".join(f"{r} {n}" for r, n in summary["skips"].items()) or "none"
    rate = f", {t['samples_per_s']:.1f} samples/s" if t["samples_per_s"] else ""
    return (f"embedded {c['rows']} of {c['inputs']} inputs in {c['parts']} part(s) ({summary['precision']}, "
            f"{summary['dtype']}{rate}); skipped {c['skipped']} ({skips}) -> {out}")


__all__ = ["DEFAULT_PART_SIZE", "Job", "JobError", "embed_dataset", "part_record", "summarize", "summary_line"]
