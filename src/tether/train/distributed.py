"""Data parallelism under torchrun: process group, distributed contrastive losses, gradient averaging.

Every rank holds the same model and its own slice of the global batch. Contrastive losses couple
every pair of the batch, so the loss itself must see the other ranks' embeddings:

- :func:`distributed_clip_loss` all-gathers image and text embeddings *with gradient*
  (:class:`GatherRows`) and computes the InfoNCE rows of this rank's images against every text and
  of this rank's texts against every image, so every rank uses every negative.
- :func:`distributed_siglip_loss` never gathers: text embeddings travel around the ring of ranks
  (point-to-point send/recv) and each rank computes the sigmoid loss of its images against each
  visiting block; the gradient of every text block is accumulated along the ring and handed back
  to its owner. Memory per rank is flat in the number of ranks.

Gradient convention (see docs/distributed.md). With global batch N = sum of local batches n_r and
world size W, the global loss is the single-process loss of the whole batch, L = sum_r L_r where
L_r is rank r's share (its rows of the sums, divided by the global normaliser). Each rank
back-propagates ``W * L_r``, and :meth:`DistributedContext.average_gradients` all-reduces the
parameter gradients (SUM) and divides by W, so after it every rank holds exactly dL/dtheta of one
process with the whole batch. For equal local batches ``W * L_r`` is the familiar per-rank loss
(the mean over local rows for CLIP, sum / n_local for SigLIP), i.e. DDP's averaging convention.

The tensor these losses return has the *value* of the global loss L (all-reduced, identical on
every rank, for logging) and the *gradient* of ``W * L_r``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "GatherRows",
    "gather_rows",
    "distributed_clip_loss",
    "distributed_siglip_loss",
    "distributed_distill_loss",
]

#: Gradients are all-reduced in flat buckets of at most this many bytes (one collective per
#: bucket instead of one per parameter; bounded extra memory).
BUCKET_BYTES = 32 * 1024 * 1024

_RING_TEXT_TAG, _RING_GRAD_TAG = 7001, 7002


# --------------------------------------------------------------------------------------------
# Small collective helpers
# --------------------------------------------------------------------------------------------

def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _exchange_counts(n_local: int, flag: bool, device: torch.device) -> tuple[list[int], bool]:
    """All ranks' local row counts, and whether ``flag`` is set on any rank (one collective)."""
    world = dist.get_world_size()
    mine = torch.tensor([n_local, int(flag)], dtype=torch.int64, device=device)
    out = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(out, mine)
    table = torch.stack(out).cpu()
    return [int(v) for v in table[:, 0]], bool(table[:, 1].any())


