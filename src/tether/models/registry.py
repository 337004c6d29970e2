"""Model names -> builders: the shipped JSON configs (random weights) and models with pretrained towers.

``create_model(name)`` returns a model with its processors attached (the image preprocessor
always; the tokenizer where the config names one tether can build offline). Names whose towers
start from pretrained weights register a builder here; nothing outside this module branches
on a model's name.
"""
from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Mapping

from torch import nn

from ..config import ModelConfig
from ..errors import UnknownNameError

if TYPE_CHECKING:
    from .aligned import AlignedModel


def _config_names() -> list[str]:
    files = resources.files("tether").joinpath("model_configs").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".json"))


def _align(**overrides: Any) -> "AlignedModel":
    from .pretrained import align_tiny
    return align_tiny(**overrides)


# Names built by code: their towers load pretrained weights and their tokenizer is attached.
BUILDERS: dict[str, Callable[..., "AlignedModel"]] = {"align-effnet-minilm": _align}


def register_model(name: str, builder: Callable[..., "AlignedModel"]) -> None:
    """Make ``create_model(name, **overrides)`` call ``builder(**overrides)``."""
    BUILDERS[name] = builder


def list_models() -> list[str]:
    """Names ``create_model`` knows, e.g. 'ViT-B-32', 'SigLIP-B-16', 'tiny-vit-28', 'align-effnet-minilm'."""
    return sorted(set(_config_names()) | set(BUILDERS))


def get_model_config(name: str, **overrides: Any) -> ModelConfig:
    """The shipped config for ``name``; ``overrides`` replace top-level keys (e.g. embed_dim=256)."""
    path = resources.files("tether").joinpath("model_configs").joinpath(f"{name}.json")
    if not path.is_file():
        raise UnknownNameError(f"no model config named {name!r}; known: {', '.join(_config_names())}")
    data = json.loads(path.read_text())
    data.update(overrides)
    return ModelConfig.from_dict(data).validate()


def create_model(name_or_config: str | ModelConfig, towers: Mapping[str, nn.Module] | None = None,
                 **overrides: Any) -> "AlignedModel":
    """A ready AlignedModel from a name or a config: random weights unless the name's builder loads some.

    ``towers``: tower modules for the config's towers of kind "module", by modality.
    """
    from .aligned import AlignedModel
    from .attach import attach_processors

    if isinstance(name_or_config, str) and name_or_config in BUILDERS:
        if towers:
            raise ValueError(f"{name_or_config!r} builds its own towers; towers= is for configs")
        return BUILDERS[name_or_config](**overrides)
    if isinstance(name_or_config, ModelConfig):
        if overrides:
            raise ValueError("create_model(config, **overrides): put the overrides in the config")
        cfg = name_or_config
    else:
        cfg = get_model_config(name_or_config, **overrides)
    model = AlignedModel(cfg, towers=towers)
    attach_processors(model)
    return model


__all__ = ["BUILDERS", "create_model", "get_model_config", "list_models", "register_model"]
