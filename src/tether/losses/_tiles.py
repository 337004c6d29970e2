"""Tiled kernels behind the memory-efficient losses.

Every kernel walks the (rows x columns) logit matrix ``L = xs @ ys.T`` in tiles of at most
``chunk x chunk`` and keeps only O(N) state (running maxima, sums, gradient accumulators of
shape (N, d)) plus a couple of preallocated tile buffers, so nothing of size N x N is ever
held. ``xs`` is always the row side already multiplied by the logit scale t, so one GEMM per
tile yields logits.

Conventions: I is a row block [i0, i1), J a column block [j0, j1).
"""
from __future__ import annotations

import math

import torch

from ._checks import exp_floor, exp_range, grad_floor, logit_bound, overflow_limit


class TileBuffers:
    """Reusable contiguous tile buffers (avoids a fresh multi-MiB allocation per tile)."""

    def __init__(self, count: int, chunk_rows: int, chunk_cols: int, like: torch.Tensor):
        self._flat = [torch.empty(chunk_rows * chunk_cols, dtype=like.dtype, device=like.device)
                      for _ in range(count)]

    def get(self, k: int, rows: int, cols: int) -> torch.Tensor:
        return self._flat[k][: rows * cols].view(rows, cols)


def blocks(n: int, chunk: int):
    for start in range(0, n, chunk):
        yield start, min(start + chunk, n)


def _online_update(shift: torch.Tensor, total: torch.Tensor, tile: torch.Tensor, dim: int,
                   scratch: torch.Tensor) -> None:
    """Fold the log-sum-exp of ``tile`` along ``dim`` into (shift, total) in place.

    Invariant: LSE = shift + log(total), shift = the largest logit seen so far, so every
    exponent is <= 0 (no overflow) and the largest term is exactly 1 (no harmful underflow).
    """
    tile_max = tile.amax(dim=dim)
    new_shift = torch.maximum(shift, tile_max)
    if dim == 1:
        torch.sub(tile, new_shift.unsqueeze(1), out=scratch)
    else:
        torch.sub(tile, new_shift.unsqueeze(0), out=scratch)
    scratch.clamp_min_(exp_floor(tile.dtype)).exp_()
    total.mul_(torch.exp(shift - new_shift)).add_(scratch.sum(dim=dim))
    shift.copy_(new_shift)


def shifted_exp_(tile: torch.Tensor, floor: float | None) -> torch.Tensor:
    """exp_ of already-shifted logits, raised to ``floor`` first when one is given (see
    ``exp_floor``: keeps torch's CPU exp off its slow path for far-negative arguments)."""
    if floor is not None:
        tile.clamp_min_(floor)
    return tile.exp_()


def lse_floor(xs: torch.Tensor, ys: torch.Tensor, for_grad: bool = False) -> float | None:
    """The exp floor for exponents L_ij - s with L = xs @ ys.T and s a shift or log-sum-exp of
    logits of the same matrix (plus log N): None when no exponent can fall below it.
    ``for_grad``: the exps are gradient weights for a GEMM (``grad_floor``)."""
    bound = logit_bound(xs, ys)
    most_negative = -2 * bound - math.log(max(xs.shape[0], ys.shape[0], 1)) - 1
    floor = grad_floor(xs.dtype) if for_grad else exp_floor(xs.dtype)
    return floor if most_negative < floor else None


def fast_path_fits(row_shift: torch.Tensor, col_shift: torch.Tensor, k: torch.Tensor, dtype) -> torch.Tensor:
    """Whether exp(m_i - K), exp(K - n_j) and every exp(L_ij - K) that matters stay normal.

    A column term matters if L_ij > n_j - 30 (N smaller ones add < 2^-24 for N < 6e5 to a
    column sum that is >= 1), so it is safe when K - n_j <= range - 30; the scale factors need
    K - m_i and n_j - K within the range (less 10 for rounding headroom).
    """
    r = exp_range(dtype)
    return ((k - row_shift.min() <= r - 10) & (k - col_shift.min() <= r - 30)
            & (col_shift.max() - k <= r - 10))


