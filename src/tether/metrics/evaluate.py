"""The one evaluation driver: ``tether eval``, the demo and training-time evaluation all run here.

:func:`evaluate` embeds each split of a dataset once, through the embedding engine, and runs the
tasks of :mod:`tether.metrics.tasks` on it; :func:`run_tasks` (``tether eval``) also writes one
result record per task in CLIP_benchmark's JSON format (see ``result_record``), as
``<dataset>__<model>__<task>.json`` with a plot beside it. Built-in datasets use their held-out
split for testing and their training split where a task needs one; a user's own data is named
``TYPE:PATH`` (manifest, webdataset, folder), for example ``manifest:data/val.csv``.

An evaluation sample is an input-caption pair, the input an image by default or any other
modality's (``EvalDataset.modality``: ``tuxpaint_digits`` is audio, the spoken digits scored
against the text classifier); a row whose caption is empty is dropped and counted
(``empty_caption``), as the training data pipeline does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..data.webdataset import SKIP_REASON_KEY
from ..embedding import embed
from ..errors import InputError
from .tasks import NEEDS_TRAIN, TASK_FUNCTIONS, TASK_NAMES, TASKS, Job, Split

__all__ = ["EvalDataset", "BUILTIN", "resolve_dataset", "Evaluation", "evaluate", "evaluate_splits",
           "embed_split", "run_tasks", "TASKS", "Split"]


@dataclass
class EvalDataset:
    name: str
    test: Any                      # a data spec dict (tether.data.build_source) or a source
    train: Any = None
    templates: Any = "general"
    modality: str = "image"        # what the split's inputs are (the text side is always "text")


BUILTIN = {
    "fashion_mnist": EvalDataset("fashion_mnist", {"type": "fashion_mnist", "split": "test"},
                                 {"type": "fashion_mnist", "split": "train"}, "clothing"),
    "tuxpaint": EvalDataset("tuxpaint", {"type": "tuxpaint", "split": "validation"},
                            {"type": "tuxpaint", "split": "train"}, "clipart"),
    "digits": EvalDataset("digits", {"type": "digits", "split": "test"}, {"type": "digits", "split": "train"},
                          "digits"),
    # Tux Paint's real recordings of the digits (about 20 languages), for audio towers bound to digit images
    "tuxpaint_digits": EvalDataset("tuxpaint_digits", {"type": "tuxpaint_digits"}, None, "digits", "audio"),
}


def resolve_dataset(spec: str, train_spec: str | None = None, modality: str | None = None) -> EvalDataset:
    """A built-in name, or ``TYPE:PATH`` for a user's manifest, shards or folder (of ``modality``
    inputs, default image; a built-in dataset has its own)."""
    if spec in BUILTIN:
        if modality is not None and modality != BUILTIN[spec].modality:
            raise InputError(f"dataset {spec!r} holds {BUILTIN[spec].modality} inputs, not {modality}")
        return BUILTIN[spec]
    if ":" not in spec:
        raise InputError(f"unknown dataset {spec!r}: use one of {', '.join(BUILTIN)} or TYPE:PATH "
                         "(manifest:pairs.csv, webdataset:shards/, folder:images/)")
    kind, path = spec.split(":", 1)
    train = None
    if train_spec:
        train_kind, train_path = train_spec.split(":", 1) if ":" in train_spec else (kind, train_spec)
        train = {"type": train_kind, "path": train_path}
    return EvalDataset(_slug(Path(path).stem or kind), {"type": kind, "path": path}, train,
                       modality=modality or "image")


@dataclass
class Evaluation:
    """Metrics per task, and the embedded splits they came from."""

    metrics: dict[str, dict]
    test: Split
    train: Split | None


class _Head:
    """The first ``n`` samples of a map-style source (the demo probes on 10,000 training images)."""

    def __init__(self, source: Any, n: int) -> None:
        self.source, self.n = source, min(int(n), len(source))

    def __len__(self) -> int:
        return self.n

    def sample(self, index: int, rng: Any = None) -> Any:
        return self.source.sample(index, rng)

    def __getattr__(self, name: str) -> Any:  # name, class_names, pixel_batch... of the source
        if name.startswith("__") or name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)


def embed_split(model: Any, source: Any, *, limit: int | None = None, modality: str = "image",
                **engine: Any) -> Split:
    """Embed the inputs (images by default) of a source (or data spec) once; keep each row's caption,
    label and extra."""
    if isinstance(source, Mapping):
        from ..data import build_source
        source = build_source(source)
    if limit is not None:
        source = _Head(source, limit)
    result = embed(model, modality, source, **engine)
    rows, texts = [], []
    for row, sample in enumerate(result.samples):
        caption = sample.caption.strip() if isinstance(sample.caption, str) else ""
        if caption:
            rows.append(row)
            texts.append(caption)
        else:
            result.skips.add(sample.key, sample.extra.get(SKIP_REASON_KEY) or "empty_caption")
            result.skips.kept -= 1
    samples = [result.samples[r] for r in rows]
    images = result.vectors if len(rows) == len(result.samples) else result.vectors[rows]
    labels = torch.tensor([-1 if s.label is None else int(s.label) for s in samples], dtype=torch.long)
    name = getattr(source, "name", type(source).__name__)
    return Split(name, images, texts, labels, [s.extra for s in samples], getattr(source, "class_names", None),
                 result.skips)


def evaluate_splits(model: Any, test: Split, train: Split | None, tasks: Sequence[str], *,
                    templates: Any = "general", plot_prefix: str | Path | None = None,
                    max_retrieval: int | None = None, on_result: Callable[[str, dict], None] | None = None,
                    **engine: Any) -> dict[str, dict]:
    """Run ``tasks`` on splits embedded already; ``engine``: options for the texts they embed.
    ``on_result(task, metrics)`` is called as each task finishes (so its output is never held back)."""
    _check_tasks(tasks)
    engine.pop("batch_size", None)  # texts go in batches of TEXT_BATCH_SIZE
    job = Job(model, test, train, templates, None if plot_prefix is None else str(plot_prefix),
              max_retrieval, engine)
    results = {}
    for task in tasks:
        results[task] = TASK_FUNCTIONS[task](job)
        if on_result is not None:
            on_result(task, results[task])
    return results


def evaluate(model: Any, dataset: EvalDataset, tasks: Sequence[str], *, templates: Any = None,
             plot_prefix: str | Path | None = None, train_limit: int | None = None,
             max_retrieval: int | None = None, batch_size: int = 256, workers: int = 0,
             precision: str = "fp32", device: Any = None, progress: bool = False,
             on_result: Callable[[str, dict, Split], None] | None = None) -> Evaluation:
    """Embed ``dataset``'s test split (and its training split, if a task needs it) once; run ``tasks``.

    ``templates``: zero-shot prompts (default: the dataset's set); ``plot_prefix``: where plots go
    (``<prefix><task>.png``; None: no plots); ``train_limit``: use only the first training samples;
    ``on_result(task, metrics, test_split)``: called as each task finishes.
    """
    _check_tasks(tasks)
    engine = dict(batch_size=batch_size, workers=workers, precision=precision, device=device, progress=progress)
    test = embed_split(model, dataset.test, modality=dataset.modality, **engine)
    train = None
    if dataset.train is not None and NEEDS_TRAIN.intersection(tasks):
        train = embed_split(model, dataset.train, limit=train_limit, modality=dataset.modality, **engine)
    done = None if on_result is None else (lambda task, metrics: on_result(task, metrics, test))
    metrics = evaluate_splits(model, test, train, tasks, templates=templates or dataset.templates,
                              plot_prefix=plot_prefix, max_retrieval=max_retrieval, on_result=done, **engine)
    return Evaluation(metrics, test, train)


def run_tasks(model: Any, model_name: str, dataset: EvalDataset, tasks: list[str], out_dir: str | Path,
              templates: Any = None, batch_size: int = 256, workers: int = 0, precision: str = "fp32",
              device: Any = None) -> list[Path]:
    """``tether eval``: evaluate and write one result record (and plot) per task; returns the records."""
    from .results import result_record, write_result
    _check_tasks(tasks)
    prefix = Path(out_dir) / f"{dataset.name}__{_slug(model_name)}__"
    written = []

    def write(task: str, metrics: dict, test: Split) -> None:  # each record as soon as its task is done
        record = result_record(dataset.name, model_name, TASK_NAMES[task],
                               dict(metrics, skipped_samples=test.skips.skipped))
        written.append(write_result(Path(f"{prefix}{task}.json"), record))

    evaluate(model, dataset, tasks, templates=templates, plot_prefix=prefix, batch_size=batch_size,
             workers=workers, precision=precision, device=device, on_result=write)
    return written


def _check_tasks(tasks: Sequence[str]) -> None:
    for task in tasks:
        if task not in TASKS:
            raise InputError(f"unknown task {task!r}; known: {', '.join(TASKS)}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"
