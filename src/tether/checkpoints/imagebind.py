"""ImageBind's checkpoint layout (``imagebind_huge.pth``) -> a tether model with one tower per modality.

ImageBind splits each modality into ``modality_preprocessors`` (patch stem, class token, position
table), ``modality_trunks`` (pre-LN blocks on ``nn.MultiheadAttention``), ``modality_heads``
(LayerNorm, pick the class or end token, Linear) and ``modality_postprocessors`` (L2 norm, a
logit scale: learned for text, fixed for the others). tether holds the same tensors as tower +
projection, so loading is a rename table (docs/modalities.md) plus three reshapes: the class token
and position tables lose their leading 1, and the image stem's Conv3d over two copies of the
image (``PadIm2Video``) becomes a Conv2d whose kernel is the sum of the two time slices.

ImageBind's "vision" is tether's "image"; every other name is the same. The tether model's config
says which modalities to load and their shapes (``ImageBind-H-14`` for the released model); each
of its towers must be in the checkpoint, and each tensor must have the shape tether expects.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch

from ..config import ModelConfig
from .common import CheckpointError

__all__ = ["IMAGEBIND_NAMES", "convert_state_dict", "load_imagebind"]

#: tether modality -> ImageBind's name for it
IMAGEBIND_NAMES = {"image": "vision", "text": "text", "audio": "audio", "depth": "depth", "thermal": "thermal",
                   "imu": "imu"}
_BLOCK = {"norm_1.weight": "ln_1.weight", "norm_1.bias": "ln_1.bias", "norm_2.weight": "ln_2.weight",
          "norm_2.bias": "ln_2.bias", "attn.in_proj_weight": "attn.in_proj.weight",
          "attn.in_proj_bias": "attn.in_proj.bias", "attn.out_proj.weight": "attn.out_proj.weight",
          "attn.out_proj.bias": "attn.out_proj.bias", "attn.bias_k": "attn.bias_k", "attn.bias_v": "attn.bias_v",
          "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias", "mlp.fc2.weight": "mlp.fc2.weight",
          "mlp.fc2.bias": "mlp.fc2.bias"}


def convert_state_dict(state: Mapping[str, torch.Tensor], config: ModelConfig) -> tuple[dict[str, torch.Tensor],
                                                                                        dict[str, float]]:
    """ImageBind's tensors for ``config``'s towers under tether's names, and the fixed logit scale t
    of each modality that has one (``towers.M.logit_scale``); the learned text scale becomes
    ``logit_scale``. Raises CheckpointError naming a missing key."""
    out: dict[str, torch.Tensor] = {}
    scales: dict[str, float] = {}
    for modality in config.towers:
        if modality not in IMAGEBIND_NAMES:
            raise CheckpointError(f"ImageBind has no {modality!r} modality (it has {', '.join(IMAGEBIND_NAMES)})")
        name = IMAGEBIND_NAMES[modality]
        mapped = _text(state) if modality == "text" else _patch_tower(state, name, modality)
        out.update(mapped)
        scale_key = f"modality_postprocessors.{name}.1.log_logit_scale"
        if modality == "text":
            out["logit_scale"] = _get(state, scale_key).reshape(())
        elif scale_key in state:
            scales[modality] = math.exp(float(state[scale_key]))
    return out, scales


def _get(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"ImageBind checkpoint: missing {key!r}")
    return state[key]


def _blocks(state: Mapping[str, torch.Tensor], trunk: str, tower: str) -> dict[str, torch.Tensor]:
    prefix = f"modality_trunks.{trunk}.blocks."
    out = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            if rest in _BLOCK:
                out[f"towers.{tower}.transformer.blocks.{index}.{_BLOCK[rest]}"] = value
    if not out:
        raise CheckpointError(f"ImageBind checkpoint: no {prefix}* keys")
    return out


def _patch_tower(state: Mapping[str, torch.Tensor], name: str, tower: str) -> dict[str, torch.Tensor]:
    """Image, audio, depth, thermal or IMU: stem, class token, positions, blocks, head."""
    pre = f"modality_preprocessors.{name}."
    stem = next((k[len(pre):-len(".weight")] for k in state
                 if k.startswith(pre) and k.endswith(".weight") and ".proj" in k and "norm_layer" not in k), None)
    if stem is None:
        raise CheckpointError(f"ImageBind checkpoint: no patch stem under {pre}*")
    weight = state[pre + stem + ".weight"]
    if weight.ndim == 5:  # vision: Conv3d over the image repeated in time = Conv2d with the slices summed
        weight = weight.sum(dim=2)
    t = f"towers.{tower}."
    mapped = {t + "patch_embed.weight": weight,
              t + "class_embedding": _get(state, pre + "cls_token").reshape(-1)}
    pos = pre + "pos_embedding_helper.pos_embed" if pre + "pos_embedding_helper.pos_embed" in state else pre + "pos_embed"
    mapped[t + "positional_embedding"] = _get(state, pos)[0]
    norm = pre + stem.rpartition(".proj")[0] + ".norm_layer."
    if norm + "weight" in state:
        mapped[t + "patch_norm.weight"], mapped[t + "patch_norm.bias"] = state[norm + "weight"], state[norm + "bias"]
    ln_pre = f"modality_trunks.{name}.pre_transformer_layer.0."
    if ln_pre + "weight" in state:
        mapped[t + "ln_pre.weight"], mapped[t + "ln_pre.bias"] = state[ln_pre + "weight"], state[ln_pre + "bias"]
    mapped.update(_blocks(state, name, tower))
    head = f"modality_heads.{name}."
    mapped[t + "ln_post.weight"], mapped[t + "ln_post.bias"] = _get(state, head + "0.weight"), state[head + "0.bias"]
    linear = [k for k in state if k.startswith(head) and k.endswith(".weight") and state[k].ndim == 2]
    if len(linear) != 1:
        raise CheckpointError(f"ImageBind checkpoint: expected one Linear in {head}*, found {linear}")
    mapped[f"projections.{tower}.weight"] = state[linear[0]]
    return mapped


def _text(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    pre = "modality_preprocessors.text."
    mapped = {"towers.text.token_embedding.weight": _get(state, pre + "token_embedding.weight"),
              "towers.text.positional_embedding": _get(state, pre + "pos_embed")[0],
              "towers.text.ln_final.weight": _get(state, "modality_heads.text.proj.0.weight"),
              "towers.text.ln_final.bias": _get(state, "modality_heads.text.proj.0.bias"),
              "projections.text.weight": _get(state, "modality_heads.text.proj.1.weight")}
    mapped.update(_blocks(state, "text", "text"))
    return mapped


def load_imagebind(source: str | Path | Mapping[str, torch.Tensor], config: str | ModelConfig = "ImageBind-H-14"):
    """A tether model holding ImageBind's towers for ``config``'s modalities (a named config or a
    ModelConfig), with their processors; ``source``: ImageBind's ``.pth`` or its state dict.

    Every tensor of the model must come from the checkpoint with the shape tether expects; the
    fixed per-modality scales go into the config (``towers.M.logit_scale``).
    """
    import copy

    from ..models import create_model, get_model_config

    cfg = copy.deepcopy(get_model_config(config) if isinstance(config, str) else config)
    state = source if isinstance(source, Mapping) else torch.load(Path(source), map_location="cpu", weights_only=True)
    tensors, scales = convert_state_dict(state, cfg)
    for modality, scale in scales.items():
        if hasattr(cfg.towers[modality], "logit_scale"):
            cfg.towers[modality].logit_scale = scale
    model = create_model(cfg)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    if missing:
        raise CheckpointError(f"ImageBind checkpoint: nothing for {missing[0]} (and {len(missing) - 1} more); "
                              "does the config match the checkpoint's modalities and options?")
    for key, value in tensors.items():
        if key not in own:
            raise CheckpointError(f"ImageBind checkpoint: {key} has no place in the tether model (config options?)")
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"ImageBind checkpoint: {key} has shape {tuple(value.shape)}, the config "
                                  f"expects {tuple(own[key].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
    return model.eval()
