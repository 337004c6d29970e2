"""Gradient cache: a contrastive step on a batch far larger than fits in memory.

Contrastive losses couple every pair in the batch, so plain gradient accumulation
over micro-batches changes the loss (each micro-batch only sees its own
negatives). The gradient cache (Gao et al., 2021) keeps the full-batch loss exact:

1. embed the whole batch micro-batch by micro-batch without autograd graphs;
2. compute the loss on the full set of embeddings and its gradient with respect to
   each embedding (plus the scale and bias);
3. re-encode each micro-batch with autograd and back-propagate the cached
   embedding gradients through it.

Parameter gradients equal one full-batch step's. Memory is one micro-batch of
activations plus the (B, d) embeddings. Random state (patch dropout, dropout) is
recorded per micro-batch in pass 1 and replayed in pass 3, so both passes see the
same masks. BatchNorm running statistics are updated in both passes (a ResNet
tower trained this way sees each batch twice; lock or freeze its norms).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch


class RandomState:
    """Capture and replay the CPU and CUDA generators around a forward pass."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    @contextmanager
    def replay(self):
        saved = RandomState(self.device)
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
        try:
            yield
        finally:
            torch.set_rng_state(saved.cpu)
            if saved.cuda is not None:
                torch.cuda.set_rng_state(saved.cuda, self.device)


def _split(t: torch.Tensor, size: int | None, count: int | None) -> list[torch.Tensor]:
    """Micro-batches of at most ``size`` rows; exactly ``count`` of them when it is given."""
    if count is None:
        return list(t.split(size)) if size and size < t.shape[0] else [t]
    if count <= 1:
        return [t]
    parts = list(t.split(size)) if size and -(-t.shape[0] // size) == count else list(t.tensor_split(count))
    if any(part.shape[0] == 0 for part in parts):
        raise RuntimeError(f"cannot split a local batch of {t.shape[0]} rows into {count} micro-batches: "
                           "another rank has many more rows (FSDP needs the same number of forwards on every rank)")
    return parts


def contrastive_step(model, inputs_a: torch.Tensor, inputs_b: torch.Tensor, loss_fn: Callable,
                     modalities: tuple[str, str] = ("image", "text"), micro_batch: int | None = None,
                     autocast=None, sync: Callable | None = None, num_chunks: int | None = None) -> torch.Tensor:
    """Forward and backward of ``loss_fn(emb_a, emb_b, scale, bias)`` on the full batch.

    ``inputs_a``/``inputs_b``: processed batches of the two ``modalities`` contrasted (pixels and
    token ids by default). ``micro_batch=None`` (or >= the batch) is the plain step. Returns the
    detached loss; gradients are left in ``.grad`` as after ``loss.backward()``.

    For data-parallel wrappers: ``sync(last)`` is a context entered around every forward+backward
    of the cached step (DDP passes ``no_sync()`` unless ``last``, so gradients are reduced once,
    after the final micro-batch); ``num_chunks`` fixes the number of micro-batches (FSDP: every
    rank must run as many forwards as the others). ``model`` may instead of ``scale()`` and
    ``logit_bias`` offer ``scalars() -> (scale, bias)`` (DDP routes them through its forward).
    """
    autocast = autocast or _no_autocast
    sync = sync or _always
    a, b = modalities
    parts = {a: _split(inputs_a, micro_batch, num_chunks), b: _split(inputs_b, micro_batch, num_chunks)}
    if len(parts[a]) == 1:
        with autocast():
            out = model(inputs={a: inputs_a, b: inputs_b})
            loss = loss_fn(out.embeds[a].float(), out.embeds[b].float(), out.logit_scale, out.logit_bias)
        loss.backward()
        return loss.detach()
    states: dict[str, list[RandomState]] = {a: [], b: []}
    embs: dict[str, list[torch.Tensor]] = {a: [], b: []}
    with torch.no_grad(), autocast():
        for name in (a, b):
            for chunk in parts[name]:
                states[name].append(RandomState(chunk.device))
                embs[name].append(model.encode(name, chunk, normalize=True).float())
    full = {name: torch.cat(embs[name]).requires_grad_(True) for name in (a, b)}
    with sync(False):
        with autocast():
            scale, bias = model.scalars(a, b) if hasattr(model, "scalars") else (model.scale(a, b), model.logit_bias)
            loss = loss_fn(full[a], full[b], scale, bias)
        loss.backward()  # embedding grads cached; scale/bias grads land on the parameters
    passes = [(name, chunk, grad, state) for name in (a, b) if full[name].grad is not None  # a frozen teacher
              for chunk, grad, state in  # (distillation detaches it) has no gradient to replay
              zip(parts[name], full[name].grad.split([c.shape[0] for c in parts[name]]), states[name])]
    for i, (name, chunk, grad, state) in enumerate(passes):
        with sync(i == len(passes) - 1):
            with state.replay(), autocast():
                emb = model.encode(name, chunk, normalize=True).float()
            emb.backward(grad)
    return loss.detach()


@contextmanager
def _always(last: bool):
    yield


@contextmanager
def _no_autocast():
    yield
