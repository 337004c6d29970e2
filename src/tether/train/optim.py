"""AdamW with CLIP's parameter groups, and tower locking (LiT)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, UnknownNameError
from ..models.tower import default_no_decay, tower_no_decay


def is_no_decay(model: nn.Module, name: str, param: torch.Tensor) -> bool:
    """Whether AdamW leaves ``param`` undecayed: a tower's parameters are its own call
    (``Tower.no_decay``; by default gains, biases, embeddings), the rest follow the default rule."""
    towers = getattr(model, "towers", {})
    for modality, tower in towers.items():
        prefix = f"towers.{modality}."
        if name.startswith(prefix):
            return tower_no_decay(tower, name[len(prefix):], param)
    return default_no_decay(name, param)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if is_no_decay(model, name, param) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float) -> torch.optim.AdamW:
    groups = [g for g in param_groups(model, weight_decay) if g["params"]]
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lock_tower(model: nn.Module, modality: str) -> None:
    """Freeze the ``modality`` tower (LiT): its weights get no gradients and its norm statistics stay put.

    The projection after the tower stays trainable, so a locked pretrained image
    tower can still be aligned to a text tower.
    """
    if modality not in model.towers:
        raise UnknownNameError(f"lock: the model has no {modality!r} tower; its towers: {', '.join(model.towers)}")
    module = model.towers[modality]
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    module.train = lambda mode=True: module  # stays in eval mode when the model is put in train mode
