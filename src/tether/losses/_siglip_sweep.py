"""Tiled SigLIP kernel: the block's loss and, optionally, its gradient in one sweep.

Per tile of logits x = t L + b (L = xs @ ys.T, the embeddings as given) the loss terms are
softplus(x) for a negative and softplus(-x) for a positive (the diagonal of a local block), and
the gradient weight is G = sigmoid(x) for a negative, -sigmoid(-x) for a positive. SigLIP needs
no normaliser, so the gradient needs no second pass: three GEMMs per tile in all (L, G @ ys,
G.T @ xs).

The elementwise work is the part worth saving: exact per-element ``log1p(exp(x))`` costs about as
much as the rest of the tile's elementwise work together. But the gradient already needs
g = sigmoid(x), and for a negative

    softplus(x) = -log(1 - g) = g + g^2/2 + g^3/3 + ...        (all terms positive),

so a tile whose negatives all have small g gets its loss from sums the gradient makes anyway
(sum g, and a dot product or two), with the truncation error bounded a posteriori from the
same sums: below float precision of the tile's total, or the tile takes the exact route
(``log1p(exp(x))``). Typical tiles (easy negatives, x well below 0) take the series; tiles
holding hard negatives take the exact route, so the result is exact either way.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import grad_floor
from ._tiles import TileBuffers, blocks

_SERIES_GMAX = 0.05        # beyond this the series needs more terms than it saves


def _negatives_sum_series(g: torch.Tensor, gmax: float, scratch: torch.Tensor, eps: float):
    """sum(-log(1 - g)) over the tile from a truncated series, or None when the truncation
    error could exceed ``eps`` relative (then the caller takes the exact route).

    ``gmax`` is max g or any bound above it (the sweep has it from the tile's largest logit).
    Returns (loss, sum_g, order). Remainder bounds, with g_max = max g < 1:
    after g^2/2: sum_k>=3 g^k/k <= g_max * sum g^2 / (3 (1 - g_max));
    after g^3/3: sum_k>=4 g^k/k <= g_max * sum g^3 / (4 (1 - g_max)).
    """
    flat = g.view(-1)
    s1 = flat.sum()
    if not gmax <= _SERIES_GMAX:           # (NaN falls through to the exact route too)
        return None, s1, 0
    s2 = torch.dot(flat, flat)
    tail = gmax / (1.0 - gmax)
    budget = eps * float(s1)
    if tail * float(s2) / 3.0 <= budget:
        return s1 + s2 / 2, s1, 2
    g2 = torch.mul(g, g, out=scratch).view(-1)
    s3 = torch.dot(g2, flat)
    if tail * float(s3) / 4.0 <= budget:
        return s1 + s2 / 2 + s3 / 3, s1, 3
    return None, s1, 0


def _negatives_sum_exact(logits: torch.Tensor, terms: torch.Tensor, diag_zero: bool,
                         threshold: float) -> torch.Tensor:
    """sum(softplus(x)) over the tile's negatives: exp + log1p (two vectorised passes, ~4x
    faster than torch's CPU softplus and exact for x << 0), softplus's linear branch only when
    exp overflows. ``diag_zero``: the diagonal holds positives, excluded here."""
    torch.exp(logits, out=terms).log1p_()
    if diag_zero:
        terms.diagonal().zero_()
    total = terms.sum()
    if not bool(torch.isfinite(total)):
        torch.ops.aten.softplus.out(logits, 1, threshold, out=terms)
        if diag_zero:
            terms.diagonal().zero_()
        total = terms.sum()
    return total


class _Sweep:
    """State of one sweep: thresholds fixed from the inputs, accumulators, tile buffers."""

    def __init__(self, xs, ys, scale, bias, positives, chunk, grad_rows, grad_cols, grad_bias):
        n, m = xs.shape[0], ys.shape[0]
        self.xs, self.ys, self.scale, self.bias, self.positives = xs, ys, scale, bias, positives
        self.with_grad = grad_rows or grad_cols or grad_bias
        acc_dtype = torch.float32 if xs.device.type == "mps" else torch.float64   # MPS has no float64
        self.loss = torch.zeros((), dtype=acc_dtype, device=xs.device)
        self.grad_sum = torch.zeros((), dtype=acc_dtype, device=xs.device) if self.with_grad else None
        self.acc_a = torch.zeros_like(xs) if grad_rows else None
        self.acc_b = torch.zeros_like(ys) if grad_cols else None
        self.buf = TileBuffers(3, min(chunk, n), min(chunk, m), xs)
        self.eps = torch.finfo(xs.dtype).eps
        # softplus(x) is taken as x above the threshold; e^-x must be below half an ulp of x there.
        self.threshold = 20.0 if xs.dtype == torch.float32 else 40.0
        # Far-negative x sends torch's CPU exp and sigmoid down a slow path, and tiny sigmoid
        # weights would make the gradient GEMMs' products subnormal: a tile with logits below
        # grad_floor (-60 in fp32) has them raised to it in place first (exp(-60) and
        # sigmoid(-60) are below anything their sums can notice). Far-positive x slows sigmoid
        # the same way; its weights are clamped to the same range (sigmoid = 1 there).
        self.g_floor = grad_floor(xs.dtype)

    def tile(self, i0: int, i1: int, j0: int, j1: int) -> None:
        xi, yj = self.xs[i0:i1], self.ys[j0:j1]
        rows, cols = i1 - i0, j1 - j0
        # x = t L + b straight from the GEMM (alpha = t, beta = 1 on a bias-filled tile): no
        # scaled copy of the rows and no separate pass to add the bias.
        logits = self.buf.get(0, rows, cols).fill_(self.bias).addmm_(xi, yj.T, alpha=self.scale)
        # Positives sit on the main diagonal of the tiles with i0 == j0 (square blocking). Keep
        # them aside and put x = b in their place, a value every tile's range already spans,
        # so the range below is the negatives' (their diagonal terms are zeroed later anyway).
        diag = logits.diagonal().clone() if self.positives and i0 == j0 else None
        if diag is not None:
            logits.diagonal().fill_(self.bias)
        # The tile's actual range decides the clamps (the Cauchy-Schwarz bound is loose at a
        # large scale) and bounds max g for the series, in one read.
        low, high = (float(v) for v in torch.aminmax(logits))
        if low < self.g_floor:
            logits.clamp_min_(self.g_floor)
        g = self.buf.get(1, rows, cols)
        if high > -self.g_floor:
            torch.clamp(logits, max=-self.g_floor, out=g).sigmoid_()
        else:
            torch.sigmoid(logits, out=g)
        if diag is not None:
            g.diagonal().zero_()
            self.loss += F.softplus(-diag, threshold=self.threshold).sum()
        gmax = 1.0 / (1.0 + math.exp(min(-high, 700.0)))   # sigmoid(high), no overflow; NaN stays NaN
        negatives, g_sum, _ = _negatives_sum_series(g, gmax, self.buf.get(2, rows, cols), self.eps)
        if negatives is None:
            negatives = _negatives_sum_exact(logits, self.buf.get(2, rows, cols), diag is not None,
                                             self.threshold)
        self.loss += negatives
        if not self.with_grad:
            return
        self.grad_sum += g_sum
        if diag is not None:
            positive_g = torch.sigmoid(-diag).neg_()
            g.diagonal().copy_(positive_g)
            self.grad_sum += positive_g.sum()
        if self.acc_a is not None:
            self.acc_a[i0:i1].addmm_(g, yj)
        if self.acc_b is not None:
            self.acc_b[j0:j1].addmm_(g.T, xi, alpha=self.scale)


def siglip_sweep(xs: torch.Tensor, ys: torch.Tensor, scale: float, bias: float, positives: bool,
                 chunk: int, grad_rows: bool, grad_cols: bool, grad_bias: bool):
    """Sum of the block's loss terms and, if asked, its gradient in the same sweep, for the
    logits x = scale * xs @ ys.T + bias.

    Returns (loss, A = G @ ys if grad_rows, B = scale * G.T @ xs if grad_cols, sum(G) if any
    gradient is asked for), with G = d loss / d x as in the module docstring.
    """
    sweep = _Sweep(xs, ys, scale, bias, positives, chunk, grad_rows, grad_cols, grad_bias)
    for i0, i1 in blocks(xs.shape[0], chunk):
        for j0, j1 in blocks(ys.shape[0], chunk):
            sweep.tile(i0, i1, j0, j1)
    return sweep.loss, sweep.acc_a, sweep.acc_b, sweep.grad_sum
