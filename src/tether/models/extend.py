"""Add a tower to a model that exists (binding a new modality to a trained one)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from ..config import TowerConfig, _build
from ..errors import ConfigError
from ..modalities import get_modality, tower_config_class


def add_tower(model, modality: str, tower: TowerConfig | Mapping[str, Any], *, scale: float | None = None,
              module: nn.Module | None = None) -> None:
    """Give ``model`` a freshly initialised ``modality`` tower, its projection, processor and its own
    logit scale (``logit_scales.<modality>``: the multiplier t of every pair it is in), starting at
    ``scale``, else the tower config's ``logit_scale`` (ImageBind's fixed value for the modality:
    depth 5, thermal 10, IMU 5, audio 20), else CLIP's 1/0.07. Nothing that was there changes.

    ``tower``: its config (a ``TowerConfig`` of the modality's class, or a mapping of its keys);
    ``module``: the tower itself, for kind "module".
    """
    from .aligned import _init_projection, projection
    if modality in model.towers:
        raise ConfigError(f"the model has a {modality!r} tower already; towers: {', '.join(model.towers)}")
    if isinstance(tower, Mapping):
        tower = _build(tower_config_class(modality), dict(tower), f"towers.{modality}")
    tower.validate(f"towers.{modality}")
    built = module if module is not None else get_modality(modality).build_tower(tower, model.config.embed_dim)
    if not isinstance(getattr(built, "output_dim", None), int):
        raise TypeError(f"the {modality} tower must have an integer attribute output_dim (its feature width)")
    device = model.logit_scale.device
    proj = projection(tower.projection, built.output_dim, model.config.embed_dim, tower.projection_bias)
    _init_projection(proj, built.output_dim)
    model.config.towers[modality] = tower
    model.towers[modality] = built.to(device)
    model.projections[modality] = proj.to(device)
    scale = scale or getattr(tower, "logit_scale", None) or 1 / 0.07
    if not 0 < scale < math.inf:
        raise ConfigError(f"logit_scales.{modality}: expected a positive multiplier t, got {scale}")
    model.config.logit_scales[modality] = float(scale)
    model.logit_scales[modality] = nn.Parameter(torch.tensor(math.log(float(scale)), device=device))
    processor = get_modality(modality).build_processor(tower, None)
    if processor is not None:
        model.processors[modality] = processor
