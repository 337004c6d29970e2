"""AdamW with CLIP's parameter groups, and tower locking (LiT)."""
from __future__ import annotations

import torch
from torch import nn

NO_DECAY_WORDS = ("bias", "logit_scale", "logit_bias", "embedding", "probe", "ln_", "norm", "bn", "ls_")


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """Gains, biases, embeddings and the temperature are not weight-decayed (as in CLIP/OpenCLIP)."""
    return param.ndim < 2 or any(word in name for word in NO_DECAY_WORDS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if is_no_decay(name, param) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float) -> torch.optim.AdamW:
    groups = [g for g in param_groups(model, weight_decay) if g["params"]]
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lock_tower(model: nn.Module, tower: str) -> None:
    """Freeze a tower (LiT): its weights get no gradients and its norm statistics stay put.

    The projection after the tower stays trainable, so a locked pretrained image
    tower can still be aligned to a text tower.
    """
    module = {"image": model.visual, "text": model.text}[tower]
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    module.train = lambda mode=True: module  # stays in eval mode when the model is put in train mode