def _check_local(image_embeds, text_embeds) -> None:
    for name, t in (("image_embeds", image_embeds), ("text_embeds", text_embeds)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2 or not t.is_floating_point():
            raise ValueError(f"{name} must be a 2-D floating-point tensor (n_local, d); got "
                             f"shape {tuple(t.shape)}, dtype {t.dtype}")
    if image_embeds.shape != text_embeds.shape:
        raise ValueError(f"image_embeds has shape {tuple(image_embeds.shape)} but text_embeds has shape "
                         f"{tuple(text_embeds.shape)}: row i of one pairs with row i of the other")
    if image_embeds.dtype != text_embeds.dtype or image_embeds.device != text_embeds.device:
        raise ValueError("image_embeds and text_embeds must share dtype and device")


def _as_tensor(name: str, value, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar; got shape {tuple(value.shape)}")
        return value
    if value is None or isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a 0-d tensor, got {value!r}")
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def _global_value(train_loss: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """``train_loss`` with its value replaced by the all-reduced global loss (gradient unchanged)."""
    total = share.detach().clone().to(torch.float64 if share.device.type == "cpu" else share.dtype)
    dist.all_reduce(total)
    return train_loss + (total.to(train_loss.dtype) - train_loss.detach())


def _total_rows(sizes: list[int]) -> int:
    total = sum(sizes)
    if total == 0:
        raise ValueError("every rank has an empty local batch: nothing to compute a loss on")
    return total


# --------------------------------------------------------------------------------------------
# All-gather with gradient
# --------------------------------------------------------------------------------------------

class GatherRows(torch.autograd.Function):
    """Concatenate every rank's rows (local batches may differ in size) with gradient.

    ``forward(x, sizes, rank)``: x is this rank's (sizes[rank], d) block; returns the
    (sum(sizes), d) concatenation in rank order (rows are padded to max(sizes) for the
    all_gather and unpadded after).

    ``backward``: every rank's loss may depend on every gathered row, and the global objective
    is the *sum* of the per-rank losses, so the gradient of rank r's rows is the sum over ranks
    of the incoming gradients: all_reduce(SUM) of the full incoming gradient, then this rank's
    slice. (Averaging here instead would leave the parameter gradients W times too small once
    ``average_gradients`` averages them.) Every rank must run the backward.
    """

    @staticmethod
    def forward(ctx, x, sizes, rank):
        ctx.sizes, ctx.rank = list(sizes), rank
        width = max(sizes)
        if x.shape[0] == width:
            padded = x.contiguous()
        else:
            padded = x.new_zeros((width, x.shape[1]))
            padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]], None, None


def gather_rows(x: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """All-gather ``x`` (n_local, d) over the default group with gradient (see :class:`GatherRows`)."""
    rank, world = _world()
    if world == 1:
        return x
    if sizes is None:
        sizes, _ = _exchange_counts(x.shape[0], False, x.device)
    return GatherRows.apply(x.contiguous(), sizes, rank)


# --------------------------------------------------------------------------------------------
# CLIP (InfoNCE) across ranks
# --------------------------------------------------------------------------------------------

def distributed_clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale,
                          chunk_size=None) -> torch.Tensor:
    """Symmetric InfoNCE of the global batch, this rank computing its own rows.

    image->text rows of the local images against all gathered texts, text->image rows of the
    local texts against all gathered images, positives at ``offset = n_0 + ... + n_{r-1}``.
    Rank r's share is ``L_r = (sum of its 2 n_r row losses) / (2 N)``; it back-propagates
    ``W * L_r`` (see the module docstring). The returned value is the global ``clip_loss`` of
    the whole batch. Local batch sizes may differ, and may be empty on some ranks.
    Without an initialised process group (or with one rank) this is ``clip_loss``.
    """
    from ..losses import clip_loss, infonce_rows
    rank, world = _world()
    if world == 1:
        return clip_loss(image_embeds, text_embeds, scale, chunk_size=chunk_size)
    _check_local(image_embeds, text_embeds)
    scale = _as_tensor("scale", scale, image_embeds)
    n, d = image_embeds.shape
    sizes, _ = _exchange_counts(n, False, image_embeds.device)
    total = _total_rows(sizes)
    # One collective for both modalities: gather [image | text] rows.
    gathered = GatherRows.apply(torch.cat([image_embeds, text_embeds], dim=1).contiguous(), sizes, rank)
    all_image, all_text = gathered[:, :d], gathered[:, d:]
    if n > 0:
        offset = sum(sizes[:rank])
        i2t = infonce_rows(image_embeds, all_text, scale, offset, chunk_size=chunk_size)
        t2i = infonce_rows(text_embeds, all_image, scale, offset, chunk_size=chunk_size)
        row_sum = i2t.sum() + t2i.sum()
    else:  # nothing local, but the backward of the gather is collective: stay in the graph
        row_sum = gathered.sum() * 0 + scale.reshape(()).to(gathered.dtype) * 0
    share = row_sum / (2 * total)
    return _global_value(share * world, share)


# --------------------------------------------------------------------------------------------
# SigLIP across ranks: a ring of text embeddings
# --------------------------------------------------------------------------------------------

def _p2p(send: torch.Tensor | None, recv: torch.Tensor | None, dst: int, src: int, tag: int) -> list:
    """Post a send to ``dst`` and a receive from ``src`` (either may be None: empty blocks are
    skipped on both sides, which both know from the size table). Returns the pending works."""
    ops = []
    if send is not None:
        ops.append(dist.P2POp(dist.isend, send, dst, tag=tag))
    if recv is not None:
        ops.append(dist.P2POp(dist.irecv, recv, src, tag=tag))
    return dist.batch_isend_irecv(ops) if ops else []


def _wait(works: list) -> None:
    for work in works:
        work.wait()


def _siglip_block_grads(x, y, scale, bias, positives: bool, chunk, want: tuple[bool, bool, bool, bool]):
    """(loss, dx, dy, dscale, dbias) of one summed ``siglip_block``; grads only where wanted."""
    from ..losses import siglip_block
    if not any(want):
        with torch.no_grad():
            return siglip_block(x, y, scale, bias, positives, chunk_size=chunk), None, None, None, None
    with torch.enable_grad():
        leaves = [v.detach().requires_grad_(w) for v, w in zip((x, y, scale, bias), want)]
        loss = siglip_block(*leaves, positives, chunk_size=chunk)
        needed = [leaf for leaf, w in zip(leaves, want) if w]
        grads = iter(torch.autograd.grad(loss, needed))
    out = [next(grads) if w else None for w in want]
    return (loss.detach(), *out)


class SigLIPRing(torch.autograd.Function):
    """Rank r's summed sigmoid loss over (its images) x (every rank's texts), times ``factor``.

    Forward, W steps: at step k rank r holds the texts of rank o = r - k (mod W) and the running
    gradient of those texts accumulated by the ranks they visited before. It posts the texts to
    rank r+1 (and receives the next block from r-1) while it computes ``siglip_block(images,
    texts_o, positives=(k == 0))`` with its gradients, adds its text gradient to the running one
    and passes that on too. After the W-th hop every running gradient is back at its owner. Only
    O(n d) is held per rank (the local block, one visiting block, the next one and two gradient
    buffers) plus one block's loss temporaries; nothing grows with W.

    The gradients are computed during the forward (as the tiled ``siglip_block`` does), so the
    backward is local and only scales them by the incoming gradient: that gradient must be the
    same scalar on every rank (true for ``loss.backward()`` and for any uniform loss scaling).
    """

    @staticmethod
    def forward(ctx, x, y, scale, bias, sizes, rank, chunk, factor, want):
        want_x, want_y, want_t, want_b = want
        world = len(sizes)
        nxt, prv = (rank + 1) % world, (rank - 1) % world
        n, d = x.shape
        dx = torch.zeros_like(x) if want_x else None
        dt = torch.zeros((), dtype=x.dtype, device=x.device) if want_t else None
        db = torch.zeros((), dtype=x.dtype, device=x.device) if want_b else None
        total = torch.zeros((), dtype=torch.float64 if x.device.type == "cpu" else x.dtype, device=x.device)
        current = y.detach().contiguous()
        grad_works, grad_in, grad_out = [], None, None
        for k in range(world):
            coming = (rank - k - 1) % world  # whose texts arrive for the next hop
            text_works, incoming = [], None
            if k < world - 1:
                incoming = x.new_empty((sizes[coming], d)) if sizes[coming] else None
                text_works = _p2p(current if current.shape[0] else None, incoming, nxt, prv, _RING_TEXT_TAG)
            block_dy = None
            if n and current.shape[0]:
                loss, bx, by, bt, bb = _siglip_block_grads(
                    x, current, scale, bias, k == 0, chunk, (want_x, want_y, want_t, want_b))
                total += loss.to(total.dtype)
                if want_x:
                    dx += bx
                if want_t:
                    dt += bt.reshape(())
                if want_b:
                    db += bb.reshape(())
                block_dy = by
            if want_y:
                _wait(grad_works)  # the running gradient of these texts (none at k == 0)
                running = grad_in if k > 0 else None
                if block_dy is None:
                    block_dy = torch.zeros_like(current)
                grad_out = block_dy.to(x.dtype) if running is None else running.add_(block_dy)
                grad_in = x.new_empty((sizes[coming], d)) if sizes[coming] else None
                grad_works = _p2p(grad_out if grad_out.shape[0] else None, grad_in, nxt, prv, _RING_GRAD_TAG)
            _wait(text_works)
            if k < world - 1:
                current = incoming if incoming is not None else x.new_empty((0, d))
        dy = None
        if want_y:
            _wait(grad_works)
            dy = grad_in.mul_(factor) if grad_in is not None else torch.zeros_like(y)
        ctx.grads = (
            dx.mul_(factor) if dx is not None else None,
            dy,
            dt.mul_(factor).reshape(scale.shape) if dt is not None else None,
            db.mul_(factor).reshape(bias.shape) if db is not None else None,
        )
        return (total * factor).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        need = ctx.needs_input_grad
        out = [None if (g is None or not need[i]) else g * grad.to(g.dtype) for i, g in enumerate(ctx.grads)]
        return (*out, None, None, None, None, None)


def distributed_siglip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale, logit_bias,
                            chunk_size=None) -> torch.Tensor:
    """SigLIP loss of the global batch over a ring of text embeddings (no all-gather).

    Rank r's share is ``L_r = (sum over its images x all texts of the pair losses) / N``; it
    back-propagates ``W * L_r`` (for equal local batches: the sum over its blocks / n_local, the
    big_vision convention). The returned value is the global ``siglip_loss`` of the whole batch.
    Local batch sizes may differ, and may be empty on some ranks. Without an initialised process
    group (or with one rank) this is ``siglip_loss``.
    """
    from ..losses import siglip_loss
    rank, world = _world()
    if world == 1:
        return siglip_loss(image_embeds, text_embeds, scale, logit_bias, chunk_size=chunk_size)
    _check_local(image_embeds, text_embeds)
    scale = _as_tensor("scale", scale, image_embeds)
    bias = _as_tensor("logit_bias", logit_bias, image_embeds)
    grad_on = torch.is_grad_enabled()
    want_y_here = grad_on and text_embeds.requires_grad
    sizes, want_y = _exchange_counts(image_embeds.shape[0], want_y_here, image_embeds.device)
    total = _total_rows(sizes)
    want = (grad_on and image_embeds.requires_grad, want_y,
            grad_on and scale.requires_grad, grad_on and bias.requires_grad)
    factor = world / total
    train = SigLIPRing.apply(image_embeds, text_embeds.contiguous(), scale, bias, sizes, rank, chunk_size, factor, want)
    return _global_value(train, train / world)


