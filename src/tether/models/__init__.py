"""Encoder towers, the modalities they serve, and the aligned model that joins them."""
from . import audio_modality, image_modality, text_modality  # noqa: F401  (register "audio", "image", "text")
from . import depth_modality, imu_modality, points_modality, thermal_modality  # noqa: F401  (bind's modalities)
from .aligned import AlignedModel, AlignedOutput
from ..modalities import MODALITIES, Modality, Processor, get_modality, register_modality
from .registry import create_model, get_model_config, list_models, register_model
from .tower import Tower

__all__ = ["AlignedModel", "AlignedOutput", "MODALITIES", "Modality", "Processor", "Tower", "create_model",
           "get_model_config", "get_modality", "list_models", "register_modality", "register_model"]
