"""The one embedding engine: inputs in, L2-normalised float32 embeddings with row ids out.

Every caller goes through :func:`embed`: ``AlignedModel.embed_images`` / ``embed_texts`` /
``embed``, ``tether embed``, ``tether eval``, the demo, zero-shot classifiers and the trainer's
evaluation. It relies on the model's general API only: ``model.processors[modality]``,
``model.encode(modality, tensor, normalize=True)`` and the modality registry's ``prepare``, so a
new modality needs no change here.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data.sample import Sample
from ..data.skips import SkipStats
from ..devices import pick_device
from ..errors import InputError
from ..modalities import check_processor, get_modality
from .inputs import is_source, make_batches
from .precision import autocast

DEFAULT_BATCH_SIZE = 64


@dataclass
class Embeddings:
    """What :func:`embed` returns.

    ``vectors``: (N, D) float32, L2-normalised, on the CPU, one row per input that could be used;
    ``ids``: which input each row is (a path or string input itself, the position of other
    in-memory inputs and tensor rows, a data source's sample key); ``skips``: the inputs that were
    skipped, counted by reason; ``samples``: for a data source, each row's Sample (caption,
    label, extra; the image dropped), else None.
    """

    vectors: torch.Tensor
    ids: list[str]
    skips: SkipStats
    samples: list[Sample] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def embed(model: Any, modality: str, inputs: Any, *, batch_size: int | None = None, workers: int = 0,
          precision: str = "fp32", device: str | torch.device | None = None, progress: bool = False,
          skips: SkipStats | None = None, strict: bool = False) -> Embeddings:
    """Embed ``inputs`` of ``modality`` with ``model``.

    ``inputs``: a list of raw inputs (paths, PIL images, bytes, strings, numpy arrays; one such
    input alone is a list of one), a tensor of already-processed inputs (pixels (N, 3, H, W),
    token ids (N, L): encoded as they are, in batches), or a tether data source (the image of
    each sample, or its caption for ``"text"``). ``workers``: DataLoader processes that decode and
    process (0: in this process). A bad input is skipped and counted in ``skips`` (pass a
    :class:`SkipStats` to add to one you keep), never fatal. ``precision``: fp32, bf16 (autocast,
    CPU or GPU) or fp16 (CUDA only). ``device``: where to run; default the model's (the model is
    moved there otherwise). The model runs in eval mode and gets its mode back afterwards.
    ``strict``: a bad input raises its own error (naming it) instead of being skipped; this is
    what ``embed_images`` / ``embed_texts`` use, whose rows must line up with their inputs.
    """
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InputError(f"workers must be an integer >= 0, got {workers!r}")
    device = _place(model, device)
    precision_context = autocast(precision, device)
    processor = model.processors.get(modality)
    check_processor(model, modality, processor)  # a tokenizer the tower cannot take: refused up front
    prepare = functools.partial(get_modality(modality).prepare, processor)
    batches = make_batches(inputs, modality, processor, prepare, batch_size, strict)
    stats = skips if skips is not None else SkipStats()
    if isinstance(inputs, torch.Tensor):
        workers = 0  # nothing to decode
    loader = DataLoader(batches, batch_size=None, num_workers=workers)
    vectors, ids, samples = [], [], []
    with _eval_mode(model), torch.inference_mode(), precision_context:
        for batch in _progress(loader, progress, modality, len(batches)):
            stats.update(batch)
            if batch["rows"] is None or len(batch["ids"]) == 0:
                continue
            out = model.encode(modality, _to_model(batch["rows"], model, device), normalize=True)
            vectors.append(_unit_float32(out))
            ids += batch["ids"]
            samples += batch["samples"]
    dim = int(getattr(getattr(model, "config", None), "embed_dim", 0))
    result = torch.cat(vectors) if vectors else torch.empty(0, dim)
    return Embeddings(result, ids, stats, samples if is_source(inputs) else None)


def _place(model: Any, device: str | torch.device | None) -> torch.device:
    """The device to run on: the model's, or ``device`` (moving the model there)."""
    param = next(model.parameters(), None)
    current = param.device if param is not None else torch.device("cpu")
    if device is None:
        return current
    device = pick_device(device)
    if device != current:
        model.to(device)
        current = next(model.parameters()).device
    return current


def _to_model(rows: torch.Tensor, model: Any, device: torch.device) -> torch.Tensor:
    """Rows on the model's device; floating rows in the model's floating dtype."""
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and rows.is_floating_point() else rows.dtype
    return rows.to(device, dtype=dtype, non_blocking=True)


def _unit_float32(out: torch.Tensor) -> torch.Tensor:
    """float32 CPU rows of length one (renormalised in float32 when computed in lower precision)."""
    if out.dtype == torch.float32:
        return out.cpu()
    return F.normalize(out.float(), dim=-1).cpu()


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _progress(loader: DataLoader, enabled: bool, modality: str, total: int):
    if not enabled:
        return loader
    from tqdm.auto import tqdm
    return tqdm(loader, desc=f"embedding {modality}", unit="batch", total=total)
