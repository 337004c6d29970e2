"""How the ranks of a torchrun job share the training step: DDP, FSDP2 or manual averaging.

The distributed losses (``distributed.py``) make every rank back-propagate W times its share of
the global loss, so the parameter gradients must be *averaged* over ranks: then every rank holds
the gradient of one process with the whole batch (docs/distributed.md, "Gradient conventions").
A strategy decides how that average happens and where the training state lives:

- ``ddp``: ``DistributedDataParallel``; gradient buckets are all-reduced while the backward is
  still running (overlap), and the gradient cache reduces once, after its last micro-batch.
- ``fsdp``: FSDP2 ``fully_shard`` on every block the towers declare and then the root, so
  parameters, gradients and AdamW moments are split 1/W per rank and each block is all-gathered
  just for its forward and backward.
- ``manual``: ``DistributedContext.average_gradients`` after the backward (no overlap, no sharding).

One process uses :class:`LocalStrategy` whatever the setting. Checkpoints hold the full weights
and the optimizer state in ``torch.optim`` form plus the parameter name of every index, so any
strategy (and one process) resumes any other's checkpoint.
"""
from __future__ import annotations

import copy
import inspect
import math
import warnings
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..models.tower import tower_blocks, uses_every_parameter
from .gradcache import contrastive_step

__all__ = ["STRATEGIES", "LocalStrategy", "ManualStrategy", "DDPStrategy", "FSDPStrategy", "build_strategy"]

STRATEGIES = ("ddp", "fsdp", "manual")


class LocalStrategy:
    """One process (or the base of the others): the model as it is."""

    name = "local"

    def __init__(self, cfg, ctx, device: torch.device) -> None:
        self.cfg, self.ctx, self.device = cfg, ctx, device
        self.model: nn.Module | None = None

    def setup(self, model: nn.Module) -> nn.Module:
        """Move (and wrap or shard) the model; returns the module whose parameters to optimise."""
        self.model = model.to(self.device)
        # contrastive_step calls encode (gradient cache) as well as forward; on a
        # torch.compile wrapper those are the eager methods, so route every use through one
        # compiled forward (one graph per use), as DDP and FSDP do
        self.encoder = _Routed(torch.compile(_Modes(self.model))) if self.cfg.compile else self.model
        return self.model

    def backward(self, inputs_a: torch.Tensor, inputs_b: torch.Tensor, loss_fn: Callable, autocast) -> torch.Tensor:
        """Forward and backward of one step on ``cfg.modalities``; leaves the averaged gradients in ``.grad``."""
        return contrastive_step(self.encoder, inputs_a, inputs_b, loss_fn, tuple(self.cfg.modalities),
                                micro_batch=self.cfg.micro_batch_size, autocast=autocast)

    def clip_grad_norm_(self, max_norm: float) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def checkpoint_state(self, optimizer) -> tuple[dict, dict, list[str]] | None:
        """(weights, optimizer state, parameter names) on rank 0, None elsewhere. Collective."""
        if not self.ctx.is_main:
            return None
        return self.model.state_dict(), optimizer.state_dict(), optimizer_param_names(self.model, optimizer)

    def load_checkpoint_state(self, optimizer, weights: dict, optim_state: dict, names: list[str] | None) -> None:
        """Every rank restores the full state (read from the same checkpoint)."""
        self.model.load_state_dict(weights)
        named = named_optimizer_state(optim_state, names or optimizer_param_names(self.model, optimizer))
        optimizer.load_state_dict(indexed_optimizer_state(named, self.model, optimizer))

    @contextmanager
    def full_model(self, on_device: bool = True) -> Iterator[nn.Module | None]:
        """The model with all its weights on rank 0 (None on the others), to evaluate or save. Collective."""
        yield self.model if self.ctx.is_main else None


class ManualStrategy(LocalStrategy):
    """Backward, then all-reduce the gradients in buckets (``DistributedContext.average_gradients``)."""

    name = "manual"

    def backward(self, inputs_a, inputs_b, loss_fn, autocast) -> torch.Tensor:
        loss = super().backward(inputs_a, inputs_b, loss_fn, autocast)
        self.ctx.average_gradients(self.model)
        return loss


class _Routed:
    """The interface ``contrastive_step`` uses, every call going through a wrapper's forward so
    its hooks run (DDP's reducer, FSDP's all-gathers). ``net(mode, *args)`` (see :class:`_Modes`)."""

    def __init__(self, net: Callable) -> None:
        self.net = net

    def __call__(self, *, inputs):
        return self.net("all", inputs)

    def encode(self, modality: str, batch, normalize: bool = False):
        assert normalize, "the routed forward returns normalised embeddings only"
        return self.net("encode", modality, batch)

    def scalars(self, *modalities: str):
        return self.net("scalars", *modalities)


