"""Named model configurations, kept as JSON data in ``tether/model_configs``."""
from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ..config import ModelConfig


def list_models() -> list[str]:
    """Names of the shipped configs, e.g. 'ViT-B-32', 'SigLIP-B-16', 'tiny-vit-28'."""
    files = resources.files("tether").joinpath("model_configs").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".json"))


def get_model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config for ``name``; ``overrides`` replace top-level keys (e.g. embed_dim=256)."""
    path = resources.files("tether").joinpath("model_configs").joinpath(f"{name}.json")
    if not path.is_file():
        raise KeyError(f"no model config named {name!r}; known: {', '.join(list_models())}")
    data = json.loads(path.read_text())
    data.update(overrides)
    return ModelConfig.from_dict(data).validate()


def create_model(name_or_config: str | ModelConfig, **overrides: Any):
    """A randomly initialised AlignedModel from a name or a config."""
    from .aligned import AlignedModel
    cfg = name_or_config if isinstance(name_or_config, ModelConfig) else get_model_config(name_or_config, **overrides)
    return AlignedModel(cfg)


def resolve_model(spec: str):
    """A checkpoint path, a pretrained name, or a config name (random weights), in that order."""
    from pathlib import Path
    if Path(spec).exists():
        from ..checkpoints import load_model
        return load_model(spec)
    try:
        from .pretrained import PRETRAINED_MODELS
    except ImportError:
        PRETRAINED_MODELS = {}
    if spec in PRETRAINED_MODELS:
        return PRETRAINED_MODELS[spec]()
    if spec in list_models():
        from ..checkpoints.attach import attach_processors
        model = create_model(spec)
        attach_processors(model)
        return model.eval()
    known = sorted(set(PRETRAINED_MODELS) | set(list_models()))
    raise FileNotFoundError(f"{spec!r} is neither a checkpoint path nor a known model ({', '.join(known)})")
