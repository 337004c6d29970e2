"""Encoder towers and the aligned model that joins them."""
from .aligned import AlignedModel, AlignedOutput
from .registry import create_model, get_model_config, list_models

__all__ = ["AlignedModel", "AlignedOutput", "create_model", "get_model_config", "list_models"]
