"""open_clip configs <-> tether ModelConfig, for :mod:`tether.checkpoints.open_clip`.

``tether_config`` turns an open_clip ``model_cfg`` (merged with what the weights' shapes
say, see ``open_clip_layout.infer_model_cfg``) into a tether ModelConfig, refusing the
OpenCLIP features tether does not implement; ``open_clip_model_cfg`` goes the other way
and refuses what OpenCLIP cannot express.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any

from ..config import ImageTowerConfig, ModelConfig, TextTowerConfig
from .common import CheckpointError

_VISION_OFF = ("timm_model_name", "hf_model_name", "attentional_pool", "qk_norm",
               "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc")
_TEXT_OFF = ("hf_model_name", "embed_cls", "use_pad_mask", "qk_norm", "scaled_cosine_attn",
             "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc")
_POOL_IN = {"argmax": "argmax", "first": "first", "last": "last", "eos": "eot"}
_POOL_OUT = {v: k for k, v in _POOL_IN.items()}


def merge(inferred: dict, file_cfg: dict | None) -> dict:
    """The config's values win; shapes fill in what it leaves out (open_clip defaults otherwise)."""
    cfg = copy.deepcopy(inferred)
    if file_cfg is None:
        return cfg
    cfg["text_cfg"]["heads"] = 8  # open_clip's CLIPTextCfg default, not inferable from shapes
    for key, value in file_cfg.items():
        if key in ("vision_cfg", "text_cfg"):
            cfg[key].update(value or {})
        else:
            cfg[key] = value
    return cfg


