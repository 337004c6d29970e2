"""OpenAI / OpenCLIP state dicts: layouts, key names and shape inference.

Helpers for :mod:`tether.checkpoints.open_clip`. Three layouts are read:

* OpenAI CLIP and OpenCLIP ``CLIP`` ("root"): image tower under ``visual.``, text tower
  at the root (``token_embedding``, ``positional_embedding``, ``transformer.resblocks``,
  ``ln_final``, ``text_projection``), plus ``logit_scale`` (and ``logit_bias``);
* OpenCLIP ``CustomTextCLIP`` ("text"): the same text keys under ``text.``;
* either one wrapped by DDP (``module.``) or torch.compile (``_orig_mod.``).

Everything is first rewritten to the root layout ("canonical" keys), then renamed to
tether's names. ``infer_model_cfg`` reads the architecture from tensor shapes the way
open_clip's ``build_model_from_openai_state_dict`` does, in open_clip's vocabulary.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping

import torch

from .common import CheckpointError, strip_prefix

# Non-weights that OpenAI's TorchScript archives and old OpenCLIP versions put in the state dict.
IGNORED_KEYS = frozenset({"input_resolution", "context_length", "vocab_size", "attn_mask", "text.attn_mask"})

EXPECTED_KEYS = (
    "image tower: 'visual.class_embedding', 'visual.conv1.weight', 'visual.positional_embedding', "
    "'visual.transformer.resblocks.{i}.*', 'visual.ln_post.*', 'visual.proj' (ViT) or "
    "'visual.conv1.weight', 'visual.layer{1-4}.{i}.*', 'visual.attnpool.*' (ResNet); "
    "text tower: 'token_embedding.weight', 'positional_embedding', 'transformer.resblocks.{i}.*', "
    "'ln_final.*', 'text_projection' (OpenAI / OpenCLIP CLIP) or the same under 'text.' "
    "(OpenCLIP CustomTextCLIP); 'logit_scale'; optional 'module.' / '_orig_mod.' prefixes"
)

# Per-block names: OpenCLIP (nn.MultiheadAttention + c_fc/c_proj) -> tether.
_BLOCK = {
    "ln_1.weight": "ln_1.weight", "ln_1.bias": "ln_1.bias",
    "attn.in_proj_weight": "attn.in_proj.weight", "attn.in_proj_bias": "attn.in_proj.bias",
    "attn.out_proj.weight": "attn.out_proj.weight", "attn.out_proj.bias": "attn.out_proj.bias",
    "ln_2.weight": "ln_2.weight", "ln_2.bias": "ln_2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
    "ls_1.gamma": "ls_1", "ls_2.gamma": "ls_2",  # LayerScale (ls_init_value)
}
_BLOCK_REV = {t: o for o, t in _BLOCK.items()}
# OpenCLIP's names on the left, tether's on the right (tether: towers.<modality>.*, projections.<modality>.*).
IMAGE, TEXT = "towers.image.", "towers.text."
_BLOCK_STACKS = {"vit": (("visual.transformer.resblocks.", IMAGE + "transformer.blocks."),
                         ("transformer.resblocks.", TEXT + "transformer.blocks.")),
                 "resnet": (("transformer.resblocks.", TEXT + "transformer.blocks."),)}
_COMMON = {
    "token_embedding.weight": TEXT + "token_embedding.weight",
    "positional_embedding": TEXT + "positional_embedding",
    "ln_final.weight": TEXT + "ln_final.weight", "ln_final.bias": TEXT + "ln_final.bias",
    "text_projection.weight": "projections.text.weight", "text_projection.bias": "projections.text.bias",
    "logit_scale": "logit_scale", "logit_bias": "logit_bias",
}
_VIT = {
    "visual.conv1.weight": IMAGE + "patch_embed.weight", "visual.conv1.bias": IMAGE + "patch_embed.bias",
    "visual.class_embedding": IMAGE + "class_embedding",
    "visual.positional_embedding": IMAGE + "positional_embedding",
    "visual.ln_pre.weight": IMAGE + "ln_pre.weight", "visual.ln_pre.bias": IMAGE + "ln_pre.bias",
    "visual.ln_post.weight": IMAGE + "ln_post.weight", "visual.ln_post.bias": IMAGE + "ln_post.bias",
    "visual.proj.weight": "projections.image.weight", "visual.proj.bias": "projections.image.bias",
}
# Stored (in, out) and used as x @ W: tether's nn.Linear holds the transpose.
TRANSPOSED = {"visual.proj": "projections.image.weight", "text_projection": "projections.text.weight"}
_TRANSPOSED_REV = {t: o for o, t in TRANSPOSED.items()}
# CLIP's modified ResNet: tether uses OpenAI's names under towers.image. instead of visual.
_RESNET = re.compile(r"visual\.((conv|bn)[123]\.|layer[1-4]\.\d+\.|attnpool\.)")
_RESNET_OURS = re.compile(r"towers\.image\.((conv|bn)[123]\.|layer[1-4]\.\d+\.|attnpool\.)")

# Keys of OpenCLIP features tether does not implement, with what they are.
_UNSUPPORTED = (
    (re.compile(r"(^|\.)attn_pool(_contrastive)?\."), "attentional pooler (attentional_pool, CoCa)"),
    (re.compile(r"\.(ln_attn|mlp\.ln|attn\.(ln_q|ln_k|ln_inner))\.|\.attn\.(logit_scale|head_scale)$"),
     "custom attention blocks (qk_norm / scaled_cosine_attn / scale_heads / scale_attn_inner / scale_attn / scale_fc)"),
    (re.compile(r"^cls_emb$"), "text cls embedding (embed_cls, CoCa)"),
    (re.compile(r"^(text_decoder|multimodal)\."), "CoCa multimodal decoder"),
    (re.compile(r"^visual\.(trunk|head)\."), "timm image tower (timm_model_name)"),
)


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "_orig_mod."):
        state = strip_prefix(state, prefix)
    return dict(state)


def looks_like_open_clip(keys: Iterable[str]) -> bool:
    """Cheap test on key names only: an image tower under visual.* and a text tower."""
    keys = set(_strip_wrappers(dict.fromkeys(keys)))  # type: ignore[arg-type]
    text = {"token_embedding.weight", "text.token_embedding.weight"} & keys
    return bool(text) and any(k.startswith("visual.") for k in keys)


def canonical(state: Mapping[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], str]:
    """Root-layout keys and the layout found ("root" or "text")."""
    state = {k: v for k, v in _strip_wrappers(state).items() if k not in IGNORED_KEYS}
    if "token_embedding.weight" in state:
        layout = "root"
    elif "text.token_embedding.weight" in state:
        layout = "text"
        state = {(k[5:] if k.startswith("text.") else k): v for k, v in state.items()}
    elif any(k.startswith("text.transformer.") or k.startswith("text.proj.") for k in state):
        raise CheckpointError(f"{source}: OpenCLIP checkpoints with a Hugging Face text tower "
                              "(text_cfg.hf_model_name; keys text.transformer.*) are not supported")
    else:
        raise layout_error(source, state)
    if any(k.startswith("visual.trunk.") for k in state):
        raise CheckpointError(f"{source}: OpenCLIP checkpoints with a timm image tower "
                              "(vision_cfg.timm_model_name; keys visual.trunk.*) are not supported")
    if not any(k.startswith("visual.") for k in state):
        raise layout_error(source, state)
    unsupported = [k for k in state if any(p.search(k) for p, _ in _UNSUPPORTED)]
    if unsupported:
        raise CheckpointError(f"{source}: {describe_unsupported(unsupported)}")
    for key in ("logit_scale", "logit_bias"):  # nonscalar_logit_scale stores shape (1,)
        if key in state and state[key].numel() == 1:
            state[key] = state[key].reshape(())
    return state, layout


def layout_error(source: str, state: Mapping[str, Any]) -> CheckpointError:
    found = sorted(state)[:6]
    return CheckpointError(f"{source}: not an OpenAI/OpenCLIP CLIP state dict; expected {EXPECTED_KEYS}; "
                           f"found {len(state)} key(s) such as {found}")


def vision_kind(state: Mapping[str, torch.Tensor]) -> str:
    if "visual.class_embedding" in state:
        return "vit"
    if "visual.attnpool.positional_embedding" in state:
        return "resnet"
    raise CheckpointError("cannot tell the image tower: expected 'visual.class_embedding' (ViT) or "
                          "'visual.attnpool.positional_embedding' (modified ResNet)")


def _get(state: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key!r}; expected {EXPECTED_KEYS}")
    return state[key]


def _count(state: Mapping[str, torch.Tensor], prefix: str, source: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pat.match(k))}
    if not found:
        raise CheckpointError(f"{source}: no keys '{prefix}{{i}}.*'; expected {EXPECTED_KEYS}")
    if found != set(range(len(found))):
        raise CheckpointError(f"{source}: '{prefix}{{i}}' indices are not 0..n-1: {sorted(found)}")
    return len(found)


def square_side(rows: int, key: str, source: str) -> int:
    side = math.isqrt(max(rows, 0))
    if side * side != rows:
        raise CheckpointError(f"{source}: {key!r} has {rows} grid rows (+1 class token), not a square grid")
    return side


def infer_model_cfg(state: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """open_clip's ``model_cfg`` read from shapes, plus tether-only facts under ``_``."""
    kind = vision_kind(state)
    extra: dict[str, Any] = {"vision_kind": kind, "patch_bias": "visual.conv1.bias" in state}
    if kind == "vit":
        conv = _get(state, "visual.conv1.weight", source)
        width, patch = conv.shape[0], conv.shape[-1]
        pos = _get(state, "visual.positional_embedding", source)
        grid = square_side(pos.shape[0] - 1, "visual.positional_embedding", source)
        hidden = _get(state, "visual.transformer.resblocks.0.mlp.c_fc.weight", source).shape[0]
        vision = {"image_size": grid * patch, "patch_size": patch, "width": width,
                  "layers": _count(state, "visual.transformer.resblocks.", source),
                  "head_width": 64, "mlp_ratio": hidden / width, "no_ln_pre": "visual.ln_pre.weight" not in state,
                  "ls_init_value": 1.0 if "visual.transformer.resblocks.0.ls_1.gamma" in state else None}
        if "visual.proj" in state:
            extra["image_proj"], image_dim = "linear", state["visual.proj"].shape[1]
        elif "visual.proj.weight" in state:
            extra["image_proj"], image_dim = "linear_bias", state["visual.proj.weight"].shape[0]
        else:
            extra["image_proj"], image_dim = "none", width
    else:
        pos = _get(state, "visual.attnpool.positional_embedding", source)
        side = square_side(pos.shape[0] - 1, "visual.attnpool.positional_embedding", source)
        vision = {"image_size": side * 32, "width": _get(state, "visual.layer1.0.conv1.weight", source).shape[0],
                  "layers": [_count(state, f"visual.layer{b}.", source) for b in (1, 2, 3, 4)], "head_width": 64}
        extra["image_proj"], image_dim = "none", _get(state, "visual.attnpool.c_proj.weight", source).shape[0]
    vocab, twidth = _get(state, "token_embedding.weight", source).shape
    thidden = _get(state, "transformer.resblocks.0.mlp.c_fc.weight", source).shape[0]
    text = {"context_length": _get(state, "positional_embedding", source).shape[0], "vocab_size": vocab,
            "width": twidth, "heads": twidth // 64, "layers": _count(state, "transformer.resblocks.", source),
            "mlp_ratio": thidden / twidth, "ls_init_value": 1.0 if "transformer.resblocks.0.ls_1.gamma" in state else None}
    if "text_projection" in state:
        embed_dim = state["text_projection"].shape[1]
    elif "text_projection.weight" in state:
        embed_dim, text["proj_bias"] = state["text_projection.weight"].shape[0], True
    else:
        embed_dim, text["proj_type"] = image_dim, "none"
    extra["logit_bias"] = "logit_bias" in state
    return {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": text, "_": extra}


def to_tether_key(key: str, kind: str) -> tuple[str, bool] | None:
    """(tether key, transpose?) for a canonical OpenCLIP key, or None when tether has no such weight."""
    if key in TRANSPOSED:
        return TRANSPOSED[key], True
    if key in _COMMON:
        return _COMMON[key], False
    if kind == "vit" and key in _VIT:
        return _VIT[key], False
    if kind == "resnet" and _RESNET.match(key):
        return IMAGE + key[len("visual."):], False
    for src, dst in _BLOCK_STACKS[kind]:
        if key.startswith(src):
            idx, _, rest = key[len(src):].partition(".")
            if idx.isdigit() and rest in _BLOCK:
                return f"{dst}{idx}.{_BLOCK[rest]}", False
    return None


def to_open_clip_key(key: str, kind: str) -> tuple[str, bool] | None:
    """(canonical OpenCLIP key, transpose?) for a tether key, or None when OpenCLIP has no such weight."""
    if key in _TRANSPOSED_REV:
        return _TRANSPOSED_REV[key], True
    for table in (_COMMON, _VIT) if kind == "vit" else (_COMMON,):
        for src, dst in table.items():
            if dst == key:
                return src, False
    if kind == "resnet" and _RESNET_OURS.match(key):
        return "visual." + key[len(IMAGE):], False
    for src, dst in _BLOCK_STACKS[kind]:
        if key.startswith(dst):
            idx, _, rest = key[len(dst):].partition(".")
            if idx.isdigit() and rest in _BLOCK_REV:
                return f"{src}{idx}.{_BLOCK_REV[rest]}", False
    return None


def is_text_key(key: str) -> bool:
    """Canonical keys that CustomTextCLIP keeps under ``text.``."""
    return not key.startswith("visual.") and key not in ("logit_scale", "logit_bias")


def describe_unsupported(keys: Iterable[str]) -> str:
    """What OpenCLIP features unmapped keys belong to, for error messages."""
    keys = sorted(keys)
    features = []
    for pattern, what in _UNSUPPORTED:
        if any(pattern.search(k) for k in keys) and what not in features:
            features.append(what)
    what = f" ({'; '.join(features)} not supported by tether)" if features else ""
    return f"{len(keys)} key(s) tether cannot use{what}, e.g. {keys[:4]}"
