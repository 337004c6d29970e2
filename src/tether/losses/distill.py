"""Distillation losses: match a student's embeddings (or similarity structure) to a teacher's.

The teacher tensors are used as given: compute them under ``torch.no_grad()`` (or detach them)
unless you really want gradients to reach the teacher. Like the contrastive losses, these compute
in at least float32 with autocast off and return the student's dtype.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import _checks as C


def cosine_distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``mean_i (1 - cos(student_i, teacher_i))``, in [0, 2]. Inputs need not be normalised."""
    _check_same("student", student, "teacher", teacher)
    s, t = _upcast(student, teacher)
    with C.full_precision(student.device):
        loss = (1 - F.cosine_similarity(s, t, dim=1, eps=1e-12)).mean()
    return loss.to(student.dtype)


def l2_distill_loss(student: torch.Tensor, teacher: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``mean_i ||s_i - t_i||^2``: squared Euclidean distance per row (summed over features),
    averaged over rows.

    ``normalize=True`` (default) L2-normalises both sides first, so the loss only sees
    directions and equals ``2 * cosine_distill_loss``; ``normalize=False`` compares raw vectors.
    (``F.mse_loss`` would additionally divide by the width d.)
    """
    _check_same("student", student, "teacher", teacher)
    s, t = _upcast(student, teacher)
    with C.full_precision(student.device):
        if normalize:
            s, t = F.normalize(s, dim=1, eps=1e-12), F.normalize(t, dim=1, eps=1e-12)
        loss = (s - t).pow(2).sum(1).mean()
    return loss.to(student.dtype)


def similarity_kl_loss(student_a: torch.Tensor, student_b: torch.Tensor, teacher_a: torch.Tensor,
                       teacher_b: torch.Tensor, temperature=1.0, chunk_size=None) -> torch.Tensor:
    """Row-wise ``KL(teacher || student)`` between softmaxes of similarity matrices, mean over rows.

    ``p = softmax(teacher_a @ teacher_b.T / temperature)`` and ``q = softmax(student_a @
    student_b.T / temperature)`` row by row; the loss is ``mean_i sum_j p_ij (log p_ij - log q_ij)``.
    Student and teacher may have different widths; a and b sides may have different row counts
    (N and M). Pass normalised embeddings for cosine similarities.

    ``chunk_size=None`` builds the two N x M matrices. An int processes ``chunk_size`` rows at a
    time under activation checkpointing: each row's softmax is complete inside its block, so
    the result is exact, and memory is O(chunk_size x M) instead of O(N x M).
    """
    for name, t in (("student_a", student_a), ("student_b", student_b),
                    ("teacher_a", teacher_a), ("teacher_b", teacher_b)):
        C.check_embeddings(name, t)
    pairs = (("student_a", student_a, "student_b", student_b), ("teacher_a", teacher_a, "teacher_b", teacher_b))
    for name_a, a, name_b, b in pairs:
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"{name_a} has shape {C.shape(a)} but {name_b} has shape {C.shape(b)}: "
                             f"the widths must match to compare them")
    for name_s, s, name_t, t in (("student_a", student_a, "teacher_a", teacher_a),
                                 ("student_b", student_b, "teacher_b", teacher_b)):
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"{name_s} has shape {C.shape(s)} but {name_t} has shape {C.shape(t)}: "
                             f"student and teacher must embed the same items (same row count)")
    if isinstance(temperature, bool) or not isinstance(temperature, (numbers.Real, torch.Tensor)):
        raise TypeError(f"temperature must be a positive number, got {type(temperature).__name__}")
    dtype = C.compute_dtype(student_a.dtype)
    if isinstance(temperature, torch.Tensor):
        temperature = C.as_scalar("temperature", temperature, student_a, dtype)
        if not bool(temperature.detach() > 0):
            raise ValueError(f"temperature must be > 0, got {float(temperature)}")
    elif not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    chunk = C.resolve_chunk(chunk_size)
    n = student_a.shape[0]
    out_dtype = student_a.dtype
    student_a, student_b, teacher_a, teacher_b = _upcast(student_a, student_b, teacher_a, teacher_b)
    with C.full_precision(student_a.device):
        if chunk is None or chunk >= n:
            return (_kl_rows(student_a, student_b, teacher_a, teacher_b, temperature).sum() / n).to(out_dtype)
        total = 0
        for i0 in range(0, n, chunk):
            i1 = min(i0 + chunk, n)
            rows = checkpoint(_kl_rows, student_a[i0:i1], student_b, teacher_a[i0:i1], teacher_b, temperature,
                              use_reentrant=False)
            total = total + rows.sum()
        return (total / n).to(out_dtype)


DISTILL_LOSSES = ("cosine", "l2", "kl")


def distill_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, scale, *,
                 batch_teacher: torch.Tensor | None = None, chunk_size=None) -> torch.Tensor:
    """The distillation loss ``kind`` (one of :data:`DISTILL_LOSSES`) of the student's rows against
    the (detached) teacher's: ``cosine`` and ``l2`` row by row; ``kl`` compares each student row's
    softmax over ``batch_teacher`` (default: ``teacher``; across ranks, every rank's teacher rows)
    with the teacher row's own, at temperature 1 / ``scale``."""
    teacher = teacher.detach()
    if kind == "cosine":
        return cosine_distill_loss(student, teacher)
    if kind == "l2":
        return l2_distill_loss(student, teacher)
    if kind == "kl":
        others = teacher if batch_teacher is None else batch_teacher.detach()
        temperature = 1 / (scale.detach() if isinstance(scale, torch.Tensor) else scale)
        return similarity_kl_loss(student, others, teacher, others, temperature=temperature, chunk_size=chunk_size)
    raise ValueError(f"no distillation loss {kind!r}; expected one of {', '.join(DISTILL_LOSSES)}")


def _kl_rows(sa, sb, ta, tb, temperature) -> torch.Tensor:
    log_q = F.log_softmax((sa @ sb.T) / temperature, dim=1)
    log_p = F.log_softmax((ta @ tb.T) / temperature, dim=1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(1)


def _upcast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Half-precision inputs computed in float32 (each keeps its own float32/float64 otherwise)."""
    return tuple(t.to(C.compute_dtype(t.dtype)) for t in tensors)


def _check_same(name_a: str, a, name_b: str, b) -> None:
    C.check_embeddings(name_a, a)
    C.check_embeddings(name_b, b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {C.shape(a)} but {name_b} has shape {C.shape(b)}: "
                         f"distillation compares row i of one with row i of the other, so the shapes must match")
