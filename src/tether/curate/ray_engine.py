"""The embedding job on Ray Data: the same parts, rows and files as the local engine.

One Ray Dataset covers every part still to write: ``from_items`` of the part numbers, a
``flat_map`` that reads each part's inputs from the source (``part.read_part``: the same
positions as locally), and ``map_batches`` with an actor pool (``ActorPoolStrategy(size=n)``) whose
actors each hold a model replica and decode + embed through tether's engine
(``part.embed_samples``). Every input comes back as one row (embedded or skipped, with its
reason); the driver gathers a part's rows, sorts them by input position and writes the part with
:func:`layout.write_part`, exactly as the local engine does. A sample skipped in one modality is
dropped from all, here too.

Ray is optional: ``pip install "tether[ray]"``. Without an address (and no Ray already running in
the process) a local Ray is started; ``address="HOST:6379"`` joins a cluster started with
``ray start --head``.
"""
from __future__ import annotations

import functools
import pickle
import time
from pathlib import PurePath
from typing import Any, Callable

import numpy as np

from .job_inputs import JobError
from .part import PartRows, embed_samples, part_range, read_part


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise JobError(f"--engine ray needs Ray Data: pip install 'tether[ray]' (or 'ray[data]') ({exc})") from None
    return ray


def _read_rows(source: Any, part_size: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per input position of the part: the sample (pickled: Arrow has no type for it), or the
    reason the source refused it."""
    part = int(item["part"])
    samples, skipped = read_part(source, part, part_size)
    rows = [{"part": part, "pos": pos, "key": str(s.key), "sample": pickle.dumps(s), "reason": "", "detail": ""}
            for pos, s in samples]
    return rows + [{"part": part, "pos": r["position"], "key": r["key"], "sample": b"", "reason": r["reason"],
                    "detail": r["detail"]} for r in skipped]


class EmbedActor:
    """A model replica embedding batches of samples with tether's engine (``part.embed_samples``)."""

    def __init__(self, model: Any, modalities: list[str], precision: str, batch_size: int, workers: int,
                 device: Any, dim: int, base: Any = None) -> None:
        from .job_inputs import resolve_model

        self.model, self.base = resolve_model(model)[0].eval(), base
        self.modalities, self.precision, self.batch_size = modalities, precision, batch_size
        self.workers, self.device, self.dim = workers, device, dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(batch["pos"])
        samples = [pickle.loads(s) if s else None for s in batch["sample"]]
        live = [(int(p), s) for p, s, r in zip(batch["pos"], samples, batch["reason"]) if not r]
        rows = embed_samples(self.model, live, self.modalities, base=self.base, batch_size=self.batch_size,
                             workers=self.workers, precision=self.precision, device=self.device)
        reason, detail = list(batch["reason"]), list(batch["detail"])
        index = {int(p): i for i, p in enumerate(batch["pos"])}
        for s in rows.skipped:
            reason[index[s["position"]]], detail[index[s["position"]]] = s["reason"], s["detail"]
        out = {"part": batch["part"], "pos": batch["pos"], "key": batch["key"], "reason": _objects(reason),
               "detail": _objects(detail), "sample": _objects([pickle.dumps(_light(s)) if s else b"" for s in samples])}
        kept = {pos: j for j, (pos, _) in enumerate(rows.kept)}
        for m in self.modalities:
            vectors = np.zeros((n, self.dim), np.float32)
            for i, p in enumerate(batch["pos"]):
                if int(p) in kept:
                    vectors[i] = rows.vectors[m][kept[int(p)]]
            out[f"emb_{m}"] = vectors
        return out


def _light(sample: Any) -> Any:
    """The sample without its decoded image or encoded bytes (the metadata keeps a path, never pixels)."""
    if sample is None or isinstance(sample.image, (str, PurePath)):
        return sample
    return type(sample)(sample.key, None, sample.caption, sample.label, sample.extra)


def _objects(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _assemble(job: Any, rows: list[dict[str, Any]]) -> tuple[PartRows, list[dict[str, Any]]]:
    """A part's rows (any order) -> PartRows in input order, and its skipped inputs."""
    rows = sorted(rows, key=lambda r: int(r["pos"]))
    kept = [r for r in rows if not r["reason"]]
    vectors = {m: (np.stack([r[f"emb_{m}"] for r in kept]).astype(np.float32) if kept
                   else np.zeros((0, job.dim), np.float32)) for m in job.modalities}
    skipped = [{"position": int(r["pos"]), "key": str(r["key"]), "reason": r["reason"], "detail": r["detail"]}
               for r in rows if r["reason"]]
    return PartRows([(int(r["pos"]), pickle.loads(r["sample"])) for r in kept], vectors), skipped


def run_parts_on_ray(job: Any, todo: list[int], *, model_spec: Any, batch_size: int, workers: int, device: Any,
                     address: str | None, actors: int, on_part: Callable[[int, int], None] | None) -> int:
    """Embed and write the parts ``todo`` of ``job`` on Ray; returns how many were written."""
    if not todo:
        return 0
    ray = _ray()
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise JobError(f"ray actors must be a positive integer, got {actors!r}")
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    expected = {p: part_range(p, job.part_size, job.n_inputs) for p in todo}
    ds = ray.data.from_items([{"part": p} for p in todo], override_num_blocks=len(todo))
    ds = ds.flat_map(functools.partial(_read_rows, job.source, job.part_size), num_cpus=0)
    gpus = 1 if str(device or "").startswith("cuda") else 0  # one GPU per replica when asked for CUDA
    ds = ds.map_batches(EmbedActor, compute=ray.data.ActorPoolStrategy(size=actors), batch_size=batch_size,
                        num_cpus=1, num_gpus=gpus, batch_format="numpy",
                        fn_constructor_kwargs={"model": model_spec, "modalities": job.modalities,
                                               "precision": job.precision, "batch_size": batch_size,
                                               "workers": workers, "device": device, "dim": job.dim,
                                               # arrays' vectorised pixels, as the local engine makes them
                                               "base": job.source if hasattr(job.source, "pixel_batch") else None})
    pending: dict[int, list[dict[str, Any]]] = {}
    written, t0 = 0, time.perf_counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["pos"])):
            row = {k: v[i] for k, v in batch.items()}
            pending.setdefault(int(row["part"]), []).append(row)
        for part in [p for p, rows in pending.items() if len(rows) == expected[p][1] - expected[p][0]]:
            rows, skipped = _assemble(job, pending.pop(part))
            job.write(part, rows, skipped, time.perf_counter() - t0)
            t0 = time.perf_counter()
            written += 1
            if on_part is not None:
                on_part(part, len(rows.kept))
    if pending:
        raise RuntimeError(f"Ray returned incomplete parts {sorted(pending)}; rerun the same command to finish them")
    return written


__all__ = ["EmbedActor", "run_parts_on_ray"]
