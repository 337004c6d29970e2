"""OpenCLIP hub directories and OpenAI / OpenCLIP state-dict files.

Reads
    * an OpenCLIP hub directory: ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``)
      next to ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin`` (or another
      .safetensors/.bin/.pt/.pth file holding the weights);
    * a bare weights file (OpenAI's released .pt archives, OpenCLIP training checkpoints with
      ``{"state_dict": ...}`` and ``module.`` prefixes, plain state dicts). Without a config the
      architecture is inferred from tensor shapes, as open_clip's
      ``build_model_from_openai_state_dict`` does. A file next to an ``open_clip_config.json``
      uses that config.

Writes the hub layout (``open_clip_config.json`` + ``open_clip_model.safetensors``) that
``open_clip.create_model_and_transforms("hf-hub:...")`` / ``open_clip.create_model(...,
pretrained=path)`` read. See docs/checkpoints_open_clip.md.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..config import ModelConfig
from ..io import atomic_directory, atomic_save_safetensors
from . import open_clip_layout as L
from .common import CheckpointError, load_into, read_weights
from .open_clip_convert import cannot_save, merge, open_clip_model_cfg, tether_config

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
# Looked for in this order; then any other weights file whose keys look like OpenCLIP.
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors",
                "pytorch_model.bin", "model.pt", "model.bin", "model.pth")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


# ------------------------------------------------------------------------------ detect
def detect(path: Path) -> bool:
    path = Path(path)
    try:
        if path.is_dir():
            return _find_weights(path) is not None
        return path.suffix in WEIGHT_SUFFIXES and L.looks_like_open_clip(_peek_keys(path) or ())
    except (OSError, CheckpointError):
        return False


def _peek_keys(path: Path) -> list[str] | None:
    """Key names without reading the tensors where the format allows it (safetensors, mmap)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), "pt") as f:
                return list(f.keys())
        try:
            with warnings.catch_warnings():  # TorchScript archives warn, then fail weights_only
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            obj = read_weights(path)  # TorchScript archives, legacy serialisation
        for key in ("state_dict", "model", "module"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        return [k for k in obj if isinstance(k, str)] if isinstance(obj, dict) else None
    except Exception:
        return None


def _find_weights(directory: Path) -> Path | None:
    named = [directory / n for n in WEIGHT_NAMES]
    others = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p not in named)
    for candidate in [p for p in named if p.is_file()] + [p for p in others if p.is_file()]:
        if L.looks_like_open_clip(_peek_keys(candidate) or ()):
            return candidate
    return None


# ------------------------------------------------------------------------------ load
def load(path: Path, image_size: int | None = None, quick_gelu: bool | None = None,
         vision_heads: int | None = None, text_heads: int | None = None,
         config: dict | str | Path | None = None, map_location: str = "cpu"):
    """An AlignedModel from an OpenCLIP hub directory or an OpenAI/OpenCLIP weights file.

    image_size: run the image tower at this size (position table resized bicubically).
    quick_gelu: the transformer activation; default: the config's ``quick_gelu`` (false when
        absent), or True for weights without a config (OpenAI's models use QuickGELU).
    vision_heads / text_heads: attention heads, which shapes do not reveal (defaults: width // 64
        without a config, as open_clip; from the config otherwise).
    config: an open_clip config (dict or JSON path) instead of ``open_clip_config.json``.
    """
    from ..models.aligned import AlignedModel
    from ..models.attach import attach_processors

    path = Path(path)
    weights, config_path = _resolve(path)
    file_cfg = _read_config(config if config is not None else config_path)
    source = str(weights)
    state, _ = L.canonical(read_weights(weights), source)
    inferred = L.infer_model_cfg(state, source)
    cfg = merge(inferred, file_cfg)
    if quick_gelu is None:
        quick_gelu = bool(cfg.get("quick_gelu", False)) if file_cfg is not None else True
    tcfg = tether_config(cfg, quick_gelu, image_size, vision_heads, text_heads, source)
    try:
        model = AlignedModel(tcfg)
    except ValueError as err:
        raise CheckpointError(f"{source}: the config does not fit together: {err}") from err
    _load_state(model, state, tcfg, source)
    tok_dir = _tokenizer_dir(weights.parent) if (path.is_dir() or config_path is not None) else None
    try:
        attach_processors(model, {"text": tok_dir})
    except (OSError, ValueError, KeyError) as err:
        warnings.warn(f"{tok_dir}: tokenizer not loaded ({err})")
        attach_processors(model, None)
    return model.to(map_location).eval()


