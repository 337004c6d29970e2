"""tether's own checkpoint: a directory anyone can read without tether.

    config.json        the ModelConfig (plus "tether_format": 1)
    model.safetensors  the weights, tether's key names
    tokenizer/         tokenizer.json + tokenizer_config.json (when the model has one)

Everything is written to a temporary directory first and moved into place, so an
interrupted save never leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import ModelConfig
from ..io import atomic_directory, atomic_save_safetensors
from .common import CheckpointError, load_into, read_weights

FORMAT_VERSION = 1


def detect(path: Path) -> bool:
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.is_file() and (path / "model.safetensors").is_file()):
        return False
    try:
        data = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "tether_format" in data


def save(model, path: Path) -> None:
    with atomic_directory(path) as tmp:
        data = {"tether_format": FORMAT_VERSION, **model.config.to_dict()}
        if model.preprocessor is not None:
            data["preprocess"] = model.preprocessor.config.to_dict()
        (tmp / "config.json").write_text(json.dumps(data, indent=2) + "\n")
        atomic_save_safetensors(model.state_dict(), tmp / "model.safetensors", metadata={"format": "pt"})
        if model.tokenizer is not None:
            model.tokenizer.save(tmp / "tokenizer")


def load(path: Path, visual=None, text=None, map_location: str = "cpu"):
    """Rebuild the model from config.json and load its weights.

    ``visual``/``text``: the tower modules for configs whose kind is "module".
    """
    from ..models.aligned import AlignedModel
    from .attach import attach_processors

    try:
        data = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path / 'config.json'}: not valid JSON ({err})") from err
    version = data.pop("tether_format", None)
    if version is None or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: tether_format {version!r} is not supported (this tether reads <= {FORMAT_VERSION})")
    config = ModelConfig.from_dict(data)
    model = AlignedModel(config, visual=visual, text=text)
    load_into(model, read_weights(path / "model.safetensors"), str(path / "model.safetensors"))
    tok_dir = path / "tokenizer"
    attach_processors(model, tok_dir if tok_dir.is_dir() else None)
    return model.to(map_location).eval()
