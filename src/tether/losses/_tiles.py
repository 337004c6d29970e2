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
