"""Input validation and small shared helpers for the loss functions."""
from __future__ import annotations

import contextlib
import math
import numbers

import torch

#: Tile edge used when ``chunk_size="auto"``, from ``bench/bench_losses.py`` on the project's
#: 2-core CPU (BENCHMARKS.md): for InfoNCE 4096 was fastest at N=16,384 on random embeddings
#: (fewer, larger GEMMs and elementwise kernels; small tiles pay a thread hand-off per kernel).
#: Tile buffers are 64 MiB each in fp32 (2 for InfoNCE); batches smaller than the tile use one.
DEFAULT_CHUNK_SIZE = 4096
#: SigLIP's sweep keeps three tile buffers and was ~9% faster with 2048-tiles than with 4096 in
#: both measurements (random at t=14.3, clustered at t=100), with half the memory.
SIGLIP_DEFAULT_CHUNK_SIZE = 2048


def shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_embeddings(name: str, t, *, finite: bool = True, allow_empty_rows: bool = False) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, d); got shape {shape(t)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.shape[1] == 0 or (t.shape[0] == 0 and not allow_empty_rows):
        raise ValueError(f"{name} is empty: shape {shape(t)}")
    if finite:
        check_finite(name, t)


def check_finite(name: str, t: torch.Tensor) -> None:
    # A NaN or inf anywhere makes the sum non-finite: one plain reduction (isfinite().all()
    # costs several passes and a bool tensor). Only a non-finite sum, which an overflowing but
    # finite tensor can also give, is looked at element by element.
    if t.numel() == 0 or bool(torch.isfinite(t.sum(dtype=compute_dtype(t.dtype)))):
        return
    if not bool(torch.isfinite(t).all()):
        what = "NaN" if bool(torch.isnan(t).any()) else "inf"
        raise ValueError(f"{name} contains {what} values")


def check_pair(name_a: str, a, name_b: str, b, *, same_rows: bool, allow_empty_rows: bool = False) -> None:
    """Both 2-D, finite, same width, dtype and device; same number of rows if asked."""
    check_embeddings(name_a, a, allow_empty_rows=allow_empty_rows)
    check_embeddings(name_b, b, allow_empty_rows=allow_empty_rows)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} has shape {shape(a)} but {name_b} has shape {shape(b)}: "
            f"the embedding widths ({a.shape[1]} vs {b.shape[1]}) must match")
    if same_rows and a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} has shape {shape(a)} but {name_b} has shape {shape(b)}: "
            f"row i of one must pair with row i of the other, so the row counts must match")
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} is {a.dtype} but {name_b} is {b.dtype}; use one dtype")
    if a.device != b.device:
        raise ValueError(f"{name_a} is on {a.device} but {name_b} is on {b.device}")


def as_scalar(name: str, value, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A Python number or one-element tensor as a 0-d tensor (autograd kept) on like's device, of
    ``dtype`` (default: like's dtype)."""
    dtype = dtype or like.dtype
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a 0-d tensor, got bool")
    if isinstance(value, numbers.Real):
        out = torch.tensor(float(value), dtype=dtype, device=like.device)
    elif isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar (0-d tensor); got shape {shape(value)}")
        if not value.is_floating_point():
            value = value.to(dtype)
        if value.device != like.device:
            if value.device.type != "cpu":
                raise ValueError(f"{name} is on {value.device} but the embeddings are on {like.device}")
            value = value.to(like.device)           # a CPU scalar is fine, as in torch ops
        out = value.reshape(()).to(dtype)
    else:
        raise TypeError(f"{name} must be a number or a 0-d tensor, got {type(value).__name__}")
    check_finite(name, out.detach())
    return out


def resolve_chunk(chunk_size, auto: int = DEFAULT_CHUNK_SIZE) -> int | None:
    """None (plain reference), "auto" (``auto``: the loss's measured default) or a positive int."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, str):
        if chunk_size == "auto":
            return auto
        raise ValueError(f'chunk_size must be None, "auto" or a positive int; got {chunk_size!r}')
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise TypeError(f'chunk_size must be None, "auto" or a positive int; got {chunk_size!r}')
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    return int(chunk_size)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Losses compute in at least float32 (half inputs are upcast)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def full_precision(device: torch.device):
    """A context with autocast off on ``device`` (a no-op when autocast is not on there).

    Under ``torch.autocast`` the N x N similarity GEMMs would otherwise run in bf16/fp16 even for
    float32 inputs, and the loss would only be good to ~3 significant digits.
    """
    try:
        on = torch.is_autocast_enabled(device.type)
    except (TypeError, RuntimeError):  # a device type autocast does not know
        on = False
    return torch.autocast(device.type, enabled=False) if on else contextlib.nullcontext()


def exp_range(dtype: torch.dtype) -> float:
    """-log of the smallest normal number: exp(x) keeps full precision for x >= -exp_range."""
    return -math.log(torch.finfo(dtype).tiny)          # 87.3 for float32, 708.4 for float64


def exp_floor(dtype: torch.dtype) -> float:
    """Exponents below this are raised to it before ``exp``.

    exp of an argument under -87 (float32) leaves the normal range, and torch's CPU exp then
    takes a slow path: 20-40x slower per element (measured 0.5 vs 20-38 ns). A trained CLIP's
    logit scale sits at its cap of 100, where most logits are that far below their row's
    maximum, so without the floor the elementwise work would dwarf the GEMMs. Raising such a term
    to exp(floor) = 1.2e-38 changes nothing next to the sums it joins (each is >= 1) and adds at
    most N * 1.2e-38 to a gradient entry.
    """
    return -(exp_range(dtype) - 1.0)


def grad_floor(dtype: torch.dtype) -> float:
    """The floor for exponents whose exp becomes a gradient weight that a GEMM multiplies.

    Higher than ``exp_floor`` by 26, so a weight times an embedding component down to 1e-11
    stays a normal number: products that go subnormal make the GEMM itself crawl (measured:
    18 s instead of 4 s for a backward at N = 16,384, t = 100 on clustered embeddings). The
    weights are final probabilities, so a raised one adds at most N * exp(floor) (1e-22 in
    float32) to an accumulated gradient entry.
    """
    return exp_floor(dtype) + 26.0


def logit_bound(xs: torch.Tensor, ys: torch.Tensor) -> float:
    """max |xs_i . ys_j| by Cauchy-Schwarz (O(N d)): bounds every logit of xs @ ys.T."""
    if xs.numel() == 0 or ys.numel() == 0:
        return 0.0
    return float(xs.norm(dim=1).max() * ys.norm(dim=1).max())


def overflow_limit(dtype: torch.dtype) -> float:
    """Partial sums above this are re-done with an exact per-tile maximum."""
    return 1e30 if dtype == torch.float32 else 1e280
