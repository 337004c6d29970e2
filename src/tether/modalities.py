"""The modality registry: what "image", "text" (and later "audio", "depth" ...) mean to tether.

A :class:`Modality` says which config class describes its towers, how to build a tower and an
input processor from that config, what ``encode`` calls its input tensor, and how one raw input
becomes one processor row. Image and text register themselves (``image_modality.py``,
``text_modality.py``); a new modality is its own module calling :func:`register_modality`.
Nothing else in tether branches on a modality's name.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

from .config import TowerConfig, set_tower_config_lookup
from .errors import ConfigError, TetherError


@runtime_checkable
class Processor(Protocol):
    """One raw input -> one tensor row (no batch dim); ``collate`` stacks rows into a batch.

    Bad input raises a ValueError or OSError subclass with a one-line reason.
    """

    def __call__(self, item: Any) -> torch.Tensor: ...

    def collate(self, rows: list) -> torch.Tensor: ...


def _no_tower(config: TowerConfig, embed_dim: int) -> nn.Module:
    raise ConfigError(f"kind={config.kind!r}: pass the tower itself, AlignedModel(config, towers={{modality: module}})")


def _no_processor(config: TowerConfig, files: Path | None) -> None:
    return None


def _call(processor: Processor, item: Any) -> Any:
    return processor(item)


def _no_check(config: TowerConfig, processor: Processor) -> None:
    return None


@dataclass(frozen=True)
class Modality:
    """Everything tether needs to handle one kind of input."""

    name: str  # "image", "text", later "audio" ...
    config_class: type[TowerConfig] = TowerConfig
    build_tower: Callable[[TowerConfig, int], nn.Module] = _no_tower  # (tower config, embed_dim) -> tower
    build_processor: Callable[[TowerConfig, Path | None], Processor | None] = _no_processor  # (config, files dir)
    input_name: str = "inputs"  # what encode() calls the tensor: "pixel_values", "input_ids" ...
    prepare: Callable[[Processor, Any], Any] = _call  # one raw input -> one row for processor.collate
    # (tower config, processor) -> None, or a TetherError when the tower cannot take what the processor makes
    # (a tokenizer with more ids or a longer context than the text tower): checked when a processor is attached
    check_processor: Callable[[TowerConfig, Processor], None] = _no_check
    # named tower configs ("tiny", "imagebind" ...): towers.<name> mappings for tether bind --tower NAME
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # file name endings (lowercase, with the dot) that `tether embed --<name> DIR` reads; () = every file
    file_extensions: tuple[str, ...] = ()


MODALITIES: dict[str, Modality] = {}


TowerBuilder = Callable[[TowerConfig, int], nn.Module]


def tower_builder(modality: str, kinds: dict[str, TowerBuilder]) -> TowerBuilder:
    """A ``build_tower`` that maps a tower config's ``kind`` to its constructor: the one place a
    modality's kinds become classes. Kind "module" means the caller passes the tower itself."""
    def build(cfg: TowerConfig, embed_dim: int) -> nn.Module:
        if cfg.kind in kinds:
            return kinds[cfg.kind](cfg, embed_dim)
        if cfg.kind == "module":
            raise ConfigError(f"towers.{modality}.kind='module': pass the tower itself, "
                              f"AlignedModel(config, towers={{{modality!r}: my_module}})")
        raise ConfigError(f"unknown towers.{modality}.kind {cfg.kind!r}: expected one of "
                          f"{', '.join([*kinds, 'module'])}")
    return build


def register_modality(modality: Modality) -> None:
    """Add (or replace) a modality; its towers are then parsed with ``modality.config_class``."""
    if not isinstance(modality, Modality):
        raise TypeError(f"register_modality expects a Modality, got {type(modality).__name__}")
    if not (isinstance(modality.config_class, type) and issubclass(modality.config_class, TowerConfig)):
        raise TypeError(f"modality {modality.name!r}: config_class must subclass TowerConfig")
    MODALITIES[modality.name] = modality


#: ``"image@small"``: a second tower of a registered modality (a distillation student beside its
#: teacher); it is that modality in everything but its key.
VARIANT_SEPARATOR = "@"


def base_modality(name: str) -> str:
    """``"image"`` for ``"image@small"``; a plain name itself."""
    return name.split(VARIANT_SEPARATOR, 1)[0]


def get_modality(name: str) -> Modality:
    """The registered modality; ``"<modality>@<tag>"`` is that modality under another key; an unregistered
    name gets the defaults (kind "module" towers, no processor)."""
    if name in MODALITIES:
        return MODALITIES[name]
    base = MODALITIES.get(base_modality(name))
    if base is not None and name != base.name:
        return dataclasses.replace(base, name=name)
    return Modality(name)


def tower_config_class(name: str) -> type[TowerConfig]:
    return get_modality(name).config_class


set_tower_config_lookup(tower_config_class)

def tower_preset(modality: str, name: str) -> dict[str, Any]:
    """A copy of the modality's named tower config ``name`` (``Modality.presets``)."""
    presets = get_modality(modality).presets
    if name not in presets:
        raise ConfigError(f"unknown {modality} tower {name!r}: expected one of {', '.join(presets) or '(none)'}")
    return json.loads(json.dumps(presets[name]))


def check_processor(model, modality: str, processor, source: str | Path | None = None) -> None:
    """Refuse a processor the model's tower cannot take (a tokenizer with more ids or a longer
    context than the text tower); ``source`` (the model or the processor's files) starts the message.

    Run where the processor is about to be used (the embedding engine, the trainer, ``tether
    embed`` / ``eval``) and when one is attached in Python; not when a checkpoint is loaded, so a
    checkpoint whose tokenizer is larger than its model (test models often are) still loads,
    converts and describes itself."""
    towers = getattr(getattr(model, "config", None), "towers", {})  # duck-typed models have none to check
    if processor is None or modality not in towers:
        return
    try:
        get_modality(modality).check_processor(towers[modality], processor)
    except TetherError as err:
        if source is None:
            raise
        raise type(err)(f"{source}: {err}") from err


def check_processors(model, source: str | Path | None = None) -> None:
    """:func:`check_processor` for every processor the model has (before training or evaluation starts)."""
    for modality, processor in model.processors.items():
        check_processor(model, modality, processor, source)


__all__ = ["MODALITIES", "VARIANT_SEPARATOR", "base_modality", "check_processor", "check_processors", "Modality", "Processor", "get_modality", "register_modality", "tower_builder", "tower_config_class", "tower_preset"]