class _Modes(nn.Module):
    """One forward per use of the model, returning only what that use back-propagates: DDP with
    ``find_unused_parameters`` waits for a gradient of every parameter its outputs reach, so an
    image pass must not also output the logit scale (``AlignedModel.forward`` always does).
    ``mode``: "all" (``model(inputs=...)``), "encode" (one modality) or "scalars"."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mode: str, *args):
        if mode == "all":
            return self.model(inputs=args[0])
        if mode == "encode":
            return self.model.encode(args[0], args[1], normalize=True)
        return self.model.scale(*args), self.model.logit_bias


def _every_parameter_used(model: nn.Module, modalities) -> bool:
    """Whether each step's forward reaches every trainable parameter (then DDP need not look for
    unused ones): every tower says it uses all its parameters, and every tower is trained."""
    towers = model.towers
    return set(towers) == set(modalities) and all(uses_every_parameter(t) for t in towers.values())


class DDPStrategy(LocalStrategy):
    """``DistributedDataParallel``: bucketed all-reduce overlapping the backward.

    ``find_unused_parameters`` is on with the gradient cache (each micro-batch runs one tower)
    and for towers other than tether's own; frozen parameters (LiT) are not DDP's concern.
    Buffers are not broadcast: each rank keeps its own BatchNorm statistics, as with ``manual``.
    """

    name = "ddp"

    def setup(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel
        self.model = model.to(self.device)
        find_unused = (self.cfg.micro_batch_size is not None
                       or not _every_parameter_used(self.model, self.cfg.modalities))
        # No buffer broadcast before each forward (newer torch names the switch forward_sync_buffers).
        params = inspect.signature(DistributedDataParallel).parameters
        no_sync = {"forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers": False}
        self.ddp = DistributedDataParallel(
            _Modes(self.model), device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=find_unused, **no_sync)
        # The scale and bias go through the forward too: DDP reduces only what its forward used.
        self.encoder = _Routed(torch.compile(self.ddp) if self.cfg.compile else self.ddp)
        return self.model

    def backward(self, inputs_a, inputs_b, loss_fn, autocast) -> torch.Tensor:
        return contrastive_step(self.encoder, inputs_a, inputs_b, loss_fn, tuple(self.cfg.modalities),
                                micro_batch=self.cfg.micro_batch_size, autocast=autocast, sync=self._sync)

    def _sync(self, last: bool):
        """Accumulate locally on every cached pass but the last; one all-reduce per step."""
        return nullcontext() if last else self.ddp.no_sync()


def shard_units(model: nn.Module) -> list[nn.Module]:
    """Modules FSDP shards on their own, last first: the blocks each tower declares (``blocks()``:
    transformer blocks, residual bottlenecks, the layers a Hugging Face model names in
    ``_no_split_modules``)."""
    units = [block for tower in model.towers.values() for block in tower_blocks(tower)]
    return units[::-1]


class _FSDPModes:
    """``_Modes`` through ``AlignedModel.forward`` of a sharded root (FSDP's hooks sit on ``forward``)."""

    def __init__(self, net: Callable, model: nn.Module) -> None:
        self.net, self.model = net, model

    def __call__(self, mode: str, *args):
        if mode == "all":
            return self.net(inputs=args[0])
        if mode == "encode":
            return self.net(inputs={args[0]: args[1]}).embeds[args[0]]
        return self.model.scale(*args), self.model.logit_bias


class FSDPStrategy(LocalStrategy):
    """FSDP2: parameters, gradients and AdamW moments sharded over ranks.

    FSDP2 cannot shard 0-d parameters (``logit_scale``, ``logit_bias``): they stay replicated and
    their gradients are averaged here. With the gradient cache every micro-batch's backward
    reduce-scatters its gradients into the sharded ``.grad`` (no unsharded gradient is ever held
    for the whole step), and all ranks run the same number of micro-batches. Rank 0 keeps a plain
    CPU copy of the model, loaded from the gathered weights to evaluate and to save.
    """

    name = "fsdp"

    def setup(self, model: nn.Module) -> nn.Module:
        try:
            from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
        except ImportError:
            fully_shard = None
        if fully_shard is None or "ignored_params" not in inspect.signature(fully_shard).parameters:
            raise RuntimeError(f"train.strategy=fsdp needs FSDP2's fully_shard with ignored_params "
                               f"(torch >= 2.7); this is torch {torch.__version__}. Use strategy=ddp.")
        # Block.forward_at returns a view (the pooled row) that only feeds a LayerNorm/projection,
        # never an in-place op, which is what FSDP2's warning is about.
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        self.plain = copy.deepcopy(model).cpu() if self.ctx.is_main else None
        self.model = model.to(self.device)
        scalars = [p for p in self.model.parameters() if p.dim() == 0]
        self.scalars = [p for p in scalars if p.requires_grad]
        for unit in shard_units(self.model):
            fully_shard(unit, ignored_params=set(scalars))
            if hasattr(unit, "forward_at"):  # the last block of a pooled tower is called this way
                register_fsdp_forward_method(unit, "forward_at")
        fully_shard(self.model, ignored_params=set(scalars))
        # The root's forward (not encode) so that FSDP's hooks run; the scalars are plain tensors.
        self.encoder = _Routed(_FSDPModes(torch.compile(self.model) if self.cfg.compile else self.model, self.model))
        return self.model

    def backward(self, inputs_a, inputs_b, loss_fn, autocast) -> torch.Tensor:
        micro = self.cfg.micro_batch_size
        count = None
        if micro:
            import torch.distributed as dist
            count_t = torch.tensor([math.ceil(inputs_a.shape[0] / micro)], device=self.device)
            dist.all_reduce(count_t, op=dist.ReduceOp.MAX)
            count = int(count_t)
        loss = contrastive_step(self.encoder, inputs_a, inputs_b, loss_fn, tuple(self.cfg.modalities),
                                micro_batch=micro, autocast=autocast, num_chunks=count)
        self.ctx.average_parameter_gradients(self.scalars)
        return loss

    def clip_grad_norm_(self, max_norm: float) -> float:
        """The global norm over sharded (DTensor) and replicated gradients, then one scale for all."""
        from torch.distributed.tensor import DTensor
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        sharded = [g for g in grads if isinstance(g, DTensor)]
        plain = [g for g in grads if not isinstance(g, DTensor)]
        square = torch.zeros((), dtype=torch.float64, device=self.device)
        if sharded:
            square += torch.nn.utils.get_total_norm(sharded).full_tensor().double() ** 2
        if plain:
            square += torch.nn.utils.get_total_norm(plain).double() ** 2
        total = float(square.sqrt())
        coef = min(max_norm / (total + 1e-6), 1.0)
        locals_ = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
        torch._foreach_mul_(locals_, coef)
        return total

    def _gather(self) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def checkpoint_state(self, optimizer) -> tuple[dict, dict, list[str]] | None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        weights = self._gather()
        named = get_optimizer_state_dict(self.model, optimizer,
                                         options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.ctx.is_main:
            return None
        names = optimizer_param_names(self.model, optimizer)
        return weights, indexed_optimizer_state(named, self.model, optimizer), names

    def load_checkpoint_state(self, optimizer, weights, optim_state, names) -> None:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)
        full = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.model, weights, options=full)
        named = named_optimizer_state(optim_state, names or optimizer_param_names(self.model, optimizer))
        set_optimizer_state_dict(self.model, optimizer, named, options=full)

    @contextmanager
    def full_model(self, on_device: bool = True) -> Iterator[nn.Module | None]:
        weights = self._gather()
        if not self.ctx.is_main:
            yield None
            return
        self.plain.load_state_dict(weights)
        if on_device:
            self.plain.to(self.device)
        try:
            yield self.plain
        finally:
            self.plain.cpu()


