"""Hugging Face ``CLIPModel`` <-> tether: config translation and the weight-name map.

Also home of what CLIP and SigLIP share (their encoders are the same code in
transformers): the activation names, the per-layer key map and the rule format.

A *rule* is ``(tether_key, hf_keys, hf_shape)``: one tether tensor made from one
HF tensor (renamed) or from three (q, k and v concatenated into the fused
``in_proj``); ``hf_shape`` reshapes scalars (SigLIP stores ``logit_scale`` as (1,)).
"""
from __future__ import annotations

import math
from typing import Any

from .common import CheckpointError

Rule = tuple[str, tuple[str, ...], "tuple[int, ...] | None"]

# transformers' ACT2FN names -> tether's activation names (same function, maybe a
# different but equivalent formula: gelu_new and gelu_fast are the tanh approximation).
ACT_FROM_HF = {
    "quick_gelu": "quick_gelu",
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}
ACT_TO_HF = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}

# Defaults of transformers' config classes, for config.json files that leave keys out.
CLIP_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                          num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                          layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=49406, eos_token_id=49407)
CLIP_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu",
                            layer_norm_eps=1e-5)


# ---------------------------------------------------------------- shared helpers
def sub_config(raw: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``raw[name]`` over transformers' defaults (old files also carry ``<name>_dict`` overrides)."""
    cfg = dict(defaults)
    for key in (name, f"{name}_dict"):
        part = raw.get(key)
        if part is not None and not isinstance(part, dict):
            raise CheckpointError(f"config.json: {key} must be a mapping, got {type(part).__name__}")
        cfg.update({k: v for k, v in (part or {}).items() if v is not None or k.endswith("token_id")})
    return cfg


def act_from_hf(name: Any, where: str) -> str:
    if name not in ACT_FROM_HF:
        raise CheckpointError(f"config.json: {where}.hidden_act={name!r} is not supported; "
                              f"tether runs {', '.join(sorted(ACT_FROM_HF))}")
    return ACT_FROM_HF[name]


def act_to_hf(name: str, where: str) -> str:
    if name not in ACT_TO_HF:
        raise CheckpointError(f"{where}.act={name!r} has no transformers equivalent")
    return ACT_TO_HF[name]


def integer(cfg: dict[str, Any], key: str, where: str, minimum: int = 1) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CheckpointError(f"config.json: {where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def vision_grid(v: dict[str, Any], where: str) -> tuple[int, int]:
    """(tether image_size, patch_size). HF floors image_size / patch_size (so400m: 384 / 14 -> 27),
    the convolution dropping the remainder; tether wants a multiple, with the same grid."""
    size, patch = integer(v, "image_size", where), integer(v, "patch_size", where)
    if integer(v, "num_channels", where) != 3:
        raise CheckpointError(f"config.json: {where}.num_channels={v['num_channels']}; tether's ViT takes RGB (3)")
    if size < patch:
        raise CheckpointError(f"config.json: {where}.image_size={size} is smaller than patch_size={patch}")
    return size // patch * patch, patch


def tower_common(c: dict[str, Any], where: str) -> dict[str, Any]:
    width, heads = integer(c, "hidden_size", where), integer(c, "num_attention_heads", where)
    if width % heads:
        raise CheckpointError(f"config.json: {where}.hidden_size={width} is not divisible by "
                              f"num_attention_heads={heads}")
    eps = c.get("layer_norm_eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise CheckpointError(f"config.json: {where}.layer_norm_eps must be a number, got {eps!r}")
    return dict(width=width, layers=integer(c, "num_hidden_layers", where, 0), heads=heads,
                mlp_dim=integer(c, "intermediate_size", where), act=act_from_hf(c.get("hidden_act"), where),
                ln_eps=float(eps))


def image_text(cfg) -> tuple[Any, Any]:
    """The (image, text) tower configs of a two-tower model; CheckpointError for any other set of towers."""
    if sorted(cfg.towers) != ["image", "text"]:
        raise CheckpointError(f"transformers' CLIP/SigLIP have an image and a text tower; this model has "
                              f"{', '.join(sorted(cfg.towers))}")
    return cfg.towers["image"], cfg.towers["text"]


def check_towers(cfg) -> list[str]:
    """Tower features neither CLIPModel nor SiglipModel has."""
    bad = [f"towers.{side}.ls_init={getattr(t, 'ls_init', None)!r} (LayerScale; transformers' CLIP/SigLIP blocks "
           "have none)" for side, t in cfg.towers.items() if getattr(t, "ls_init", None) is not None]
    bad += [f"towers.{side}.attn_bias_kv=true (learned key/value tokens; transformers' CLIP/SigLIP have none)"
            for side, t in cfg.towers.items() if getattr(t, "attn_bias_kv", False)]
    return bad


def tower_to_hf(t, where: str) -> dict[str, Any]:
    """The keys every HF CLIP/SigLIP tower config has, from a tether tower config."""
    return dict(hidden_size=t.width, intermediate_size=t.mlp_dim or 4 * t.width, num_hidden_layers=t.layers,
                num_attention_heads=t.heads, hidden_act=act_to_hf(t.act, where), layer_norm_eps=t.ln_eps,
                attention_dropout=0.0)


def token_id(value: Any, vocab_size: int) -> int | None:
    """A special-token id for an HF config: None when unknown or outside the vocabulary."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab_size else None


def pair(t: str, h: str, params: tuple[str, ...] = ("weight", "bias")) -> list[Rule]:
    return [(f"{t}.{p}", (f"{h}.{p}",), None) for p in params]


def encoder_rules(t: str, h: str, layers: int) -> list[Rule]:
    """tether ``<t>.transformer.blocks.i`` <-> HF ``<h>.encoder.layers.i``."""
    rules: list[Rule] = []
    for i in range(layers):
        tb, hb = f"{t}.transformer.blocks.{i}", f"{h}.encoder.layers.{i}"
        rules += pair(f"{tb}.ln_1", f"{hb}.layer_norm1") + pair(f"{tb}.ln_2", f"{hb}.layer_norm2")
        rules += pair(f"{tb}.mlp.fc1", f"{hb}.mlp.fc1") + pair(f"{tb}.mlp.fc2", f"{hb}.mlp.fc2")
        rules += pair(f"{tb}.attn.out_proj", f"{hb}.self_attn.out_proj")
        rules += [(f"{tb}.attn.in_proj.{p}", tuple(f"{hb}.self_attn.{x}_proj.{p}" for x in "qkv"), None)
                  for p in ("weight", "bias")]
    return rules


def text_rules(layers: int) -> list[Rule]:
    return ([("towers.text.token_embedding.weight", ("text_model.embeddings.token_embedding.weight",), None),
             ("towers.text.positional_embedding", ("text_model.embeddings.position_embedding.weight",), None)]
            + encoder_rules("towers.text", "text_model", layers)
            + pair("towers.text.ln_final", "text_model.final_layer_norm"))


# ---------------------------------------------------------------- CLIP itself
def rules(model) -> list[Rule]:
    image, text = image_text(model.config)
    return ([("towers.image.patch_embed.weight", ("vision_model.embeddings.patch_embedding.weight",), None),
             ("towers.image.class_embedding", ("vision_model.embeddings.class_embedding",), None),
             ("towers.image.positional_embedding", ("vision_model.embeddings.position_embedding.weight",), None)]
            + pair("towers.image.ln_pre", "vision_model.pre_layrnorm")  # sic: transformers' spelling
            + encoder_rules("towers.image", "vision_model", image.layers)
            + pair("towers.image.ln_post", "vision_model.post_layernorm")
            + [("projections.image.weight", ("visual_projection.weight",), None)]
            + text_rules(text.layers)
            + [("projections.text.weight", ("text_projection.weight",), None),
               ("logit_scale", ("logit_scale",), ())])


def config_from_hf(raw: dict[str, Any]) -> dict[str, Any]:
    """A tether ModelConfig mapping (without preprocess) from a CLIPModel config.json."""
    t = sub_config(raw, "text_config", CLIP_TEXT_DEFAULTS)
    v = sub_config(raw, "vision_config", CLIP_VISION_DEFAULTS)
    image_size, patch = vision_grid(v, "vision_config")
    eos = t.get("eos_token_id")
    if isinstance(eos, list):  # generation-style lists: transformers compares the whole value, so does tether
        raise CheckpointError(f"config.json: text_config.eos_token_id={eos!r}; CLIP needs one integer id")
    if eos != 2 and (isinstance(eos, bool) or not isinstance(eos, int)):
        raise CheckpointError(f"config.json: text_config.eos_token_id={eos!r}; CLIP's text tower pools at "
                              "the end-of-text token and needs its id")
    # transformers' CLIPTextTransformer: eos_token_id == 2 marks the legacy configs that pool at the
    # highest token id (OpenAI's argmax); any other id pools at its first occurrence.
    legacy = eos == 2
    projection = integer({"projection_dim": 512, **raw}, "projection_dim", "config")
    scale = raw.get("logit_scale_init_value", 2.6592)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise CheckpointError(f"config.json: logit_scale_init_value must be a number, got {scale!r}")
    pad = t.get("pad_token_id")
    image = dict(kind="vit", image_size=image_size, patch_size=patch, **tower_common(v, "vision_config"),
                 ln_pre=True, class_token=True, patch_bias=False, pool="cls", ln_post=True,
                 projection="linear", projection_bias=False,
                 processor={"image_size": v["image_size"]})  # transformers' input size; hf.py completes it
    text = dict(kind="transformer", vocab_size=integer(t, "vocab_size", "text_config"),
                context_length=integer(t, "max_position_embeddings", "text_config"),
                **tower_common(t, "text_config"), causal=True, pool="argmax" if legacy else "eot",
                eot_token_id=None if legacy else eos, pad_token_id=pad if isinstance(pad, int) else 0,
                projection="linear", projection_bias=False,
                processor={"context_length": t["max_position_embeddings"]})
    return dict(embed_dim=projection, towers={"image": image, "text": text},
                logit_scale_init=math.exp(scale), logit_bias_init=None, family="clip")


def check_exportable(cfg) -> list[str]:
    """Why this tether config is not a CLIPModel (empty when it is)."""
    (v, t), bad = image_text(cfg), check_towers(cfg)
    want = dict(class_token=True, pool="cls", ln_pre=True, ln_post=True, patch_bias=False)
    bad += [f"towers.image.{k}={getattr(v, k)!r} (CLIP needs {w!r})" for k, w in want.items() if getattr(v, k) != w]
    if not t.causal:
        bad.append("towers.text.causal=false (CLIP's text tower is causal)")
    if t.pool not in ("argmax", "eot"):
        bad.append(f"towers.text.pool={t.pool!r} (CLIP pools at the end-of-text token: 'argmax' or 'eot')")
    if t.pool == "eot" and t.eot_token_id is None:
        bad.append("towers.text.pool='eot' without towers.text.eot_token_id")
    for side, tower in (("image", v), ("text", t)):
        if tower.projection != "linear" or tower.projection_bias:
            bad.append(f"towers.{side}.projection={tower.projection!r}{' with bias' if tower.projection_bias else ''}"
                       " (CLIP projects with a bias-free Linear)")
    if cfg.logit_bias_init is not None:
        bad.append("a logit_bias (CLIPModel has none)")
    return bad


def config_to_hf(model, image_size: int, text_ids: dict[str, int | None], remap=lambda i: i) -> dict[str, Any]:
    """``remap``: the id permutation hf.save applies to the vocabulary (see ``hf.eos_swap``)."""
    cfg = model.config
    v, t = image_text(cfg)
    eos = 2 if t.pool == "argmax" else remap(t.eot_token_id)
    text = dict(model_type="clip_text_model", vocab_size=t.vocab_size, max_position_embeddings=t.context_length,
                **tower_to_hf(t, "text"), projection_dim=cfg.embed_dim,
                pad_token_id=token_id(remap(t.pad_token_id), t.vocab_size),
                bos_token_id=token_id(remap(text_ids.get("bos")), t.vocab_size), eos_token_id=eos)
    vision = dict(model_type="clip_vision_model", image_size=image_size, patch_size=v.patch_size, num_channels=3,
                  **tower_to_hf(v, "vision"), projection_dim=cfg.embed_dim)
    return dict(architectures=["CLIPModel"], model_type="clip", projection_dim=cfg.embed_dim,
                logit_scale_init_value=math.log(cfg.logit_scale_init), initializer_factor=1.0,
                text_config=text, vision_config=vision)
