"""Hugging Face ``SiglipModel`` <-> tether: config translation and the weight-name map.

SigLIP in tether: a ViT without class token or pre-LayerNorm, a bias on the patch
projection and an attention-pool (MAP) head; a bidirectional text tower pooled at
the last position whose ``head`` Linear (with bias) is tether's ``projections.text``; no
image projection; a learned ``logit_bias``.
"""
from __future__ import annotations

from typing import Any

from .common import CheckpointError
from .hf_clip import (Rule, check_towers, encoder_rules, image_text, integer, pair, sub_config, text_rules, token_id,
                      tower_common, tower_to_hf, vision_grid)

SIGLIP_TEXT_DEFAULTS = dict(vocab_size=32000, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=64, hidden_act="gelu_pytorch_tanh",
                            layer_norm_eps=1e-6, pad_token_id=1, bos_token_id=49406, eos_token_id=49407,
                            projection_size=None)
SIGLIP_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              num_channels=3, image_size=224, patch_size=16, hidden_act="gelu_pytorch_tanh",
                              layer_norm_eps=1e-6, vision_use_head=True)


def rules(model) -> list[Rule]:
    image, text = image_text(model.config)
    head, ours = "vision_model.head", "towers.image.head"
    return ([("towers.image.patch_embed.weight", ("vision_model.embeddings.patch_embedding.weight",), None),
             ("towers.image.patch_embed.bias", ("vision_model.embeddings.patch_embedding.bias",), None),
             ("towers.image.positional_embedding", ("vision_model.embeddings.position_embedding.weight",), None)]
            + encoder_rules("towers.image", "vision_model", image.layers)
            + pair("towers.image.ln_post", "vision_model.post_layernorm")
            + [(f"{ours}.probe", (f"{head}.probe",), None)]
            # the head is a torch.nn.MultiheadAttention: its q/k/v are already one in_proj tensor
            + [(f"{ours}.attn.in_proj.{p}", (f"{head}.attention.in_proj_{p}",), None) for p in ("weight", "bias")]
            + pair(f"{ours}.attn.out_proj", f"{head}.attention.out_proj")
            + pair(f"{ours}.norm", f"{head}.layernorm")
            + pair(f"{ours}.mlp.fc1", f"{head}.mlp.fc1") + pair(f"{ours}.mlp.fc2", f"{head}.mlp.fc2")
            + text_rules(text.layers)
            + pair("projections.text", "text_model.head")
            + [("logit_scale", ("logit_scale",), (1,)), ("logit_bias", ("logit_bias",), (1,))])


def config_from_hf(raw: dict[str, Any]) -> dict[str, Any]:
    """A tether ModelConfig mapping (without preprocess) from a SiglipModel config.json."""
    t = sub_config(raw, "text_config", SIGLIP_TEXT_DEFAULTS)
    v = sub_config(raw, "vision_config", SIGLIP_VISION_DEFAULTS)
    if v.get("vision_use_head") is False:
        raise CheckpointError("config.json: vision_config.vision_use_head=false: this SigLIP has no attention-pool "
                              "head, transformers gives it no pooled image embedding, and neither can tether")
    image_size, patch = vision_grid(v, "vision_config")
    vision = tower_common(v, "vision_config")
    text = tower_common(t, "text_config")
    embed = t.get("projection_size") or text["width"]
    if isinstance(embed, bool) or not isinstance(embed, int):
        raise CheckpointError(f"config.json: text_config.projection_size must be an integer, got {embed!r}")
    if embed != vision["width"]:
        raise CheckpointError(f"config.json: text_config.projection_size={embed} differs from "
                              f"vision_config.hidden_size={vision['width']}; SigLIP compares them directly")
    pad, eos = t.get("pad_token_id"), t.get("eos_token_id")
    length = integer(t, "max_position_embeddings", "text_config")
    image = dict(kind="vit", image_size=image_size, patch_size=patch, **vision, ln_pre=False,
                 class_token=False, patch_bias=True, pool="map", ln_post=True, projection="none",
                 processor={"image_size": v["image_size"]})  # transformers' input size; hf.py completes it
    text = dict(kind="transformer", vocab_size=integer(t, "vocab_size", "text_config"), context_length=length,
                **text, causal=False, pool="last", eot_token_id=eos if isinstance(eos, int) else None,
                pad_token_id=pad if isinstance(pad, int) else 0, projection="linear", projection_bias=True,
                processor={"context_length": length, "padding": "max_length"})
    return dict(embed_dim=embed, towers={"image": image, "text": text},
                logit_scale_init=10.0, logit_bias_init=-10.0, family="siglip")


def check_exportable(cfg) -> list[str]:
    """Why this tether config is not a SiglipModel (empty when it is)."""
    (v, t), bad = image_text(cfg), check_towers(cfg)
    want = dict(class_token=False, pool="map", ln_pre=False, ln_post=True, patch_bias=True)
    bad += [f"towers.image.{k}={getattr(v, k)!r} (SigLIP needs {w!r})" for k, w in want.items() if getattr(v, k) != w]
    if t.causal:
        bad.append("towers.text.causal=true (SigLIP's text tower is bidirectional)")
    if t.pool != "last":
        bad.append(f"towers.text.pool={t.pool!r} (SigLIP pools the last position)")
    if v.projection != "none":
        bad.append(f"towers.image.projection={v.projection!r} (SigLIP has no image projection: use 'none')")
    if t.projection != "linear" or not t.projection_bias:
        bad.append(f"towers.text.projection={t.projection!r}{'' if t.projection_bias else ' without bias'} "
                   "(SigLIP's text head is a Linear with bias)")
    if cfg.logit_bias_init is None:
        bad.append("no logit_bias (SiglipModel has one)")
    return bad


def config_to_hf(model, image_size: int, text_ids: dict[str, int | None], remap=lambda i: i) -> dict[str, Any]:
    cfg = model.config
    v, t = image_text(cfg)
    eos = t.eot_token_id if t.eot_token_id is not None else text_ids.get("eos")
    text = dict(model_type="siglip_text_model", vocab_size=t.vocab_size, max_position_embeddings=t.context_length,
                **tower_to_hf(t, "text"), projection_size=cfg.embed_dim,
                pad_token_id=token_id(t.pad_token_id, t.vocab_size),
                bos_token_id=token_id(text_ids.get("bos"), t.vocab_size), eos_token_id=token_id(eos, t.vocab_size))
    vision = dict(model_type="siglip_vision_model", image_size=image_size, patch_size=v.patch_size, num_channels=3,
                  **tower_to_hf(v, "vision"), vision_use_head=True)
    return dict(architectures=["SiglipModel"], model_type="siglip", initializer_factor=1.0,
                text_config=text, vision_config=vision)

