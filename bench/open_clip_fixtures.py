"""Generate reference fixtures from OpenCLIP itself (tiny random-initialised models).

OpenCLIP (``open_clip_torch``) needs torchvision, which cannot live beside the main
environment's CPU torch, so this script runs in its own virtual environment:

    python -m venv bench/.venv-openclip
    bench/.venv-openclip/bin/pip install torch==2.14.1 torchvision==0.29.1 open_clip_torch safetensors
    bench/.venv-openclip/bin/python bench/open_clip_fixtures.py            # writes tests/fixtures/open_clip/
    bench/.venv-openclip/bin/python bench/open_clip_fixtures.py --check    # only re-verify what is on disk

(run from the repository root; ``--out DIR`` writes elsewhere). It runs on CPU in a few
seconds, is deterministic (fixed seeds per case) and never touches the network.

What it writes
==============
For every case a folder ``tests/fixtures/open_clip/<case>/`` holding:

* the weights, in the exact layout a user would have on disk (see the table below);
* ``open_clip_config.json`` for the "hub directory" cases, in OpenCLIP's hub format
  ``{"model_cfg": {...}, "preprocess_cfg": {"mean", "std", "interpolation", "resize_mode"}}``
  (what ``open_clip.push_to_hf_hub`` writes and ``create_model('local-dir:...')`` reads);
* ``inputs.safetensors``: ``pixel_values`` float32 [3, 3, H, W] (already normalised, i.e. what
  the model takes; preprocessing is NOT covered) and ``input_ids`` int64 [3, context_length];
* ``expected.safetensors`` (all float32, computed in eval mode under ``torch.no_grad``):
  ``image_embeds`` = ``model.encode_image(pixel_values)`` (unnormalised),
  ``text_embeds`` = ``model.encode_text(input_ids)`` (unnormalised),
  ``logit_scale`` = the raw parameter (NOT exp'd; shape [] or [1] as stored),
  ``logit_bias`` (only where the model has one), and
  ``logits_per_image`` = ``model.get_logits(pixel_values, input_ids)[0]``
  (= exp(logit_scale) * norm(img) @ norm(txt).T [+ logit_bias]);
* ``meta.json``: config, options, versions, weights file / layout, input token ids, description;
* ``keys.txt``: every key of the saved state dict exactly as stored, one per line:
  ``<key> <shape as [a, b]> <dtype>``.

Weights are NOT left at OpenCLIP's init: every LayerNorm/BatchNorm weight, every bias,
BatchNorm running stats, LayerScale gammas, logit_scale and logit_bias are randomly perturbed
(OpenCLIP initialises many of these to 0/1 and ModifiedResNet zero-inits every ``bn3.weight``,
which would hide a converter that drops them). ``logit_scale`` is therefore NOT log(1/0.07).

Each case is verified inside the script: the saved file is re-loaded by OpenCLIP's own loaders
into a fresh model and must reproduce the expected outputs to max abs diff < 1e-6.

Cases
=====
============== =============== ================================= ==================================
case           model class     weights on disk                    loader used for the check
============== =============== ================================= ==================================
vit_root       CLIP            model.safetensors + hub config     create_model('local-dir:<case>')
vit_gelu_      CLIP            model.pt: torch.save({"state_dict": create_model(cfg, pretrained=model.pt)
state_dict                     {"module."+k: v}, "epoch": 1})     (load_checkpoint strips module.)
vit_text_      CustomTextCLIP  model.safetensors + hub config     create_model('local-dir:<case>')
layout
resnet         CLIP (Modified  model.safetensors + hub config     create_model('local-dir:<case>')
               ResNet)
openai_style   CLIP            model.pt: plain torch state dict,  open_clip.load_openai_model(path)
                               OpenAI dtypes (fp16 + fp32), no    and build_model_from_openai_
                               config at all                      state_dict (infers arch)
vit_options    CLIP            model.safetensors + hub config     create_model('local-dir:<case>')
vit_attn_pool  CustomTextCLIP  model.safetensors + hub config     create_model('local-dir:<case>')
vit_custom_    CLIP            model.safetensors + hub config     create_model('local-dir:<case>')
block
============== =============== ================================= ==================================

Key layouts (open_clip 3.3.0; L = block index, see each case's keys.txt for shapes)
===================================================================================
Root layout (``open_clip.model.CLIP``; identical to OpenAI's original CLIP layout)::

    visual.*                                  (image tower, see below)
    token_embedding.weight                    [vocab, width]
    positional_embedding                      [context_length, width]
    transformer.resblocks.L.ln_1.{weight,bias}
    transformer.resblocks.L.attn.in_proj_weight   [3*width, width]   (q, k, v stacked in that order)
    transformer.resblocks.L.attn.in_proj_bias     [3*width]
    transformer.resblocks.L.attn.out_proj.{weight [width, width], bias}
    transformer.resblocks.L.ln_2.{weight,bias}
    transformer.resblocks.L.mlp.c_fc.{weight [mlp, width], bias}
    transformer.resblocks.L.mlp.c_proj.{weight [width, mlp], bias}
    ln_final.{weight,bias}
    text_projection                           [width, embed_dim]  (nn.Parameter, used as x @ P)
    logit_scale                               []  ([1] with nonscalar_logit_scale=True)
    logit_bias                                only with init_logit_bias (SigLIP-style)

    (no attn_mask key: the causal mask is a non-persistent buffer; no position_ids either)

Text-tower layout (``CustomTextCLIP``, custom_text=True): exactly the root text keys with a
``text.`` prefix -- ``text.token_embedding.weight``, ``text.positional_embedding``,
``text.transformer.resblocks.L.*``, ``text.ln_final.*``, ``text.text_projection`` -- while
``visual.*``, ``logit_scale`` and ``logit_bias`` stay at the root. OpenCLIP converts root->text.
with ``convert_to_custom_text_state_dict`` (prefixes exactly: text_projection,
positional_embedding, token_embedding, transformer, ln_final).
With ``text_cfg.proj_bias=True`` the projection is an ``nn.Linear``:
``text_projection.weight`` [embed_dim, width] (TRANSPOSED w.r.t. the Parameter form) and
``text_projection.bias`` [embed_dim]; ``proj_type='none'`` removes it.

ViT image tower (``visual.`` prefix)::

    visual.class_embedding                    [width]
    visual.positional_embedding               [grid*grid + 1, width]  (row 0 = class token)
    visual.conv1.weight                       [width, 3, patch, patch]  (no bias)
    visual.ln_pre.{weight,bias}               absent with no_ln_pre=True
    visual.transformer.resblocks.L.*          same block keys as the text transformer
    visual.ln_post.{weight,bias}              [width] ([embed_dim] with attentional_pool)
    visual.proj                               [width, embed_dim]  ([embed_dim, embed_dim] w/ attn pool)
    + LayerScale (ls_init_value set): resblocks.L.ls_1.gamma, resblocks.L.ls_2.gamma  [width]
    + attentional_pool=True: visual.attn_pool.query [n_queries, embed_dim],
      visual.attn_pool.attn.{q_proj_weight [embed_dim, embed_dim], k_proj_weight [embed_dim, width],
      v_proj_weight [embed_dim, width]} when width != embed_dim, else a single
      visual.attn_pool.attn.in_proj_weight [3*embed_dim, embed_dim]; visual.attn_pool.attn.in_proj_bias
      [3*embed_dim], visual.attn_pool.attn.out_proj.{weight,bias}, visual.attn_pool.ln_q.* [embed_dim],
      visual.attn_pool.ln_k.* [width]

Custom blocks (``block_type='custom'``, auto-selected by qk_norm / scaled_cosine_attn /
scale_heads / scale_attn_inner / scale_attn / scale_fc) keep ln_1/attn.in_proj_*/attn.out_proj/
ln_2/mlp.c_fc/mlp.c_proj names and add: ``attn.ln_q.*``, ``attn.ln_k.*`` [head_dim] (qk_norm),
``attn.head_scale`` [heads, 1, 1] (scale_heads), ``attn.ln_inner.*`` [width] (scale_attn_inner),
``ln_attn.*`` [width] (scale_attn), ``mlp.ln.*`` [mlp_width] (scale_fc, between gelu and c_proj),
``attn.logit_scale`` [heads, 1, 1] (scaled_cosine_attn; broken for 4-D q/k in this version).

ModifiedResNet image tower (``visual.`` prefix, vision_cfg.layers is a list)::

    visual.conv1.weight [w/2, 3, 3, 3]  visual.bn1.*   (stem conv 1, stride 2)
    visual.conv2.weight [w/2, w/2, 3, 3] visual.bn2.*
    visual.conv3.weight [w, w/2, 3, 3]  visual.bn3.*   then AvgPool2d(2)
    visual.layerN.B.conv1.weight [p, in, 1, 1]   visual.layerN.B.bn1.*
    visual.layerN.B.conv2.weight [p, p, 3, 3]    visual.layerN.B.bn2.*   (AvgPool(stride) after it)
    visual.layerN.B.conv3.weight [4p, p, 1, 1]   visual.layerN.B.bn3.*
    visual.layerN.0.downsample.0.weight [4p, in, 1, 1]  visual.layerN.0.downsample.1.*  (BatchNorm;
        the AvgPool2d is the unnamed-in-state-dict module "-1")
    every BatchNorm: .weight .bias .running_mean .running_var .num_batches_tracked (int64 [])
    visual.attnpool.positional_embedding [(image/32)**2 + 1, 32*w]
    visual.attnpool.{q_proj,k_proj,v_proj}.{weight [32w, 32w], bias}
    visual.attnpool.c_proj.{weight [embed_dim, 32w], bias}
    (N = 1..4, p = w, 2w, 4w, 8w; heads = 32*w // head_width)

DDP / training-checkpoint layout (vit_gelu_state_dict): the file is a dict
``{"state_dict": {...}, "epoch": 1}`` and every key is the root key with ``module.`` prepended
(``module.visual.conv1.weight``, ``module.logit_scale``...). OpenCLIP's ``load_state_dict``
unwraps "state_dict" and strips 7 characters if the FIRST key starts with "module".

OpenAI layout (openai_style): same key names as the root layout, but a plain state dict whose
Conv/Linear weights+biases, MHA in_proj_weight/in_proj_bias, visual.proj and text_projection are
float16 (as OpenAI's ``convert_weights`` leaves them; token_embedding, positional/class
embeddings, LayerNorms and logit_scale stay float32). Fixture values are exactly fp16-representable
so the fp32 expected outputs are exact. No config: OpenCLIP infers it from shapes
(``build_model_from_openai_state_dict``): ViT iff "visual.proj" exists; vision width =
conv1.weight.shape[0], patch = conv1 kernel, image = patch*sqrt(pos_embed rows - 1),
vision layers = count of visual.* "attn.in_proj_weight" keys, vision heads = width // 64;
embed_dim = text_projection.shape[1], context = positional_embedding rows, vocab = token
embedding rows, text width = ln_final.weight size, text heads = width // 64, text layers =
distinct transformer.resblocks indices; quick_gelu=True. So OpenAI-style checkpoints must have
head_dim 64 -- this case uses width 128 (2 heads) in both towers.

Key ORDER in the files is not meaningful (the root CLIP lists positional_embedding,
text_projection, logit_scale, logit_bias first, then visual.*, transformer.*, token_embedding,
ln_final) -- but note OpenCLIP's "module." stripping only looks at the first key.

Forward semantics (open_clip 3.3.0) a converter must reproduce
==============================================================
* Blocks are pre-LN: x = x + ls_1(attn(ln_1(x))); x = x + ls_2(c_proj(act(c_fc(ln_2(x))))).
  act = QuickGELU x*sigmoid(1.702x) when model_cfg.quick_gelu (both transformer towers), else
  exact erf nn.GELU, or GELU(approximate='tanh') via *_cfg.act_kwargs. LayerNorm eps 1e-5 unless
  *_cfg.norm_kwargs. Vision heads = width // head_width (head_width default 64); text heads given.
* ViT: conv1 (no bias) -> flatten -> [class_embedding; patches] + positional_embedding -> ln_pre
  (Identity if no_ln_pre) -> blocks -> pooling -> @ proj. Default: ln_post on ALL tokens, then take
  token 0 ('tok'). pool_type='avg': mean of tokens 1: (class token excluded). final_ln_after_pool:
  pool first, then ln_post on the pooled vector. attentional_pool=True: attn_pool (ln_k on tokens,
  ln_q on the learned queries, nn.MultiheadAttention queries->tokens) -> ln_post over the query
  outputs -> pool_type over the QUERIES ('tok' = query 0, 'avg' = mean of queries 1:) -> @ proj;
  final_ln_after_pool is ignored with the attentional pooler.
* Text: token_embedding + positional_embedding -> blocks with an additive causal mask (-inf above
  the diagonal); no_causal_mask=True means NO mask at all (pad tokens are attended; the pad mask
  option use_pad_mask is not reachable from a config) -> ln_final on all tokens -> pool:
  'argmax' (default) = position of the largest id (OpenAI eot), 'eos' = first position equal to
  text_cfg.eos_id, 'last' = x[:, -1], 'first' = x[:, 0] -> @ text_projection (x @ P) or Linear.
  text_cfg.final_ln_after_pool exists in CLIPTextCfg but is NOT passed to TextTransformer (ignored).
* ModifiedResNet: 3x [conv -> BN -> ReLU] stem, AvgPool2d(2); Bottleneck: relu(bn1(conv1)) ->
  relu(bn2(conv2)) -> AvgPool(stride) -> bn3(conv3); shortcut AvgPool(stride)->conv->BN when
  stride>1 or channels change; relu(out + shortcut). Stage strides 1,2,2,2. AttentionPool2d:
  flatten HW, prepend the spatial MEAN as a token, + positional_embedding, multi-head attention
  with separate q/k/v projections (heads = 32*width // head_width), output token 0 through c_proj.
  BatchNorm eps 1e-5, eval mode (running stats).
* logits = exp(logit_scale) * normalize(img) @ normalize(txt).T (+ logit_bias); no clamp.
  Default init logit_scale = log(1/0.07) = 2.6593 (scalar; shape [1] with nonscalar_logit_scale).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import open_clip
from open_clip import factory as oc_factory
from open_clip.model import (
    CLIP,
    CustomTextCLIP,
    build_model_from_openai_state_dict,
    convert_weights_to_lp,
)
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "open_clip"
TOL = 1e-6
N_ROWS = 3

HUB_PREPROCESS = {
    "mean": list(OPENAI_DATASET_MEAN),
    "std": list(OPENAI_DATASET_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}

# ---------------------------------------------------------------------------------------------
# Case definitions. "cfg" is an OpenCLIP model config (what model_configs/*.json and the
# "model_cfg" of open_clip_config.json hold). "options" lists every non-default option used.
# ---------------------------------------------------------------------------------------------
CASES: dict[str, dict] = {
    "vit_root": dict(
        seed=1001,
        save="hub",
        description=(
            "Standard OpenCLIP CLIP ViT with QuickGELU (as OpenAI-trained models), root text "
            "layout, saved as an OpenCLIP hub directory: model.safetensors (plain state dict, "
            "same content as open_clip_pytorch_model.bin) + open_clip_config.json."
        ),
        options=["quick_gelu=True", "vision head_width=16 (3 heads)"],
        cfg={
            "embed_dim": 32,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 16, "patch_size": 8},
            "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 2},
        },
    ),
    "vit_gelu_state_dict": dict(
        seed=1002,
        save="train_ckpt",
        description=(
            "Standard CLIP ViT with plain (erf) nn.GELU (quick_gelu=False, OpenCLIP's default), "
            "saved as an OpenCLIP training checkpoint: torch.save({'state_dict': sd, 'epoch': 1}) "
            "where every key carries the DDP 'module.' prefix. No config file next to it "
            "(config only in meta.json). Context length 77 like real CLIP text towers."
        ),
        options=["quick_gelu=False", "DDP 'module.' prefix", "{'state_dict', 'epoch'} wrapper",
                 "vision grid 3x3 (image 48 / patch 16)", "text heads=4 (head_dim 8)"],
        cfg={
            "embed_dim": 32,
            "vision_cfg": {"image_size": 48, "layers": 1, "width": 48, "head_width": 16, "patch_size": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 1000, "width": 32, "heads": 4, "layers": 2},
        },
    ),
    "vit_text_layout": dict(
        seed=1003,
        save="hub",
        description=(
            "CustomTextCLIP (custom_text=True): text tower keys under 'text.' "
            "(text.token_embedding..., text.transformer..., text.ln_final, text.text_projection); "
            "otherwise default options. OpenCLIP hub directory."
        ),
        options=["custom_text=True", "quick_gelu=False", "text width 48 != vision width 32"],
        cfg={
            "embed_dim": 32,
            "custom_text": True,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
            "text_cfg": {"context_length": 24, "vocab_size": 1000, "width": 48, "heads": 4, "layers": 1},
        },
    ),
    "resnet": dict(
        seed=1004,
        save="hub",
        description=(
            "CLIP with OpenAI's ModifiedResNet image tower (3-conv stem, anti-aliased strided "
            "Bottlenecks, AttentionPool2d) + root-layout text tower. vision_cfg.layers=[1,2,1,1], "
            "width 4 (stem 2->2->4 channels, stage planes 4/8/16/32, feature dim 32*4=128, attnpool "
            "heads = 128 // head_width(64) = 2), image 64 (attnpool grid 2x2). OpenCLIP hub "
            "directory. The attnpool is (32*width)^2-sized: width 8 would already cost 1.6 MB."
        ),
        options=["vision_cfg.layers list -> ModifiedResNet", "quick_gelu=False (only affects text tower)"],
        cfg={
            "embed_dim": 32,
            "vision_cfg": {"image_size": 64, "layers": [1, 2, 1, 1], "width": 4, "patch_size": None},
            "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
        },
    ),
    "openai_style": dict(
        seed=1005,
        save="openai",
        description=(
            "ViT CLIP in OpenAI's original layout (== OpenCLIP root layout) saved as a plain "
            "torch.save(state_dict) model.pt with OpenAI's mixed dtypes (fp16 conv/linear/attn/"
            "projections, fp32 embeddings/LayerNorms/logit_scale) and NO config: the architecture "
            "must be inferred from shapes (heads = width // 64, quick_gelu=True). Verified to "
            "round-trip through open_clip.model.build_model_from_openai_state_dict and "
            "open_clip.load_openai_model. One layer per tower (width 128 is costly)."
        ),
        options=["quick_gelu=True", "head_width 64 in both towers (OpenAI convention)",
                 "fp16/fp32 mixed dtypes", "no config"],
        cfg={
            "embed_dim": 32,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 128, "head_width": 64, "patch_size": 8},
            "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 128, "heads": 2, "layers": 1},
        },
    ),
    "vit_options": dict(
        seed=1006,
        save="hub",
        description=(
            "Root-layout CLIP with the non-default tower options that shipped OpenCLIP configs use "
            "(CLIPA: no_ln_pre + pool_type 'avg' + final_ln_after_pool, text pool 'last' + "
            "no_causal_mask; SigLIP text: proj_bias (nn.Linear text_projection), LayerNorm eps 1e-6, "
            "init_logit_bias; ViT-M-16-alt: ls_init_value LayerScale) plus mlp_ratio 2. "
            "OpenCLIP hub directory."
        ),
        options=[
            "vision.no_ln_pre=True (no visual.ln_pre keys)",
            "vision.pool_type='avg' (mean of patch tokens, class token excluded)",
            "vision.final_ln_after_pool=True (ln_post applied to the pooled vector)",
            "vision.ls_init_value=0.5 (LayerScale ls_1/ls_2.gamma; perturbed)",
            "vision.mlp_ratio=2.0",
            "text.no_causal_mask=True (bidirectional; NO padding mask either)",
            "text.pool_type='last' (x[:, -1] after ln_final)",
            "text.proj_bias=True (text_projection is nn.Linear: weight [embed, width] + bias)",
            "text.norm_kwargs={'eps': 1e-6}",
            "init_logit_bias=-10 (logit_bias key)",
        ],
        cfg={
            "embed_dim": 32,
            "init_logit_bias": -10,
            "vision_cfg": {
                "image_size": 32, "layers": 2, "width": 48, "head_width": 24, "patch_size": 8,
                "mlp_ratio": 2.0, "no_ln_pre": True, "pool_type": "avg", "final_ln_after_pool": True,
                "ls_init_value": 0.5,
            },
            "text_cfg": {
                "context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 2,
                "no_causal_mask": True, "pool_type": "last", "proj_bias": True,
                "norm_kwargs": {"eps": 1e-6},
            },
        },
    ),
    "vit_attn_pool": dict(
        seed=1007,
        save="hub",
        description=(
            "CustomTextCLIP whose ViT uses the attentional pooler (attentional_pool=True, the "
            "CoCa-style head: attn_pool -> ln_post(embed_dim) -> take query 0 ('tok') -> proj "
            "[embed, embed]) with vision width 48 != embed_dim 32 (separate q/k/v_proj_weight), and "
            "a text tower with pool_type 'eos' (eos_id=2, NOT the max id: bos=998 is the argmax), "
            "nonscalar_logit_scale (logit_scale/logit_bias shape [1]) and init_logit_bias."
        ),
        options=[
            "custom_text=True",
            "vision.attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=2",
            "vision.pool_type='tok' applied to the pooler's query outputs (query 0)",
            "text.pool_type='eos', text.eos_id=2",
            "nonscalar_logit_scale=True",
            "init_logit_bias=-10",
        ],
        cfg={
            "embed_dim": 32,
            "custom_text": True,
            "init_logit_bias": -10,
            "nonscalar_logit_scale": True,
            "vision_cfg": {
                "image_size": 32, "layers": 1, "width": 48, "head_width": 24, "patch_size": 8,
                "attentional_pool": True, "attn_pooler_queries": 4, "attn_pooler_heads": 2,
            },
            "text_cfg": {
                "context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1,
                "pool_type": "eos", "eos_id": 2,
            },
        },
    ),
    "vit_custom_block": dict(
        seed=1008,
        save="hub",
        description=(
            "Root-layout CLIP using OpenCLIP's CustomResidualAttentionBlock (open_clip.transformer."
            "Attention instead of nn.MultiheadAttention; same in_proj/out_proj key names) with the "
            "NormFormer-style extras, fixed 2-D sin-cos vision position embedding and tanh-GELU in "
            "the text tower. No shipped OpenCLIP config uses these; low priority for converters. "
            "scaled_cosine_attn is not covered: it crashes in open_clip 3.3.0 (torch.bmm on 4-D q/k)."
        ),
        options=[
            "vision.qk_norm=True (attn.ln_q / attn.ln_k over head_dim)",
            "vision.scale_heads=True (attn.head_scale [heads,1,1])",
            "vision.scale_attn_inner=True (attn.ln_inner before out_proj)",
            "vision.pos_embed_type='sin_cos_2d' (fixed, but stored in the state dict)",
            "text.scale_attn=True (ln_attn after attention, before residual)",
            "text.scale_fc=True (mlp.ln between activation and c_proj)",
            "text.act_kwargs={'approximate': 'tanh'} (GELU tanh approximation)",
        ],
        cfg={
            "embed_dim": 32,
            "vision_cfg": {
                "image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8,
                "qk_norm": True, "scale_heads": True, "scale_attn_inner": True,
                "pos_embed_type": "sin_cos_2d",
            },
            "text_cfg": {
                "context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1,
                "scale_attn": True, "scale_fc": True, "act_kwargs": {"approximate": "tanh"},
            },
        },
    ),
}


# ---------------------------------------------------------------------------------------------
def _model_name(case: str) -> str:
    return f"tether-fixture-{case}"


def register_configs() -> None:
    for case, spec in CASES.items():
        oc_factory._MODEL_CONFIGS[_model_name(case)] = copy.deepcopy(spec["cfg"])


def build_model(case: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = open_clip.create_model(_model_name(case), pretrained=None, device="cpu", precision="fp32")
    return model.eval()


@torch.no_grad()
def perturb(model: nn.Module, gen: torch.Generator) -> None:
    """Move every 0/1-initialised value away from its default so nothing can be silently dropped."""

    def rn(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=gen, dtype=torch.float32)

    done: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, nn.LayerNorm):
            if mod.weight is not None:
                mod.weight.copy_(1.0 + 0.1 * rn(mod.weight))
                mod.bias.copy_(0.1 * rn(mod.bias))
                done.update({id(mod.weight), id(mod.bias)})
        elif isinstance(mod, nn.BatchNorm2d):
            mod.weight.copy_(1.0 + 0.2 * rn(mod.weight))
            mod.bias.copy_(0.1 * rn(mod.bias))
            mod.running_mean.copy_(0.1 * rn(mod.running_mean))
            mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=gen))
            mod.num_batches_tracked.fill_(7)
            done.update({id(mod.weight), id(mod.bias)})
    for name, p in model.named_parameters():
        if id(p) in done:
            continue
        if name == "logit_scale":
            p.copy_(math.log(1 / 0.07) + 0.5 * rn(p))
        elif name == "logit_bias":
            p.copy_(-10.0 + rn(p))
        elif name.endswith(".gamma"):  # LayerScale
            p.mul_(1.0 + 0.2 * rn(p))
        elif name.endswith("head_scale"):
            p.copy_(1.0 + 0.2 * rn(p))
        elif name.endswith("bias"):
            p.add_(0.05 * rn(p))


def make_inputs(case: str, spec: dict, gen: torch.Generator) -> tuple[dict, dict]:
    cfg = spec["cfg"]
    img = cfg["vision_cfg"]["image_size"]
    tcfg = cfg["text_cfg"]
    ctx, vocab = tcfg["context_length"], tcfg["vocab_size"]
    bos = vocab - 2
    if tcfg.get("pool_type", "argmax") == "eos":
        eos = tcfg.get("eos_id", 2)
        lo = eos + 1  # content ids above eos: argmax pooling would pick bos / content, not eos
    else:
        eos = vocab - 1  # argmax pooling: eos must be the largest id in every row
        lo = 1
    eos_pos = [3, ctx // 2, ctx - 1]
    ids = torch.zeros(N_ROWS, ctx, dtype=torch.int64)
    for r, p in enumerate(eos_pos):
        ids[r, 0] = bos
        ids[r, 1:p] = torch.randint(lo, vocab - 2, (p - 1,), generator=gen)
        ids[r, p] = eos
    pixels = torch.randn(N_ROWS, 3, img, img, generator=gen, dtype=torch.float32)
    info = {"bos_id": bos, "eos_id": eos, "pad_id": 0, "eos_positions": eos_pos,
            "content_id_range": [lo, vocab - 3], "input_ids": ids.tolist()}
    return {"pixel_values": pixels, "input_ids": ids}, info


@torch.no_grad()
def run_model(model: nn.Module, inputs: dict) -> dict:
    model.eval()
    out = {
        "image_embeds": model.encode_image(inputs["pixel_values"], normalize=False),
        "text_embeds": model.encode_text(inputs["input_ids"], normalize=False),
        "logit_scale": model.logit_scale.detach().clone(),
        "logits_per_image": model.get_logits(inputs["pixel_values"], inputs["input_ids"])[0],
    }
    if getattr(model, "logit_bias", None) is not None:
        out["logit_bias"] = model.logit_bias.detach().clone()
    return {k: v.float().contiguous() for k, v in out.items()}


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b), (sorted(a), sorted(b))
    worst = 0.0
    for k in a:
        assert a[k].shape == b[k].shape, (k, a[k].shape, b[k].shape)
        worst = max(worst, (a[k] - b[k]).abs().max().item())
    return worst


def write_keys(path: Path, sd: dict) -> None:
    lines = [f"{k} {list(v.shape)} {str(v.dtype).replace('torch.', '')}" for k, v in sd.items()]
    path.write_text("\n".join(lines) + "\n")


def fp16_round(model: nn.Module) -> None:
    """Round exactly the tensors OpenAI keeps in fp16 to fp16 precision (values stay fp32)."""
    convert_weights_to_lp(model, torch.float16)
    model.float()


# ---------------------------------------------------------------------------------------------
def generate(case: str, out_root: Path) -> dict:
    spec = CASES[case]
    d = out_root / case
    d.mkdir(parents=True, exist_ok=True)
    for stale in d.iterdir():
        stale.unlink()
    gen = torch.Generator().manual_seed(spec["seed"])

    model = build_model(case, spec["seed"])
    perturb(model, gen)
    if spec["save"] == "openai":
        fp16_round(model)
    inputs, input_info = make_inputs(case, spec, gen)
    expected = run_model(model, inputs)

    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    meta_weights: dict
    if spec["save"] == "hub":
        save_file(sd, str(d / "model.safetensors"))
        (d / "open_clip_config.json").write_text(
            json.dumps({"model_cfg": spec["cfg"], "preprocess_cfg": HUB_PREPROCESS}, indent=2) + "\n")
        on_disk = sd
        meta_weights = {"file": "model.safetensors", "format": "safetensors",
                        "config_file": "open_clip_config.json",
                        "layout": "openclip-custom-text" if spec["cfg"].get("custom_text") else "openclip-root",
                        "key_prefix": "", "wrapper": None}
    elif spec["save"] == "train_ckpt":
        on_disk = {"module." + k: v for k, v in sd.items()}
        torch.save({"state_dict": on_disk, "epoch": 1}, d / "model.pt")
        meta_weights = {"file": "model.pt", "format": "torch.save (zip pickle, weights_only-loadable)",
                        "config_file": None, "layout": "openclip-root", "key_prefix": "module.",
                        "wrapper": "{'state_dict': <state dict>, 'epoch': 1}"}
    elif spec["save"] == "openai":
        lp = copy.deepcopy(model)
        convert_weights_to_lp(lp, torch.float16)
        on_disk = {k: v.detach().clone().contiguous() for k, v in lp.state_dict().items()}
        torch.save(on_disk, d / "model.pt")
        meta_weights = {"file": "model.pt", "format": "torch.save (zip pickle) of a plain state dict",
                        "config_file": None, "layout": "openai (== openclip-root key names)",
                        "key_prefix": "", "wrapper": None,
                        "dtypes": {"float16": sorted(k for k, v in on_disk.items() if v.dtype == torch.float16),
                                   "float32": sorted(k for k, v in on_disk.items() if v.dtype == torch.float32)}}
    else:
        raise ValueError(spec["save"])

    write_keys(d / "keys.txt", on_disk)
    save_file(inputs, str(d / "inputs.safetensors"))
    save_file(expected, str(d / "expected.safetensors"))

    model_class = type(model).__name__
    meta = {
        "case": case,
        "description": spec["description"],
        "options": spec["options"],
        "model_class": f"open_clip.model.{model_class}",
        "model_cfg": spec["cfg"],
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
        "seed": spec["seed"],
        "weights": meta_weights,
        "num_tensors": len(on_disk),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "inputs": {"file": "inputs.safetensors",
                   "pixel_values": f"float32 {list(inputs['pixel_values'].shape)}, already normalised (randn)",
                   "input_ids": f"int64 {list(inputs['input_ids'].shape)}: bos, random ids, eos, then pad 0",
                   **input_info},
        "expected": {"file": "expected.safetensors", "dtype": "float32",
                     "image_embeds": "model.encode_image(pixel_values, normalize=False)",
                     "text_embeds": "model.encode_text(input_ids, normalize=False)",
                     "logit_scale": "raw parameter (apply exp() for the multiplier)",
                     "logit_bias": "raw parameter (only present when the model has one)",
                     "logits_per_image": "model.get_logits(pixel_values, input_ids)[0]",
                     "values": {"logit_scale": expected["logit_scale"].tolist(),
                                **({"logit_bias": expected["logit_bias"].tolist()} if "logit_bias" in expected else {})}},
        "values_perturbed": "LayerNorm/BatchNorm affine+running stats, all biases, LayerScale gamma, "
                            "head_scale, logit_scale and logit_bias are randomly perturbed away from init",
        "preprocess_cfg": HUB_PREPROCESS,
    }
    (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


@torch.no_grad()
def check(case: str, out_root: Path) -> list[tuple[str, float]]:
    """Reload the saved files with OpenCLIP's own loaders; compare to expected.safetensors."""
    spec = CASES[case]
    d = out_root / case
    inputs = load_file(str(d / "inputs.safetensors"))
    expected = load_file(str(d / "expected.safetensors"))
    results = []
    torch.manual_seed(424242)  # fresh random init differs from the fixture's

    if spec["save"] == "hub":
        m = open_clip.create_model(f"local-dir:{d}", device="cpu", precision="fp32").eval()
        results.append(("create_model(local-dir)", max_diff(run_model(m, inputs), expected)))
        cfg = json.loads((d / "open_clip_config.json").read_text())
        assert cfg["model_cfg"] == spec["cfg"]
        # and a plain strict load_state_dict of the safetensors into a model built from the config
        m2 = open_clip.create_model(_model_name(case), device="cpu").eval()
        m2.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
        results.append(("load_state_dict(strict)", max_diff(run_model(m2, inputs), expected)))
    elif spec["save"] == "train_ckpt":
        m = open_clip.create_model(_model_name(case), pretrained=str(d / "model.pt"), device="cpu").eval()
        results.append(("create_model(pretrained=model.pt)", max_diff(run_model(m, inputs), expected)))
        raw = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        assert set(raw) == {"state_dict", "epoch"} and raw["epoch"] == 1
        assert all(k.startswith("module.") for k in raw["state_dict"])
    elif spec["save"] == "openai":
        raw = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        assert isinstance(raw, dict) and "visual.proj" in raw
        m = build_model_from_openai_state_dict(dict(raw), quick_gelu=True, cast_dtype=None).float().eval()
        results.append(("build_model_from_openai_state_dict", max_diff(run_model(m, inputs), expected)))
        # the inferred architecture equals the one we built: same keys, shapes and heads
        ref = build_model(case, 1)
        assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
        assert m.visual.transformer.resblocks[0].attn.num_heads == ref.visual.transformer.resblocks[0].attn.num_heads
        assert m.transformer.resblocks[0].attn.num_heads == ref.transformer.resblocks[0].attn.num_heads
        assert type(m.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
        # round-trip: state dict out of the rebuilt model (converted back to OpenAI dtypes) is identical
        lp = copy.deepcopy(m)
        convert_weights_to_lp(lp, torch.float16)
        back = lp.state_dict()
        assert list(back) == list(raw)
        for k in raw:
            assert back[k].dtype == raw[k].dtype and torch.equal(back[k], raw[k]), k
        m3 = open_clip.load_openai_model(str(d / "model.pt"), precision="fp32", device="cpu").eval()
        results.append(("load_openai_model", max_diff(run_model(m3, inputs), expected)))
    for name, diff in results:
        assert diff < TOL, f"{case}: {name} max abs diff {diff:.3g} >= {TOL}"
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="only verify existing fixtures")
    ap.add_argument("cases", nargs="*", default=list(CASES))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    register_configs()
    import logging
    logging.disable(logging.WARNING)

    total = 0
    for case in args.cases:
        if not args.check:
            generate(case, args.out)
        res = check(case, args.out)
        size = sum(f.stat().st_size for f in (args.out / case).iterdir())
        total += size
        print(f"{case:22s} {size / 1024:8.1f} KiB  " + "  ".join(f"{n}: {v:.2e}" for n, v in res))
    print(f"total {total / 1024 / 1024:.2f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
