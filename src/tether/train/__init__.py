"""Training: contrastive steps at any batch size, schedules, optimizer groups, the trainer."""
from .config import TrainConfig, load_train_config
from .data import TrainData
from .optim import lock_tower
from .trainer import Trainer

__all__ = ["TrainConfig", "TrainData", "Trainer", "load_train_config", "lock_tower"]
