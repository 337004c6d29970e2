"""SigLIP pairwise sigmoid loss.

``siglip_block``  summed loss terms of one block of pairs: (n images) x (m texts), with the
                  diagonal as positives (``positives=True``, needs n == m) or all negatives
                  (the off-rank blocks of a distributed ring).
``siglip_loss``   the batch loss, ``siglip_block(..., positives=True) / N``.

``chunk_size=None`` is the plain computation (N x N logits in memory). An int tiles the block;
the loss terms need no normaliser, so the tiled forward also produces the gradient in the same
sweep when autograd will need it (three GEMMs per tile, nothing N x N stored) and the backward
only scales it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import _checks as C
from ._siglip_sweep import siglip_sweep


def siglip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale, logit_bias,
                chunk_size=None) -> torch.Tensor:
    """``-sum_ij log sigmoid(z_ij (t <x_i, y_j> + b)) / N``, z = +1 on the diagonal, -1 elsewhere.

    Args:
        image_embeds, text_embeds: (N, d) embeddings; row i of each is a positive pair.
        scale: t, already exponentiated (0-d tensor or number). logit_bias: b (same).
        chunk_size: None (plain), an int or ``"auto"`` (exact tiled computation).

    Returns a 0-d tensor of the inputs' dtype, computed in at least float32 with autocast off.
    """
    C.check_pair("image_embeds", image_embeds, "text_embeds", text_embeds, same_rows=True)
    total = siglip_block(image_embeds, text_embeds, scale, logit_bias, positives=True,
                         chunk_size=chunk_size, _checked=True)
    return total / image_embeds.shape[0]


def siglip_block(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale, logit_bias,
                 positives: bool, chunk_size=None, *, _checked: bool = False) -> torch.Tensor:
    """Sum (not mean) of ``-log sigmoid(z_ij (t <x_i, y_j> + b))`` over an (n, m) block of pairs.

    ``positives=True``: z = +1 on the diagonal (requires n == m), -1 elsewhere: the local block.
    ``positives=False``: every pair is a negative (z = -1), n and m may differ: a block of local
    images against another rank's texts; either side may then be empty (the sum is 0). A
    distributed SigLIP loss over world size W is
    ``(siglip_block(x, y_local, ..., True) + sum over the W-1 remote text blocks of
    siglip_block(x, y_remote, ..., False)) / n_local``.
    """
    if not isinstance(positives, bool):
        raise TypeError(f"positives must be a bool, got {type(positives).__name__}")
    if not _checked:
        C.check_pair("image_embeds", image_embeds, "text_embeds", text_embeds, same_rows=positives,
                     allow_empty_rows=not positives)
    dtype = C.compute_dtype(image_embeds.dtype)   # at least float32, with autocast off
    t = C.as_scalar("scale", scale, image_embeds, dtype)
    b = C.as_scalar("logit_bias", logit_bias, image_embeds, dtype)
    chunk = C.resolve_chunk(chunk_size, auto=C.SIGLIP_DEFAULT_CHUNK_SIZE)
    x, y = image_embeds.to(dtype), text_embeds.to(dtype)
    with C.full_precision(image_embeds.device):
        if chunk is None or image_embeds.shape[0] == 0 or text_embeds.shape[0] == 0:   # (an empty block sums to 0)
            out = _siglip_block_plain(x, y, t, b, positives)
        else:
            grad_on = torch.is_grad_enabled()
            grad_rows = grad_on and (x.requires_grad or t.requires_grad)
            grad_cols = grad_on and y.requires_grad
            grad_bias = grad_on and b.requires_grad
            out = _SigLIPBlock.apply(x, y, t, b, positives, chunk, (grad_rows, grad_cols, grad_bias))
    return out.to(image_embeds.dtype)


def _siglip_block_plain(x, y, scale, bias, positives: bool) -> torch.Tensor:
    logits = scale * (x @ y.T) + bias
    if positives:
        signs = 2 * torch.eye(x.shape[0], dtype=x.dtype, device=x.device) - 1
        return -F.logsigmoid(signs * logits).sum()
    return -F.logsigmoid(-logits).sum()


class _SigLIPBlock(torch.autograd.Function):
    """Forward computes the loss and, when asked, G = dloss/dlogits contracted on the fly:
    A = G @ Y, B = G.T @ (tX). dX = t A, dY = B, dt = sum(X * A), db = sum(G). The scale
    enters the GEMMs as their alpha, so no scaled copy of X is made."""

    @staticmethod
    def forward(ctx, x, y, scale, bias, positives, chunk, wanted):
        grad_rows, grad_cols, grad_bias = wanted
        loss, acc_a, acc_b, grad_sum = siglip_sweep(
            x, y, float(scale), float(bias), positives, chunk, grad_rows=grad_rows, grad_cols=grad_cols,
            grad_bias=grad_bias)
        dx = dy = dt = db = None
        if acc_a is not None:
            dt = torch.dot(x.reshape(-1), acc_a.view(-1))
            dx = acc_a.mul_(scale)
        if grad_cols:
            dy = acc_b
        if grad_bias:
            db = grad_sum.to(x.dtype)
        ctx.grads = (dx, dy, dt, db)
        return loss.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        dx, dy, dt, db = ctx.grads
        need = ctx.needs_input_grad
        scaled = [None if (g is None or not need[k]) else g * grad for k, g in enumerate((dx, dy, dt, db))]
        return (*scaled, None, None, None)