def _resolve(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        weights = _find_weights(path)
        if weights is None:
            found = sorted(p.name for p in path.iterdir())[:10]
            raise CheckpointError(f"{path}: no OpenCLIP weights; looked for {', '.join(WEIGHT_NAMES)} or another "
                                  f"{'/'.join(WEIGHT_SUFFIXES)} file with OpenAI/OpenCLIP keys; found {found}")
    elif path.is_file():
        weights = path
    else:
        raise FileNotFoundError(f"{path}: no such file or directory")
    cfg = weights.parent / CONFIG_NAME
    return weights, cfg if cfg.is_file() else None


def _read_config(config: dict | str | Path | None) -> dict | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        try:
            config = json.loads(Path(config).read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config}: not valid JSON ({err})") from err
    if "model_cfg" in config:
        return {**config["model_cfg"], "_preprocess": dict(config.get("preprocess_cfg") or {})}
    if "vision_cfg" in config or "text_cfg" in config:  # a bare open_clip model config
        return dict(config)
    raise CheckpointError(f"OpenCLIP config: expected 'model_cfg' (hub config) or 'vision_cfg' + 'text_cfg' "
                          f"(model config); found keys {sorted(config)}")


def _load_state(model, state: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> None:
    """Rename, resize the position table if needed, check every shape, load strictly."""
    kind = cfg.towers["image"].kind
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, tuple[str, bool]] = {}
    unused = []
    for key, value in state.items():
        hit = L.to_tether_key(key, kind)
        if hit is None or hit[0] not in own:
            unused.append(key)
            continue
        tkey, transpose = hit
        mapped[tkey], origin[tkey] = (value.T if transpose else value), (key, transpose)
    if unused:
        raise CheckpointError(f"{source}: {L.describe_unsupported(unused)}")
    for key, value in own.items():  # OpenAI's archives may lack BatchNorm counters
        if key.endswith("num_batches_tracked") and key not in mapped:
            mapped[key] = torch.zeros_like(value)
            origin[key] = (key, False)
    missing = [L.to_open_clip_key(k, kind) for k in own if k not in mapped]
    if missing:
        names = [m[0] if m else "?" for m in missing]
        raise CheckpointError(f"{source}: missing {len(names)} key(s) the config needs, e.g. {names[:4]}")
    _resize_positions(mapped, cfg, source)
    for key, value in mapped.items():
        want = tuple(own[key].shape)
        src, transpose = origin[key]
        have = tuple(value.shape)
        if have != want:
            if transpose:
                want, have = want[::-1], have[::-1]
            raise CheckpointError(f"{source}: key {src!r} expected shape {want}, found {have}")
    load_into(model, mapped, source)


def _resize_positions(mapped: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> None:
    from ..models.vit import resize_pos_embed

    v = cfg.towers["image"]
    if v.kind == "vit":
        key, grid = f"{L.IMAGE}positional_embedding", v.image_size // v.patch_size
    else:
        key, grid = f"{L.IMAGE}attnpool.positional_embedding", v.image_size // 32
    pos = mapped.get(key)
    if pos is None or pos.ndim != 2 or pos.shape[0] == grid * grid + 1:
        return
    L.square_side(pos.shape[0] - 1, key, source)
    mapped[key] = resize_pos_embed(pos.float(), grid, 1).to(pos.dtype)


def _tokenizer_dir(directory: Path) -> Path | None:
    for d in (directory / "tokenizer", directory):
        if d.is_dir() and ((d / "tokenizer.json").is_file() or
                           ((d / "vocab.json").is_file() and (d / "merges.txt").is_file())):
            return d
    return None


# ------------------------------------------------------------------------------ save
def save(model, path: Path, custom_text: bool = False) -> None:
    """Write an OpenCLIP hub directory; ``custom_text``: CustomTextCLIP layout (``text.*``)."""
    path = Path(path)
    model_cfg = open_clip_model_cfg(model.config, custom_text)
    state = open_clip_state(model, custom_text)
    image = model.config.tower("image")
    pre = model.preprocessor.config.to_dict() if model.preprocessor is not None else dict(image.processor)
    preprocess_cfg = {"size": pre.get("image_size", image.image_size),
                      "mean": list(pre.get("mean", (0.48145466, 0.4578275, 0.40821073))),
                      "std": list(pre.get("std", (0.26862954, 0.26130258, 0.27577711))),
                      "interpolation": pre.get("interpolation", "bicubic"),
                      "resize_mode": pre.get("resize_mode", "shortest")}
    with atomic_directory(path) as tmp:
        text = json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n"
        (tmp / CONFIG_NAME).write_text(text)
        atomic_save_safetensors(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
        if model.tokenizer is not None:
            model.tokenizer.save(tmp / "tokenizer")


def open_clip_state(model, custom_text: bool = False) -> dict[str, torch.Tensor]:
    """tether weights under OpenCLIP names (root layout, or ``text.*`` for CustomTextCLIP)."""
    image, text = model.config.tower("image"), model.config.tower("text")
    kind = image.kind
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        hit = L.to_open_clip_key(key, kind)
        if hit is None:
            raise cannot_save(f"weight {key!r} has no OpenCLIP counterpart")
        name, transpose = hit
        if key == "projections.text.weight" and text.projection_bias:  # OpenCLIP: nn.Linear, stored (out, in)
            name, transpose = "text_projection.weight", False
        if custom_text and L.is_text_key(name):
            name = "text." + name
        out[name] = (value.T if transpose else value).detach().cpu().contiguous()
    if kind == "vit" and image.projection == "none":  # OpenCLIP's ViT always projects: use the identity
        out["visual.proj"] = torch.eye(image.width, dtype=model.logit_scale.dtype)
    return out