# --------------------------------------------------------------------------------------------
# Symmetric InfoNCE (square, positives on the diagonal): both directions in one sweep.
# --------------------------------------------------------------------------------------------

def symmetric_lse(xs: torch.Tensor, ys: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row LSE (image->text) and column LSE (text->image) of L = xs @ ys.T, one pass over tiles.

    State per row i: (shift m_i, sum s_i) with LSE_i = m_i + log s_i, and likewise (n_j, c_j)
    per column. Shifts start at the diagonal logit, a real element of both its row and its
    column, so a term that underflows relative to a shift is negligible in that LSE.

    Fast path (one exp per logit): E = exp(L - m_i) gives the row sums directly, and the column
    sums as exp(K - n_j) * (a @ E) with a_i = exp(m_i - K), K = max_i m_i: every product
    a_i E_ij = exp(L_ij - K). That is exact while ``fast_path_fits`` (no term that matters in a
    column LSE, i.e. within ~30 of its shift n_j, can leave the normal range) and no sum exceeds
    ``overflow_limit``; otherwise the tile is redone with the classic online update (tile maxima,
    two exps), which always holds.
    """
    n = xs.shape[0]
    diag = (xs * ys).sum(1)
    row_shift, row_sum = diag.clone(), torch.zeros_like(diag)
    col_shift, col_sum = diag.clone(), torch.zeros_like(diag)
    big, floor = overflow_limit(xs.dtype), lse_floor(xs, ys)
    buf = TileBuffers(2, min(chunk, n), min(chunk, n), xs)
    for i0, i1 in blocks(n, chunk):
        xi, m = xs[i0:i1], row_shift[i0:i1]
        for j0, j1 in blocks(n, chunk):
            yj, nj = ys[j0:j1], col_shift[j0:j1]
            e = shifted_exp_(torch.mm(xi, yj.T, out=buf.get(0, i1 - i0, j1 - j0)).sub_(m.unsqueeze(1)), floor)
            k = m.max()
            new_rows = row_sum[i0:i1] + e.sum(1)
            new_cols = col_sum[j0:j1] + torch.mv(e.T, torch.exp(m - k)).mul_(torch.exp(k - nj))
            fine = fast_path_fits(m, nj, k, xs.dtype) & (new_rows.max() < big) & (new_cols.max() < big)
            if bool(fine):
                row_sum[i0:i1] = new_rows
                col_sum[j0:j1] = new_cols
                continue
            tile = torch.mm(xi, yj.T, out=buf.get(0, i1 - i0, j1 - j0))
            scratch = buf.get(1, i1 - i0, j1 - j0)
            _online_update(m, row_sum[i0:i1], tile, 1, scratch)
            _online_update(nj, col_sum[j0:j1], tile, 0, scratch)
    return row_shift + row_sum.log(), col_shift + col_sum.log()


def symmetric_grad(xs: torch.Tensor, ys: torch.Tensor, row_lse: torch.Tensor, col_lse: torch.Tensor,
                   chunk: int, want_a: bool = True, want_b: bool = True):
    """A = W @ ys and B = W.T @ xs with W = softmax_rows(L) + softmax_cols(L), by tiles.

    Each tile's logits are recomputed once and both directions' probabilities are summed
    before the gradient GEMMs, so the backward costs three GEMMs per tile (two when only one
    side is trained, e.g. a locked image tower: then A or B is skipped and returned as None).
    """
    n = xs.shape[0]
    acc_a = torch.zeros_like(ys) if want_a else None
    acc_b = torch.zeros_like(xs) if want_b else None
    buf = TileBuffers(2, min(chunk, n), min(chunk, n), xs)
    floor = lse_floor(xs, ys, for_grad=True)
    for i0, i1 in blocks(n, chunk):
        xi, ri = xs[i0:i1], row_lse[i0:i1].unsqueeze(1)
        for j0, j1 in blocks(n, chunk):
            yj = ys[j0:j1]
            tile = torch.mm(xi, yj.T, out=buf.get(0, i1 - i0, j1 - j0))
            w = shifted_exp_(torch.sub(tile, ri, out=buf.get(1, i1 - i0, j1 - j0)), floor)  # row softmax
            w.add_(shifted_exp_(tile.sub_(col_lse[j0:j1].unsqueeze(0)), floor))          # + column softmax
            if want_a:
                acc_a[i0:i1].addmm_(w, yj)
            if want_b:
                acc_b[j0:j1].addmm_(w.T, xi)
    return acc_a, acc_b


# --------------------------------------------------------------------------------------------
# One-directional InfoNCE rows: queries against a (possibly larger) key set.
# --------------------------------------------------------------------------------------------

def rows_lse(xs: torch.Tensor, keys: torch.Tensor, start: torch.Tensor, chunk: int) -> torch.Tensor:
    """LSE over keys of each row of L = xs @ keys.T. ``start`` is one real logit per row (the
    target's): the initial shift, so exp(L - shift) needs no tile maximum unless a sum would
    exceed ``overflow_limit`` (then that tile is redone with the online update)."""
    nq, nk = xs.shape[0], keys.shape[0]
    shift, total = start.clone(), torch.zeros_like(start)
    big, floor = overflow_limit(xs.dtype), lse_floor(xs, keys)
    buf = TileBuffers(2, min(chunk, nq), min(chunk, nk), xs)
    for i0, i1 in blocks(nq, chunk):
        xi, m = xs[i0:i1], shift[i0:i1]
        for j0, j1 in blocks(nk, chunk):
            kj = keys[j0:j1]
            e = shifted_exp_(torch.mm(xi, kj.T, out=buf.get(0, i1 - i0, j1 - j0)).sub_(m.unsqueeze(1)), floor)
            new = total[i0:i1] + e.sum(1)
            if bool(new.max() < big):
                total[i0:i1] = new
                continue
            tile = torch.mm(xi, kj.T, out=buf.get(0, i1 - i0, j1 - j0))
            _online_update(m, total[i0:i1], tile, 1, buf.get(1, i1 - i0, j1 - j0))
    return shift + total.log()


def rows_grad(xs: torch.Tensor, keys: torch.Tensor, lse: torch.Tensor, xs_weighted: torch.Tensor,
              chunk: int, want_a: bool = True, want_b: bool = True):
    """A = P @ keys and B = P.T @ xs_weighted with P = softmax_rows(xs @ keys.T), by tiles
    (either one skipped, as None, when not wanted)."""
    nq, nk = xs.shape[0], keys.shape[0]
    acc_a = torch.zeros_like(xs) if want_a else None
    acc_b = torch.zeros_like(keys) if want_b else None
    buf = TileBuffers(1, min(chunk, nq), min(chunk, nk), xs)
    floor = lse_floor(xs, keys, for_grad=True)
    for i0, i1 in blocks(nq, chunk):
        xi, ri, wi = xs[i0:i1], lse[i0:i1].unsqueeze(1), xs_weighted[i0:i1]
        for j0, j1 in blocks(nk, chunk):
            kj = keys[j0:j1]
            p = shifted_exp_(torch.mm(xi, kj.T, out=buf.get(0, i1 - i0, j1 - j0)).sub_(ri), floor)
            if want_a:
                acc_a[i0:i1].addmm_(p, kj)
            if want_b:
                acc_b[j0:j1].addmm_(p.T, wi)
    return acc_a, acc_b


# --------------------------------------------------------------------------------------------
# SigLIP block: sum of softplus(-z * (L + b)) and, optionally, its gradient in the same pass.
# --------------------------------------------------------------------------------------------

def siglip_sweep(xs: torch.Tensor, ys: torch.Tensor, bias: torch.Tensor, positives: bool, chunk: int,
                 grad_rows: bool, grad_cols: bool, grad_bias: bool):
    """Sum of the block's loss terms and, if asked, its gradient in the same sweep.

    x = L + b; the term is softplus(x) = -log sigmoid(-x) for a negative and softplus(-x) for a
    positive (the diagonal, when ``positives``). G = d loss / d x is sigmoid(x) for a negative
    and sigmoid(x) - 1 = -sigmoid(-x) for a positive. Returns (loss, A = G @ ys if grad_rows,
    B = G.T @ xs if grad_cols, sum(G) if any gradient is asked for). SigLIP needs no
    normaliser, so the gradient needs no second pass: a tile costs three GEMMs in all.
    """
    n, m = xs.shape[0], ys.shape[0]
    with_grad = grad_rows or grad_cols or grad_bias
    acc_dtype = torch.float32 if xs.device.type == "mps" else torch.float64   # MPS has no float64
    loss = torch.zeros((), dtype=acc_dtype, device=xs.device)
    grad_sum = torch.zeros((), dtype=acc_dtype, device=xs.device) if with_grad else None
    acc_a = torch.zeros_like(xs) if grad_rows else None
    acc_b = torch.zeros_like(ys) if grad_cols else None
    buf = TileBuffers(3 if with_grad else 2, min(chunk, n), min(chunk, m), xs)
    # softplus(x) is taken as x above the threshold; e^-x must be below half an ulp of x there.
    threshold = 20.0 if xs.dtype == torch.float32 else 40.0
    # |x| beyond -exp_floor sends torch's CPU exp/sigmoid down a slow path; clamp such tiles first
    # (exp(floor) and sigmoid(-floor) = 1 are what fp32 holds there anyway; see exp_floor).
    floor, reach, b = exp_floor(xs.dtype), logit_bound(xs, ys), float(bias)
    clamp_exp = b - reach < floor
    g_floor = grad_floor(xs.dtype)   # sigmoid(x) is a GEMM weight: keep it and its products normal
    clamp_sigmoid = -(reach + abs(b)) < g_floor
    for i0, i1 in blocks(n, chunk):
        xi = xs[i0:i1]
        for j0, j1 in blocks(m, chunk):
            yj = ys[j0:j1]
            logits = torch.mm(xi, yj.T, out=buf.get(0, i1 - i0, j1 - j0)).add_(bias)
            # Negatives: -log sigmoid(-x) = softplus(x) = log1p(exp(x)). Two vectorised ops are
            # ~4x faster than torch's softplus on CPU and exact (log1p keeps the tiny terms
            # of x << 0); only exp overflow (x > 88 in fp32) needs softplus's linear branch.
            terms = buf.get(1, i1 - i0, j1 - j0)
            terms = torch.clamp(logits, min=floor, out=terms).exp_() if clamp_exp else torch.exp(logits, out=terms)
            terms.log1p_()
            # Positives sit on the main diagonal of the tiles with i0 == j0 (square blocking).
            diag = logits.diagonal() if positives and i0 == j0 else None
            if diag is not None:
                terms.diagonal().copy_(torch.nn.functional.softplus(-diag, threshold=threshold))
            tile_loss = terms.sum()
            if not bool(torch.isfinite(tile_loss)):
                torch.ops.aten.softplus.out(logits, 1, threshold, out=terms)
                if diag is not None:
                    terms.diagonal().copy_(torch.nn.functional.softplus(-diag, threshold=threshold))
                tile_loss = terms.sum()
            loss += tile_loss
            if not with_grad:
                continue
            g = buf.get(2, i1 - i0, j1 - j0)
            g = torch.clamp(logits, g_floor, -g_floor, out=g).sigmoid_() if clamp_sigmoid else torch.sigmoid(logits, out=g)
            if diag is not None:
                g.diagonal().copy_(-torch.sigmoid(-diag))
            grad_sum += g.sum()
            if grad_rows:
                acc_a[i0:i1].addmm_(g, yj)
            if grad_cols:
                acc_b[j0:j1].addmm_(g.T, xi)
    return loss, acc_a, acc_b, grad_sum
