"""Reading, checking and writing weights: shared by every checkpoint format."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import CheckpointError


# format name -> the module with detect(path), load(path, **kw), save(model, path).
# Order matters: the most specific layouts are tried first.
FORMATS = {
    "tether": "tether.checkpoints.tether_format",
    "hf": "tether.checkpoints.hf",
    "open_clip": "tether.checkpoints.open_clip",
}


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat state dict from .safetensors, or a torch .pt/.bin/.pth file (weights only).

    Torch files may hold the dict directly or under 'state_dict' / 'model'
    (training checkpoints); a TorchScript archive (OpenAI's released .pt files)
    is opened with torch.jit.load and its state dict taken.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        check_safetensors(path)
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors' own error type names no file
            raise CheckpointError(f"{path}: cannot read the .safetensors file ({err})") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # TorchScript archives and pickles with custom classes
        try:
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception:
            raise CheckpointError(f"{path}: cannot read weights ({err})") from err
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of tensor names to tensors")
    return dict(obj)


def check_safetensors(path: str | Path) -> None:
    """Refuse a file that is not a complete .safetensors file (a half-written download), naming it.

    The format is an 8-byte little-endian header length, a JSON header giving each tensor's byte
    range, then the data: a truncated file announces more bytes than it has.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 0 or n > size - 8:
            raise CheckpointError(f"{path}: truncated or not a .safetensors file: expected an 8-byte header length "
                                  f"and that many header bytes, found a file of {size} bytes"
                                  + (f" announcing a {n}-byte header" if n >= 0 else ""))
        raw = f.read(n)
    try:
        header = json.loads(raw)
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a .safetensors file: expected a JSON header of tensor entries with "
                              f"data_offsets ({type(err).__name__}: {err})") from err
    if 8 + n + end > size:
        raise CheckpointError(f"{path}: truncated .safetensors file: its header describes {8 + n + end} bytes, "
                              f"found {size} (an interrupted download or copy?)")


def damaged_json_note(directory: Path) -> str:
    """``"; <file> is not valid JSON (...)"`` for a checkpoint directory's config file that does not parse, else ""."""
    for name in ("config.json", "open_clip_config.json"):
        file = Path(directory) / name
        if file.is_file():
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                return f"; found {file}, which is not valid JSON ({err}): a damaged checkpoint?"
    return ""


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a prefix that every key carries (DDP's 'module.', torch.compile's '_orig_mod.')."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; errors name the key with expected and found shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s), e.g. {unexpected[:3]}")
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(parts))
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: key {key!r} expected shape {tuple(own[key].shape)}, found {tuple(value.shape)}")
    model.load_state_dict(state, strict=True)
