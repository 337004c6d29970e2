"""What the trainer needs to know about a tower, declared by the tower itself.

The trainer never names a tower class: it asks each tower for

* ``blocks()``: the repeated units (transformer blocks, residual bottlenecks, the layers a Hugging
  Face model lists in ``_no_split_modules``), which FSDP shards one by one;
* ``no_decay(name, param)``: whether AdamW should leave a parameter undecayed;
* ``uses_every_parameter``: True when every trainable parameter gets a gradient from each forward
  (DDP can then skip its search for unused parameters);
* ``supports_patch_dropout`` / ``set_patch_dropout(p)`` (FLIP) and ``set_grad_checkpointing(on)``.

tether's towers inherit :class:`Tower`. A plain ``nn.Module`` passed in by a user works too: the
free functions below give it the same defaults (no blocks, the usual no-decay rule, unused
parameters possible, no patch dropout, no activation checkpointing).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

NO_DECAY_WORDS = ("bias", "logit_scale", "logit_bias", "embedding", "probe", "ln_", "norm", "bn", "ls_")


def default_no_decay(name: str, param: torch.Tensor) -> bool:
    """Gains, biases, embeddings and the logit scale are not weight-decayed (as in CLIP/OpenCLIP)."""
    return param.ndim < 2 or any(word in name for word in NO_DECAY_WORDS)


class Tower:
    """Mixin with the trainer-facing defaults; towers override what differs."""

    uses_every_parameter: bool = False
    supports_patch_dropout: bool = False

    def blocks(self) -> list[nn.Module]:
        """Units to shard (FSDP) on their own; none by default."""
        return []

    def no_decay(self, name: str, param: torch.Tensor) -> bool:
        """``name`` is relative to the tower."""
        return default_no_decay(name, param)

    def set_patch_dropout(self, fraction: float) -> None:
        if fraction:
            raise ValueError(f"{type(self).__name__} has no patch dropout (patch_dropout={fraction})")

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        if enabled:
            warnings.warn(f"{type(self).__name__} does not recompute activations; grad_checkpointing ignored",
                          stacklevel=2)


def tower_blocks(tower: nn.Module) -> list[nn.Module]:
    fn = getattr(tower, "blocks", None)
    return list(fn()) if callable(fn) else []


def tower_no_decay(tower: nn.Module, name: str, param: torch.Tensor) -> bool:
    fn = getattr(tower, "no_decay", None)
    return bool(fn(name, param)) if callable(fn) else default_no_decay(name, param)


def uses_every_parameter(tower: nn.Module) -> bool:
    return getattr(tower, "uses_every_parameter", False) is True


def supports_patch_dropout(tower: nn.Module) -> bool:
    return getattr(tower, "supports_patch_dropout", False) is True


def set_patch_dropout(tower: nn.Module, fraction: float) -> None:
    """Set FLIP patch dropout where the tower has it; an error for a non-zero fraction where it does not."""
    if supports_patch_dropout(tower):
        tower.set_patch_dropout(fraction)
    elif fraction:
        raise ValueError(f"{type(tower).__name__} has no patch dropout (patch_dropout={fraction})")


def set_grad_checkpointing(tower: nn.Module, enabled: bool = True) -> None:
    fn = getattr(tower, "set_grad_checkpointing", None)
    if callable(fn):
        fn(enabled)
    elif enabled:
        warnings.warn(f"{type(tower).__name__} has no set_grad_checkpointing; grad_checkpointing ignored",
                      stacklevel=2)


__all__ = ["NO_DECAY_WORDS", "Tower", "default_no_decay", "set_grad_checkpointing", "set_patch_dropout",
           "supports_patch_dropout", "tower_blocks", "tower_no_decay", "uses_every_parameter"]