# --------------------------------------------------------------------------------------------
# Distillation across ranks: the student against a frozen teacher
# --------------------------------------------------------------------------------------------

def distributed_distill_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, scale,
                             chunk_size=None) -> torch.Tensor:
    """A distillation loss (``cosine``, ``l2``, ``kl``; see :func:`tether.losses.distill_loss`) of the
    global batch. The teacher is frozen, so nothing it gives needs a gradient back across ranks.

    ``cosine`` and ``l2`` are means over rows: rank r's share is the sum of its rows / N. ``kl``
    compares each student row's softmax over *every* teacher embedding of the batch with the
    teacher's own: the teacher rows are all-gathered (no gradient) and rank r's share is the sum
    of its rows' KL / N. Each rank back-propagates ``W * L_r``; the value is the global loss.
    Without an initialised process group (or with one rank) this is the single-process loss.
    """
    from ..losses import distill_loss
    rank, world = _world()
    teacher = teacher.detach()
    scale = _as_tensor("scale", scale, student).detach()
    if world == 1:
        return distill_loss(kind, student, teacher, scale, chunk_size=chunk_size)
    _check_local(student, teacher)
    n = student.shape[0]
    sizes, _ = _exchange_counts(n, False, student.device)
    total = _total_rows(sizes)
    all_teacher = GatherRows.apply(teacher.contiguous(), sizes, rank) if kind == "kl" else None
    share = (distill_loss(kind, student, teacher, scale, batch_teacher=all_teacher, chunk_size=chunk_size)
             * (n / total) if n > 0 else student.sum() * 0)
    return _global_value(share * world, share)


