"""tether: images, text and other modalities in one shared embedding space."""
from __future__ import annotations

from pathlib import Path

from .config import ImageTowerConfig, ModelConfig, PatchTowerConfig, TextTowerConfig, TowerConfig
from .errors import TetherError
from .models import (AlignedModel, Modality, Tower, create_model, get_model_config, get_modality, list_models,
                     register_modality)

__version__ = "0.1.0"


def load(name, **kwargs) -> AlignedModel:
    """Load a ready model by path or published name; the Hub's files are downloaded once and checked.

    ``name``: a tether, Hugging Face (CLIP/SigLIP), OpenCLIP or OpenAI checkpoint path; a registered
    name (``"ViT-B-32/openai"``, ``tether models --pretrained``); a Hub repository id
    (``"openai/clip-vit-base-patch32"``, ``"hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"``, with
    ``@revision``). An architecture name alone is refused: ``tether.create_model`` gives random weights.
    tether checkpoints with towers of kind "module" need them: ``load(path, towers={"image": module})``.
    """
    from .checkpoints import resolve_model
    return resolve_model(name, **kwargs)


def save(model: AlignedModel, path: str | Path, format: str = "tether") -> Path:
    """Write a checkpoint directory: "tether" (default, any set of towers), "hf" or "open_clip"."""
    from .checkpoints import save_model
    return save_model(model, path, format=format)


__all__ = ["AlignedModel", "ImageTowerConfig", "Modality", "ModelConfig", "PatchTowerConfig", "TetherError", "TextTowerConfig", "Tower",
           "TowerConfig",
           "create_model", "get_model_config", "get_modality", "list_models", "load", "register_modality", "save",
           "__version__"]
