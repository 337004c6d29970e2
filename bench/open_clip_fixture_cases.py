"""The OpenCLIP fixture cases of bench/open_clip_fixtures.py, and what open_clip 3.3.0 does with them.

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

from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

# preprocess_cfg of every hub directory's open_clip_config.json (and of meta.json)
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
    "openai_jit": dict(
        seed=1009,
        save="openai_jit",
        description=(
            "ViT CLIP saved as a TorchScript archive, as OpenAI's released .pt files are: the model "
            "built by OpenCLIP's own jit path, open_clip.create_model(..., precision='fp16', jit=True) "
            "(torch.jit.script after OpenAI's mixed fp16/fp32 cast), then torch.jit.save. No config: the "
            "architecture is inferred from the archive's state dict (heads = width // 64, quick_gelu). "
            "Verified with open_clip.load_openai_model, which opens the archive with torch.jit.load."
        ),
        options=["TorchScript archive (torch.jit.script via create_model(jit=True), torch.jit.save)",
                 "quick_gelu=True", "head_width 64 in both towers (1 head at width 64)",
                 "fp16/fp32 mixed dtypes", "no config"],
        cfg={
            "embed_dim": 32,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 64, "patch_size": 8},
            "text_cfg": {"context_length": 16, "vocab_size": 500, "width": 64, "heads": 1, "layers": 1},
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