# --------------------------------------------------------------------------------------------
# The context the trainer uses
# --------------------------------------------------------------------------------------------

class _DistributedLoss:
    """``loss_fn(image_embeds, text_embeds, scale, bias)`` for the trainer, across ranks."""

    def __init__(self, kind: str, chunk_size) -> None:
        from ..losses import DISTILL_LOSSES
        if kind not in ("clip", "siglip", *DISTILL_LOSSES):
            raise ValueError(f"no distributed version of loss {kind!r}; expected clip, siglip, cosine, l2 or kl")
        self.kind, self.chunk_size = kind, chunk_size

    def __call__(self, image_embeds, text_embeds, scale, bias=None):
        if self.kind == "clip":
            return distributed_clip_loss(image_embeds, text_embeds, scale, chunk_size=self.chunk_size)
        if self.kind != "siglip":  # distillation: the first embeddings are the student's
            return distributed_distill_loss(self.kind, image_embeds, text_embeds, scale, chunk_size=self.chunk_size)
        return distributed_siglip_loss(image_embeds, text_embeds, scale, bias, chunk_size=self.chunk_size)

    def __repr__(self) -> str:
        return f"_DistributedLoss({self.kind!r}, chunk_size={self.chunk_size!r})"


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistributedContext":
        """Join the process group torchrun describes in the environment (if any).

        NCCL on CUDA machines, gloo otherwise. Safe to call more than once.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            device, backend = torch.device("cuda", local), "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        return cls(rank, world, local, device)

    def wrap_loss(self, loss_fn: Callable, cfg) -> Callable:
        """The loss the trainer calls: ``loss_fn`` itself on one process; across ranks, the
        distributed version of ``cfg.loss`` ('clip': all-gather InfoNCE, 'siglip': the ring,
        a distillation loss: :func:`distributed_distill_loss`),
        with ``cfg.loss_chunk_size``. Its value is the global loss; its gradient is W times this
        rank's share, matched by :meth:`average_gradients`."""
        if not self.enabled:
            return loss_fn
        return _DistributedLoss(cfg.loss, cfg.loss_chunk_size)

    def average_gradients(self, model: torch.nn.Module) -> None:
        """All-reduce (SUM) the parameter gradients and divide by the world size.

        With the losses above this leaves the single-process full-batch gradient on every rank.
        Ranks agree first on which parameters have a gradient (a parameter that got one on some
        rank only gets zeros elsewhere instead of a mismatched collective), then reduce in flat
        buckets of at most ``BUCKET_BYTES``.
        """
        self.average_parameter_gradients([p for p in model.parameters() if p.requires_grad])

    def average_parameter_gradients(self, params: list[torch.Tensor]) -> None:
        """:meth:`average_gradients` over an explicit list, in the same order on every rank (FSDP2
        cannot shard scalar parameters, so the FSDP strategy averages those itself)."""
        if not self.enabled or not params:
            return
        device = next((p.grad.device for p in params if p.grad is not None), params[0].device)
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
        dist.all_reduce(present)
        grads = []
        for p, count in zip(params, present.tolist()):
            if count == 0:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        for bucket in _buckets(grads, BUCKET_BYTES):
            flat = torch.cat([g.reshape(-1) for g in bucket]) if len(bucket) > 1 else bucket[0].reshape(-1).clone()
            dist.all_reduce(flat)
            flat.div_(self.world_size)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset: offset + g.numel()].view_as(g))
                offset += g.numel()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _buckets(grads: list[torch.Tensor], cap_bytes: int):
    """Consecutive runs of same-dtype/device gradients of at most ``cap_bytes`` (a larger single
    gradient is a bucket of its own)."""
    bucket, size = [], 0
    for g in grads:
        nbytes = g.numel() * g.element_size()
        if bucket and (size + nbytes > cap_bytes or g.dtype != bucket[0].dtype or g.device != bucket[0].device):
            yield bucket
            bucket, size = [], 0
        bucket.append(g)
        size += nbytes
    if bucket:
        yield bucket