def build_strategy(cfg, ctx, device: torch.device) -> LocalStrategy:
    """The strategy ``cfg.strategy`` names under torchrun; :class:`LocalStrategy` in one process."""
    if not ctx.enabled:
        return LocalStrategy(cfg, ctx, device)
    kinds = {"ddp": DDPStrategy, "fsdp": FSDPStrategy, "manual": ManualStrategy}
    if cfg.strategy not in kinds:
        raise ConfigError(f"train.strategy: expected one of {STRATEGIES}, got {cfg.strategy!r}")
    return kinds[cfg.strategy](cfg, ctx, device)


# ------------------------------------------------------------------------------------------------
# Optimizer state by parameter name: the same checkpoint for every strategy
# ------------------------------------------------------------------------------------------------

def optimizer_param_names(model: nn.Module, optimizer) -> list[str]:
    """The name of each parameter in ``optimizer.state_dict()``'s index order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def named_optimizer_state(state: dict, names: list[str]) -> dict:
    """``torch.optim`` state (integer indices) -> keyed by parameter name (``torch.distributed.checkpoint`` form)."""
    return {"state": {names[i]: v for i, v in state["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}


def indexed_optimizer_state(named: dict, model: nn.Module, optimizer) -> dict:
    """Name-keyed optimizer state -> ``torch.optim`` form in ``optimizer``'s own parameter order."""
    names = optimizer_param_names(model, optimizer)
    index = {n: i for i, n in enumerate(names)}
    groups, start = [], 0
    for saved, group in zip(named["param_groups"], optimizer.param_groups, strict=True):
        mine = names[start: start + len(group["params"])]
        if set(saved["params"]) != set(mine):
            raise CheckpointError("the checkpoint's optimizer groups hold other parameters than this model's")
        groups.append({**saved, "params": list(range(start, start + len(mine)))})
        start += len(mine)
    return {"state": {index[n]: v for n, v in named["state"].items()}, "param_groups": groups}