def _square(value: Any, what: str, source: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise CheckpointError(f"{source}: non-square {what} {list(value)} is not supported")
        value = value[0]
    return int(value)


def _act(quick_gelu: bool, tower: dict, source: str) -> str:
    if quick_gelu:
        return "quick_gelu"
    kwargs = dict(tower.get("act_kwargs") or {})
    approx = kwargs.pop("approximate", "none")
    if kwargs or approx not in ("none", "tanh"):
        raise CheckpointError(f"{source}: act_kwargs {tower.get('act_kwargs')} not supported (only approximate)")
    return "gelu_tanh" if approx == "tanh" else "gelu"


def _eps(tower: dict, source: str) -> float:
    kwargs = dict(tower.get("norm_kwargs") or {})
    eps = kwargs.pop("eps", 1e-5)
    if kwargs:
        raise CheckpointError(f"{source}: norm_kwargs {tower.get('norm_kwargs')} not supported (only eps)")
    return float(eps)


def _check_off(tower: dict, names: tuple[str, ...], where: str, source: str) -> None:
    for name in names:
        if tower.get(name):
            raise CheckpointError(f"{source}: {where}.{name}={tower[name]!r} is an OpenCLIP feature tether does not "
                                  "implement")


def tether_config(cfg: dict, quick_gelu: bool, image_size: int | None, vision_heads: int | None,
                  text_heads: int | None, source: str) -> ModelConfig:
    """Translate an open_clip model config (plus shape facts under '_') to a tether ModelConfig."""
    extra, v, t = cfg["_"], cfg["vision_cfg"], cfg["text_cfg"]
    for key in ("multimodal_cfg",):
        if cfg.get(key):
            raise CheckpointError(f"{source}: {key} (CoCa) is not supported")
    _check_off(v, _VISION_OFF, "vision_cfg", source)
    _check_off(t, _TEXT_OFF, "text_cfg", source)
    size = image_size or _square(v["image_size"], "vision_cfg.image_size", source)
    width = int(v["width"])
    vision = _vision_config(v, extra, size, quick_gelu, vision_heads, source)
    text = _text_config(t, quick_gelu, text_heads, source)
    for name, tower in (("vision", vision), ("text", text)):
        if tower.heads < 1 or (tower.width if name == "text" or tower.kind == "vit" else width * 32) % tower.heads:
            raise CheckpointError(f"{source}: cannot use {tower.heads} attention heads for the {name} tower; "
                                  f"pass {name}_heads= (shapes do not tell the head count)")
    text.projection = "none" if t.get("proj_type") == "none" else "linear"
    text.projection_bias = bool(t.get("proj_bias", False)) and text.projection == "linear"
    vision.processor = _preprocess(cfg.get("_preprocess"), image_size, size, source)
    text.processor = {"context_length": text.context_length}
    model_cfg = ModelConfig(
        embed_dim=int(cfg["embed_dim"]), towers={"image": vision, "text": text},
        logit_bias_init=-10.0 if extra["logit_bias"] else None,
        family="siglip" if extra["logit_bias"] else "clip")
    try:
        return model_cfg.validate()
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from err


def _vision_config(v: dict, extra: dict, size: int, quick_gelu: bool, vision_heads: int | None,
                   source: str) -> ImageTowerConfig:
    """open_clip vision_cfg -> ImageTowerConfig (its projection included)."""
    width = int(v["width"])
    if isinstance(v["layers"], (list, tuple)):
        if extra["vision_kind"] != "resnet":
            raise CheckpointError(f"{source}: config says ResNet (vision_cfg.layers={v['layers']}), weights are a ViT")
        heads = vision_heads or width * 32 // int(v.get("head_width", 64))
        return ImageTowerConfig(kind="resnet", image_size=size, resnet_layers=tuple(v["layers"]),
                                resnet_width=width, heads=heads, projection="none")
    if extra["vision_kind"] != "vit":
        raise CheckpointError(f"{source}: config says ViT (vision_cfg.layers={v['layers']}), weights are a ResNet")
    pool = v.get("pool_type", "tok")
    if pool not in ("tok", "avg"):
        raise CheckpointError(f"{source}: vision_cfg.pool_type={pool!r} is not supported ('tok' or 'avg')")
    patch = _square(v["patch_size"], "vision_cfg.patch_size", source)
    if size % patch:
        raise CheckpointError(f"{source}: image_size {size} is not a multiple of the patch size {patch}")
    heads = vision_heads or width // int(v.get("head_width", 64))
    vision = ImageTowerConfig(kind="vit", image_size=size, patch_size=patch, width=width, layers=int(v["layers"]),
                          heads=heads, mlp_dim=_mlp(width, v), act=_act(quick_gelu, v, source),
                          ln_eps=_eps(v, source), ln_pre=not v.get("no_ln_pre", False),
                          patch_bias=extra["patch_bias"], pool="cls" if pool == "tok" else "mean",
                          final_ln_after_pool=pool == "avg" and bool(v.get("final_ln_after_pool")),
                          ls_init=_ls(v), patch_dropout=float(v.get("patch_dropout", 0.0)))
    vision.projection, vision.projection_bias = ("none", False) if extra["image_proj"] == "none" else (
        "linear", extra["image_proj"] == "linear_bias")
    return vision


def _text_config(t: dict, quick_gelu: bool, text_heads: int | None, source: str) -> TextTowerConfig:
    """open_clip text_cfg -> TextTowerConfig (projection set by the caller)."""
    pool = t.get("pool_type", "argmax")
    if pool not in _POOL_IN:
        raise CheckpointError(f"{source}: text_cfg.pool_type={pool!r} is not supported (argmax, first, last, eos)")
    twidth = int(t["width"])
    return TextTowerConfig(vocab_size=int(t["vocab_size"]), context_length=int(t["context_length"]), width=twidth,
                      layers=int(t["layers"]), heads=text_heads or int(t["heads"]), mlp_dim=_mlp(twidth, t),
                      act=_act(quick_gelu, t, source), ln_eps=_eps(t, source), ls_init=_ls(t),
                      causal=not t.get("no_causal_mask"),
                      pool=_POOL_IN[pool], eot_token_id=int(t.get("eos_id", 2)) if pool == "eos" else None,
                      pad_token_id=int(t.get("pad_id", 0)))


def _preprocess(pre: dict | None, image_size: int | None, size: int, source: str) -> dict[str, Any]:
    """open_clip preprocess_cfg -> tether's preprocess dict (OpenAI's mean/std and bicubic by default)."""
    pre = dict(pre or {})
    resize = pre.get("resize_mode", "shortest")
    if resize not in ("shortest", "squash"):
        warnings.warn(f"{source}: preprocess resize_mode {resize!r} is not available in tether; using 'shortest'")
        resize = "shortest"
    mean = list(pre.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = list(pre.get("std", (0.26862954, 0.26130258, 0.27577711)))
    interp = pre.get("interpolation", "bicubic") if pre.get("interpolation") in ("bicubic", "bilinear") else "bicubic"
    pre_size = image_size or (pre["size"] if isinstance(pre.get("size"), int) else size)
    return {"mean": mean, "std": std, "resize_mode": resize, "interpolation": interp, "image_size": pre_size}


def _ls(tower: dict) -> float | None:
    value = tower.get("ls_init_value")
    return None if value is None else float(value)


def _mlp(width: int, tower: dict) -> int | None:
    hidden = int(width * float(tower.get("mlp_ratio", 4.0)))
    return None if hidden == 4 * width else hidden


def cannot_save(what: str) -> CheckpointError:
    return CheckpointError(f"cannot save as OpenCLIP: {what}")


def _ratio(width: int, hidden: int | None) -> float:
    hidden = hidden or 4 * width
    for ratio in (hidden / width, (hidden + 0.5) / width):
        if int(width * ratio) == hidden:
            return ratio
    raise cannot_save(f"MLP width {hidden} is not int(width * mlp_ratio) for any ratio")


def open_clip_model_cfg(cfg: ModelConfig, custom_text: bool = False) -> dict[str, Any]:
    """tether ModelConfig -> open_clip ``model_cfg``; CheckpointError for what OpenCLIP cannot express."""
    v, t = _image_text(cfg)
    if t.kind != "transformer":
        raise cannot_save(f"towers.text.kind={t.kind!r} (only tether's transformer text tower)")
    if v.kind == "vit" and v.attn_bias_kv:
        raise cannot_save("towers.image.attn_bias_kv=true (learned key/value tokens, ImageBind's; OpenCLIP has none)")
    acts = [t.act] + ([v.act] if v.kind == "vit" else [])
    if "relu" in acts or ("quick_gelu" in acts and len(set(acts)) > 1):
        raise cannot_save(f"activations {sorted(set(acts))} (OpenCLIP: quick_gelu for both towers, or gelu/gelu_tanh)")
    quick = acts[0] == "quick_gelu"
    vision = _open_clip_vision_cfg(cfg)
    text = _open_clip_text_cfg(cfg)
    out: dict[str, Any] = {"embed_dim": cfg.embed_dim, "quick_gelu": quick, "vision_cfg": vision, "text_cfg": text}
    if cfg.logit_bias_init is not None:
        out["init_logit_bias"] = cfg.logit_bias_init
    if custom_text:
        out["custom_text"] = True
    return out


def _tower_options(tower, width: int) -> dict[str, Any]:
    """The open_clip options a transformer tower shares: activation, LayerNorm eps, MLP ratio, LayerScale."""
    out: dict[str, Any] = {}
    if tower.act == "gelu_tanh":
        out["act_kwargs"] = {"approximate": "tanh"}
    if tower.ln_eps != 1e-5:
        out["norm_kwargs"] = {"eps": tower.ln_eps}
    out["mlp_ratio"] = _ratio(width, tower.mlp_dim)
    if tower.ls_init is not None:
        out["ls_init_value"] = tower.ls_init
    return out


def _image_text(cfg: ModelConfig):
    if sorted(cfg.towers) != ["image", "text"]:
        raise cannot_save(f"OpenCLIP has an image and a text tower; this model has {', '.join(sorted(cfg.towers))}")
    return cfg.towers["image"], cfg.towers["text"]


def _open_clip_vision_cfg(cfg: ModelConfig) -> dict[str, Any]:
    v = cfg.towers["image"]
    if v.kind == "vit":
        if not v.class_token or v.pool not in ("cls", "mean") or not v.ln_post or v.patch_bias:
            raise cannot_save("the ViT needs a class token, cls or mean pooling, ln_post and no patch bias "
                      f"(class_token={v.class_token}, pool={v.pool!r}, ln_post={v.ln_post}, patch_bias={v.patch_bias})")
        if v.width % v.heads or v.projection not in ("linear", "none") or v.projection_bias:
            raise cannot_save(f"image heads={v.heads} / towers.image.projection={v.projection!r} "
                              f"bias={v.projection_bias}")
        vision = {"image_size": v.image_size, "patch_size": v.patch_size, "width": v.width, "layers": v.layers,
                  "head_width": v.width // v.heads, **_tower_options(v, v.width)}
        if not v.ln_pre:
            vision["no_ln_pre"] = True
        if v.pool == "mean":
            vision["pool_type"] = "avg"
            if v.final_ln_after_pool:
                vision["final_ln_after_pool"] = True
        if v.patch_dropout:
            vision["patch_dropout"] = v.patch_dropout
        return vision
    if v.kind == "resnet":
        embed = v.resnet_width * 32
        if v.projection != "none" or (v.output_dim or cfg.embed_dim) != cfg.embed_dim or embed % v.heads \
                or embed // (embed // v.heads) != v.heads:
            raise cannot_save(f"ResNet needs towers.image.projection='none', output_dim == embed_dim and heads dividing {embed}")
        return {"image_size": v.image_size, "layers": list(v.resnet_layers), "width": v.resnet_width,
                "head_width": embed // v.heads}
    raise cannot_save(f"towers.image.kind={v.kind!r} (only 'vit' and 'resnet')")


def _open_clip_text_cfg(cfg: ModelConfig) -> dict[str, Any]:
    t = cfg.towers["text"]
    if t.pool not in _POOL_OUT or t.width % t.heads or t.projection not in ("linear", "none"):
        raise cannot_save(f"text pool={t.pool!r} / heads={t.heads} / towers.text.projection={t.projection!r}")
    text = {"context_length": t.context_length, "vocab_size": t.vocab_size, "width": t.width, "heads": t.heads,
            "layers": t.layers, **_tower_options(t, t.width)}
    if not t.causal:
        text["no_causal_mask"] = True
    if t.pool != "argmax":
        text["pool_type"] = _POOL_OUT[t.pool]
    if t.pool == "eot":
        text["eos_id"] = t.eot_token_id
    if t.pad_token_id:
        text["pad_id"] = t.pad_token_id
    if t.projection == "none":
        text["proj_type"] = "none"
    elif t.projection_bias:
        text["proj_bias"] = True
    return text
