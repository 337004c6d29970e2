"""tether: images, text and other modalities in one shared embedding space."""
from __future__ import annotations

from .config import ModelConfig, TextConfig, VisionConfig
from .models import AlignedModel, create_model, get_model_config, list_models

__version__ = "0.1.0"


def load(path, **kwargs) -> AlignedModel:
    """Load a ready model from a tether, Hugging Face (CLIP/SigLIP), OpenCLIP or OpenAI checkpoint."""
    from .checkpoints import load_model
    return load_model(path, **kwargs)


__all__ = ["AlignedModel", "ModelConfig", "TextConfig", "VisionConfig", "create_model",
           "get_model_config", "list_models", "load", "__version__"]
