"""Checkpoint formats: tether's own, Hugging Face CLIP/SigLIP, OpenCLIP and OpenAI.

``load_model`` looks at what is on disk and picks the reader; ``save_model``
writes the format asked for. Each format lives in its own module with the same
three functions: ``detect(path) -> bool``, ``load(path, **kw)`` and ``save(model, path)``.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ConfigError
from .common import FORMATS, CheckpointError, check_safetensors, damaged_json_note

EXPECTED = (
    "a tether directory (config.json with 'embed_dim', model.safetensors, tokenizer/), "
    "a Hugging Face CLIP/SigLIP directory (config.json with model_type 'clip' or 'siglip' + model.safetensors), "
    "an OpenCLIP hub directory (open_clip_config.json + open_clip_model.safetensors / open_clip_pytorch_model.bin), "
    "or an OpenAI/OpenCLIP state-dict file (.pt, .bin, .pth, .safetensors)"
)


def _module(fmt: str):
    if fmt not in FORMATS:
        raise ConfigError(f"unknown checkpoint format {fmt!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[fmt])


def detect_format(path: str | Path) -> str:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.suffix == ".safetensors" and path.is_file():
        check_safetensors(path)  # a truncated file: say so, not "unknown layout"
    for fmt in FORMATS:
        try:
            mod = _module(fmt)
        except ImportError:
            continue
        if mod.detect(path):
            return fmt
    raise CheckpointError(f"{path}: not a checkpoint layout tether knows; expected {EXPECTED}"
                          + damaged_json_note(path))


def load_model(path: str | Path, format: str | None = None, **kwargs):
    """Load a ready AlignedModel (tokenizer and preprocessor attached where known)."""
    fmt = format or detect_format(path)
    return _module(fmt).load(Path(path), **kwargs)


def save_model(model, path: str | Path, format: str = "tether") -> Path:
    path = Path(path)
    _module(format).save(model, path)
    return path


def resolve_model(spec: str | Path, random_weights: bool = False, **kwargs):
    """A ready model (eval mode) from whatever names one: a checkpoint path, a published name
    (``ViT-B-32/openai``), a Hub id (``org/name[@rev]``, ``hf-hub:org/name``), or, only with
    ``random_weights=True``, an architecture (``ViT-B-32``). See tether.hub.names."""
    from ..hub import load_pretrained, parse_name, random_weights_refusal
    from ..models.registry import create_model

    name = parse_name(spec)
    if name.kind == "path":
        return load_model(name.path, **kwargs).eval()
    if random_weights and name.kind != "architecture":
        raise CheckpointError(f"{spec!r} names published weights; --random-weights applies to architecture names")
    if name.kind == "architecture":
        if not random_weights:
            raise CheckpointError(random_weights_refusal(str(spec)))
        return create_model(str(spec), **kwargs).eval()
    return load_pretrained(name, **kwargs)


__all__ = ["CheckpointError", "FORMATS", "detect_format", "load_model", "resolve_model", "save_model"]
