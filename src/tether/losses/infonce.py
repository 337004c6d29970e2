"""InfoNCE (CLIP) losses: the symmetric batch loss and a one-directional row primitive.

``clip_loss``      mean of image->text and text->image cross-entropy, targets on the diagonal.
``infonce_rows``   per-row cross-entropy of queries against any key set with given targets:
                   the building block of a distributed CLIP loss (local rows vs gathered keys).

``chunk_size=None`` runs the plain computation (the N x N logits are materialised, autograd does
the rest). An int runs an exact tiled computation whose memory is O(N d + chunk^2): forward
keeps online log-sum-exps, backward recomputes each tile (see docs/losses.md).
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import _checks as C
from ._tiles import rows_grad, rows_lse, symmetric_grad, symmetric_lse


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale, chunk_size=None) -> torch.Tensor:
    """Symmetric InfoNCE: ``(CE(L, diag) + CE(L.T, diag)) / 2`` with ``L = t * image_embeds @ text_embeds.T``.

    Args:
        image_embeds, text_embeds: (N, d) embeddings, row i of each is a positive pair (normally
            L2-normalised; nothing here requires it).
        scale: the multiplier t = 1/tau, already exponentiated (e.g. ``model.scale()``);
            a 0-d tensor (gradients flow to it) or a number.
        chunk_size: None for the plain computation; an int (or ``"auto"``) for the exact tiled
            one that never holds the N x N matrix.

    Returns a 0-d tensor (mean over the batch of both directions' cross-entropy) of the inputs'
    dtype. Computed in at least float32 with autocast off, so bf16/fp16 embeddings (or a call
    inside ``torch.autocast``) lose no precision beyond the final rounding.
    """
    C.check_pair("image_embeds", image_embeds, "text_embeds", text_embeds, same_rows=True)
    dtype = C.compute_dtype(image_embeds.dtype)
    t = C.as_scalar("scale", scale, image_embeds, dtype)
    chunk = C.resolve_chunk(chunk_size)
    x, y = image_embeds.to(dtype), text_embeds.to(dtype)
    with C.full_precision(image_embeds.device):
        loss = _clip_loss_plain(x, y, t) if chunk is None else _SymmetricInfoNCE.apply(x, y, t, chunk)
    return loss.to(image_embeds.dtype)


def infonce_rows(query: torch.Tensor, keys: torch.Tensor, scale, targets, chunk_size=None) -> torch.Tensor:
    """Per-row cross-entropy ``-log softmax(t * query @ keys.T)[i, targets[i]]``, shape (Nq,).

    ``keys`` may have more rows than ``query`` (e.g. all-gathered from every rank). ``targets``
    is a LongTensor of key indices (Nq,), or an int ``offset`` meaning ``offset + arange(Nq)``
    (rank r of a data-parallel group with equal local batches n uses ``offset = r * n``).
    ``query`` may have no rows (an empty result). Gradients flow to query, keys and scale.
    ``clip_loss(x, y, t)`` equals
    ``(infonce_rows(x, y, t, 0).mean() + infonce_rows(y, x, t, 0).mean()) / 2``.
    """
    C.check_pair("query", query, "keys", keys, same_rows=False, allow_empty_rows=True)
    dtype = C.compute_dtype(query.dtype)
    t = C.as_scalar("scale", scale, query, dtype)
    targets = _resolve_targets(targets, query.shape[0], keys.shape[0], query.device)
    chunk = C.resolve_chunk(chunk_size)
    q, k = query.to(dtype), keys.to(dtype)
    with C.full_precision(query.device):
        if chunk is None or query.shape[0] == 0:
            out = F.cross_entropy(t * (q @ k.T), targets, reduction="none")
        else:
            out = _InfoNCERows.apply(q, k, t, targets, chunk)
    return out.to(query.dtype)


# --------------------------------------------------------------------------------------------
# Plain (reference) computations
# --------------------------------------------------------------------------------------------

def _clip_loss_plain(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * (image_embeds @ text_embeds.T)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _resolve_targets(targets, n_query: int, n_keys: int, device) -> torch.Tensor:
    if isinstance(targets, numbers.Integral) and not isinstance(targets, bool):
        if targets < 0 or targets + n_query > n_keys:
            raise ValueError(f"offset {targets} with {n_query} queries needs keys [{targets}, "
                             f"{targets + n_query}) but there are {n_keys} keys")
        return torch.arange(targets, targets + n_query, device=device)
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a LongTensor of key indices or an int offset, got {type(targets).__name__}")
    if targets.dtype not in (torch.int64, torch.int32) or targets.shape != (n_query,):
        raise ValueError(f"targets must be an integer tensor of shape ({n_query},) (one key index per "
                         f"query row); got dtype {targets.dtype}, shape {tuple(targets.shape)}")
    targets = targets.to(device=device, dtype=torch.int64)
    if n_query and (int(targets.min()) < 0 or int(targets.max()) >= n_keys):
        raise ValueError(f"targets must index the {n_keys} keys; got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    return targets


# --------------------------------------------------------------------------------------------
# Tiled autograd Functions
# --------------------------------------------------------------------------------------------

class _SymmetricInfoNCE(torch.autograd.Function):
    """loss = (sum_i r_i + sum_j c_j) / 2N - sum_i L_ii / N, r/c = row/column LSE of L.

    dloss/dL = (P + Q) / 2N - I / N with P = exp(L - r) (row softmax), Q = exp(L - c)
    (column softmax); with A = (dloss/dL) @ Y and B = (dloss/dL).T @ (tX):
    dX = t A, dY = B, dt = sum(X * A).
    """

    @staticmethod
    def forward(ctx, x, y, scale, chunk):
        xs = x * scale
        row_lse, col_lse = symmetric_lse(xs, y, chunk)
        diag = (xs * y).sum(1)
        ctx.save_for_backward(x, y, scale, row_lse, col_lse)
        ctx.chunk = chunk
        return ((row_lse - diag).mean() + (col_lse - diag).mean()) / 2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, y, scale, row_lse, col_lse = ctx.saved_tensors
        need_x, need_y, need_t, _ = ctx.needs_input_grad
        n = x.shape[0]
        xs = x * scale
        acc_a, acc_b = symmetric_grad(xs, y, row_lse, col_lse, ctx.chunk, want_a=need_x or need_t, want_b=need_y)
        dx = dy = dt = None
        if acc_a is not None:
            a = acc_a.div_(2 * n).sub_(y, alpha=1 / n)
            dt = grad * (x * a).sum() if need_t else None
            dx = a.mul_(grad * scale) if need_x else None
        if acc_b is not None:
            dy = acc_b.div_(2 * n).sub_(xs, alpha=1 / n).mul_(grad)
        return dx, dy, dt, None


class _InfoNCERows(torch.autograd.Function):
    """out_i = r_i - L_{i,t_i}. With upstream g: dL = g_i (P_ij - [j == t_i]);
    A = dL @ K, dQ = t A, dK = dL.T @ (tQ), dt = sum(Q * A)."""

    @staticmethod
    def forward(ctx, query, keys, scale, targets, chunk):
        xs = query * scale
        target_logit = (xs * keys[targets]).sum(1)
        lse = rows_lse(xs, keys, target_logit, chunk)
        ctx.save_for_backward(query, keys, scale, targets, lse)
        ctx.chunk = chunk
        return lse - target_logit

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        query, keys, scale, targets, lse = ctx.saved_tensors
        need_q, need_k, need_t, _, _ = ctx.needs_input_grad
        xs = query * scale
        g = grad.unsqueeze(1)
        xs_weighted = xs * g
        acc_a, acc_b = rows_grad(xs, keys, lse, xs_weighted, ctx.chunk, want_a=need_q or need_t, want_b=need_k)
        dq = dk = dt = None
        if acc_a is not None:
            a = acc_a.sub_(keys[targets]).mul_(g)
            dt = (query * a).sum() if need_t else None
            dq = a.mul_(scale) if need_q else None
        if acc_b is not None:
            dk = acc_b.index_add_(0, targets, xs_weighted, alpha=-1)
        return dq, dk, dt, None, None
