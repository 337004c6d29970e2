"""tether's own checkpoint: a directory anyone can read without tether.

    config.json        the ModelConfig (plus "tether_format": 2): ``towers`` keyed by modality
    model.safetensors  the weights, tether's key names (``towers.<m>.*``, ``projections.<m>.*``)
    <processor dir>/   each tower's processor files, when it has any: ``tokenizer/`` for text
                       (tokenizer.json + tokenizer_config.json)

Any set of towers is stored; towers of kind "module" are passed back in on load
(``load(path, towers={"vector": module})``). Version-1 files (image + text towers under
"vision"/"text", top-level projections) are read through :func:`migrate_v1`.

Everything is written to a temporary directory first and moved into place, so an
interrupted save never leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import ConfigError, ModelConfig
from ..io import atomic_directory, atomic_save_safetensors
from .common import CheckpointError, load_into, read_weights

FORMAT_VERSION = 2
# Where a modality's processor files live inside the checkpoint directory.
PROCESSOR_DIRS = {"text": "tokenizer"}


def detect(path: Path) -> bool:
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.is_file() and (path / "model.safetensors").is_file()):
        return False
    try:
        text = cfg.read_text(encoding="utf-8", errors="replace")
        data = json.loads(text)
    except json.JSONDecodeError:
        return '"tether_format"' in text  # a damaged tether config: load() says what is wrong with it
    except OSError:
        return False
    return isinstance(data, dict) and "tether_format" in data


def _processor_dir(modality: str) -> str:
    return PROCESSOR_DIRS.get(modality, f"processor_{modality}")


def save(model, path: Path) -> None:
    with atomic_directory(path) as tmp:
        config = model.config.to_dict()
        pre = model.processors.get("image")
        if pre is not None and hasattr(pre, "config") and "image" in config["towers"]:
            config["towers"]["image"]["processor"] = pre.config.to_dict()
        data = {"tether_format": FORMAT_VERSION, **config}
        (tmp / "config.json").write_text(json.dumps(data, indent=2) + "\n")
        atomic_save_safetensors(model.state_dict(), tmp / "model.safetensors", metadata={"format": "pt"})
        for modality, processor in model.processors.items():
            if callable(getattr(processor, "save", None)):
                processor.save(tmp / _processor_dir(modality))


V1_PREFIXES = {"visual.": "towers.image.", "text.": "towers.text.", "image_proj.": "projections.image.",
               "text_proj.": "projections.text."}


def migrate_v1(data: dict[str, Any], state: Mapping[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """A tether_format 1 config mapping (and state dict) in today's layout.

    Version 1 kept the image tower under "vision", the text tower under "text", the projections as
    top-level "image_proj"/"text_proj" (+ "_bias"), and the processors' settings as top-level
    "preprocess"/"tokenizer"; weights were named ``visual.*``, ``text.*``, ``image_proj.*``, ``text_proj.*``.
    """
    data = dict(data)
    towers = {"image": dict(data.pop("vision", {}) or {}), "text": dict(data.pop("text", {}) or {})}
    for side, tower in towers.items():
        if f"{side}_proj" in data:
            tower["projection"] = data.pop(f"{side}_proj")
        if f"{side}_proj_bias" in data:
            tower["projection_bias"] = data.pop(f"{side}_proj_bias")
    if "preprocess" in data:
        towers["image"]["processor"] = data.pop("preprocess")
    if "tokenizer" in data:
        towers["text"]["processor"] = data.pop("tokenizer")
    data["towers"] = towers
    if state is None:
        return data, None
    renamed = {}
    for key, value in state.items():
        prefix = next((p for p in V1_PREFIXES if key.startswith(p)), None)
        renamed[V1_PREFIXES[prefix] + key[len(prefix):] if prefix else key] = value
    return data, renamed


def _read_config(file: Path) -> tuple[dict[str, Any], int]:
    """config.json's mapping (without "tether_format") and its format version; errors name the file."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{file}: a tether config that is not valid JSON ({err}); the checkpoint is "
                              "damaged (an interrupted copy?)") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: an invalid tether config: expected a JSON object, found "
                              f"{type(data).__name__}")
    version = data.pop("tether_format", None)
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{file}: tether_format {version!r} is not supported (this tether reads 1 to "
                              f"{FORMAT_VERSION})")
    return data, version


def load(path: Path, towers: Mapping[str, torch.nn.Module] | None = None, map_location: str = "cpu"):
    """Rebuild the model from config.json, load its weights and attach its processors.

    ``towers``: the tower modules for configs whose kind is "module", by modality.
    """
    from ..models.aligned import AlignedModel
    from ..models.attach import attach_processors

    data, version = _read_config(path / "config.json")
    state = read_weights(path / "model.safetensors")
    if version == 1:
        data, state = migrate_v1(data, state)
    try:
        config = ModelConfig.from_dict(data)
    except ConfigError as err:
        raise CheckpointError(f"{path / 'config.json'}: an invalid tether config: {err}") from err
    model = AlignedModel(config, towers=towers)
    load_into(model, state, str(path / "model.safetensors"))
    files = {m: path / _processor_dir(m) for m in config.towers if (path / _processor_dir(m)).is_dir()}
    attach_processors(model, files)
    return model.to(map_location).eval()
