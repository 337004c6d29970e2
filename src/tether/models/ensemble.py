"""Ensemble towers: several trained towers of one modality held as one tower of one checkpoint.

Runs of the same recipe with different seeds err on different inputs; the mean of their unit
embeddings is better than each (spoken digits: three bound audio towers at 56.7-58.3% give
61.7% together). :func:`ensemble` turns such runs into one model that ``tether embed``, the
search index and the zero-shot classifier use like any other: the modality's tower config becomes
``kind: "ensemble"`` with ``options.members`` (each member's own tower config), the tower computes

    e(x) = mean_i normalize(P_i(T_i(x)))

over the members' towers ``T_i`` and projections ``P_i``, and the model's projection for the
modality is "none" (the model normalises ``e(x)`` as it does every embedding). Members share the
modality's processor, so an input is decoded once. The model's other towers must be the same,
bit for bit, in every run (runs bound to one frozen anchor are).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Sequence

import torch
from torch import nn

from ..config import TowerConfig, _build
from ..errors import CheckpointError
from .ensemble_tower import ENSEMBLE_KIND, EnsembleTower, build_ensemble_tower

__all__ = ["ENSEMBLE_KIND", "EnsembleTower", "build_ensemble_tower", "ensemble"]


def ensemble(models: Sequence, modality: str):
    """One model whose ``modality`` tower is the ensemble of the ``models``' towers for it; every other
    weight (the anchor and the other towers, scales) is the first model's, and must be the same in all."""
    if len(models) < 2:
        raise CheckpointError(f"ensemble: expected two or more models, got {len(models)}")
    first = models[0]
    for i, model in enumerate(models):
        if modality not in model.towers:
            raise CheckpointError(f"ensemble: model {i} has no {modality!r} tower; its towers: "
                                  f"{', '.join(model.towers)}")
    _check_shared_weights(models, modality)
    configs = [m.config.towers[modality] for m in models]
    _check_same_processor(configs, modality)
    members = [member for model in models for member in _members(model, modality)]  # nested ones flattened
    config = copy.deepcopy(first.config)
    config.towers[modality] = dataclasses.replace(
        _plain(configs[0]), kind=ENSEMBLE_KIND, projection="none", projection_bias=False,
        options={"members": [member_config for member_config, _, _ in members]})
    towers = {name: copy.deepcopy(tower) for name, tower in first.towers.items() if name != modality}
    towers[modality] = EnsembleTower([copy.deepcopy(t) for _, t, _ in members],
                                     [copy.deepcopy(p) for _, _, p in members], config.embed_dim)
    from .aligned import AlignedModel
    out = AlignedModel(config, towers=towers)  # the towers as they are: nothing built at random to overwrite
    out.load_state_dict({k: v for k, v in first.state_dict().items() if not _belongs_to(k, modality)}, strict=False)
    out.processors = dict(first.processors)
    return out.train(first.training)


def _members(model, modality: str) -> list[tuple[dict, nn.Module, nn.Module]]:
    """(tower config, tower, projection) of each member of a model's tower: the tower itself, or the
    members of an ensemble."""
    tower, cfg = model.towers[modality], model.config.towers[modality]
    if isinstance(tower, EnsembleTower):
        return list(zip(cfg.options["members"], tower.members, tower.projections))
    return [(dataclasses.asdict(cfg), tower, model.projections[modality])]


def _plain(cfg: TowerConfig) -> TowerConfig:
    """A tower's own config; for an ensemble, its first member's (whose inputs every member shares)."""
    if cfg.kind != ENSEMBLE_KIND:
        return cfg
    return _build(type(cfg), cfg.options["members"][0], "ensemble member 0")


def _belongs_to(key: str, modality: str) -> bool:
    return key.startswith((f"towers.{modality}.", f"projections.{modality}."))


def _check_shared_weights(models: Sequence, modality: str) -> None:
    reference = {k: v for k, v in models[0].state_dict().items() if not _belongs_to(k, modality)}
    for i, model in enumerate(models[1:], start=1):
        other = {k: v for k, v in model.state_dict().items() if not _belongs_to(k, modality)}
        if other.keys() != reference.keys():
            diff = sorted(other.keys() ^ reference.keys())
            raise CheckpointError(f"ensemble: model {i}'s weights outside the {modality} tower differ from model 0's "
                                  f"(key {diff[0]!r} is in only one); ensemble runs bound to the same anchor")
        for key, value in reference.items():
            if not torch.equal(value, other[key]):
                raise CheckpointError(f"ensemble: model {i}'s {key!r} differs from model 0's: the towers outside "
                                      f"{modality} must be the same in every model (runs bound to the same anchor)")


def _check_same_processor(configs: Sequence[TowerConfig], modality: str) -> None:
    def inputs(cfg: TowerConfig) -> tuple:
        cfg = _plain(cfg)
        return cfg.processor, getattr(cfg, "input_size", None), getattr(cfg, "in_channels", None)
    for i, cfg in enumerate(configs[1:], start=1):
        if inputs(cfg) != inputs(configs[0]):
            raise CheckpointError(f"ensemble: model {i}'s {modality} processor differs from model 0's "
                                  f"({inputs(cfg)} vs {inputs(configs[0])}); members share one processor")
