"""The ensemble tower (``kind: "ensemble"``): several towers of one modality, one embedding.

``e(x) = mean_i normalize(P_i(T_i(x)))`` over the members' towers ``T_i`` and projections ``P_i``;
the model's own projection for the modality is "none". :func:`tether.models.ensemble.ensemble`
builds one from trained runs; ``AlignedModel`` builds one from a config (a saved checkpoint).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TowerConfig, _build
from ..errors import ConfigError
from .projection import projection
from .tower import Tower

__all__ = ["ENSEMBLE_KIND", "EnsembleTower", "build_ensemble_tower"]

ENSEMBLE_KIND = "ensemble"


class EnsembleTower(Tower, nn.Module):
    """(N, ...) inputs -> (N, embed_dim): the mean of the members' normalised projected features."""

    uses_every_parameter = True

    def __init__(self, members: Sequence[nn.Module], projections: Sequence[nn.Module], embed_dim: int) -> None:
        super().__init__()
        if len(members) < 2 or len(members) != len(projections):
            raise ValueError(f"an ensemble needs two or more members, each with a projection; got {len(members)} "
                             f"towers and {len(projections)} projections")
        self.members, self.projections = nn.ModuleList(members), nn.ModuleList(projections)
        self.output_dim = embed_dim
        self.input_ndim = getattr(members[0], "input_ndim", None)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outs = [F.normalize(proj(tower(inputs)), dim=-1) for tower, proj in zip(self.members, self.projections)]
        return torch.stack(outs).mean(dim=0)


def build_ensemble_tower(modality: str, config: TowerConfig, embed_dim: int) -> EnsembleTower:
    """The tower of a ``kind: "ensemble"`` config: each entry of ``options["members"]`` is built
    as the modality builds its towers, with the projection that member config names."""
    from ..modalities import get_modality
    members = config.options.get("members")
    if not isinstance(members, list) or len(members) < 2:
        raise ConfigError(f"towers.{modality}: kind 'ensemble' needs options.members, a list of two or more tower "
                          f"configs; got {type(members).__name__}")
    spec = get_modality(modality)
    towers, projections = [], []
    for i, member in enumerate(members):
        cfg = _build(spec.config_class, member, f"towers.{modality}.options.members[{i}]")
        if cfg.kind == ENSEMBLE_KIND:
            raise ConfigError(f"towers.{modality}.options.members[{i}]: an ensemble member cannot be an ensemble")
        towers.append(spec.build_tower(cfg, embed_dim))
        projections.append(projection(cfg.projection, towers[-1].output_dim, embed_dim, cfg.projection_bias))
    return EnsembleTower(towers, projections, embed_dim)
