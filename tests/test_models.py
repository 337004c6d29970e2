"""Core model behaviour: shapes, normalisation, configs, towers."""
import math

import pytest
import torch
from torch import nn

import tether
from tether.config import ConfigError, ModelConfig
from tether.models import AlignedModel, create_model, get_model_config, list_models
from tether.models.layers import Attention
from tether.models.vit import resize_pos_embed

# Parameter counts of the published architectures (OpenCLIP's model table).
PUBLISHED_PARAMS_M = {"ViT-B-32": 151.28, "ViT-B-16": 149.62, "ViT-L-14": 427.62, "RN50": 102.01,
                      "SigLIP-B-16": 203.16}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_published_shapes_have_published_parameter_counts(name):
    with torch.device("meta"):
        model = create_model(name)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(PUBLISHED_PARAMS_M[name], abs=0.01)


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("tiny")])
def test_tiny_models_embed_to_unit_vectors(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    cfg = model.config
    pixels = torch.randn(3, 3, cfg.towers["image"].image_size, cfg.towers["image"].image_size)
    ids = torch.randint(1, cfg.towers["text"].vocab_size, (4, cfg.towers["text"].context_length))
    out = model(pixels, ids)
    assert out.image_embeds.shape == (3, cfg.embed_dim)
    assert out.text_embeds.shape == (4, cfg.embed_dim)
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out.text_embeds.norm(dim=-1), torch.ones(4), atol=1e-5)
    raw = model.encode_image(pixels)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3))
    assert out.logits_per_image().shape == (3, 4)



@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("tiny")])
def test_tiny_models_take_empty_batches(name):
    """A data-parallel rank whose every local sample was corrupt still runs its towers (0 rows)."""
    model = create_model(name)
    cfg = model.config
    pixels = torch.zeros(0, 3, cfg.towers["image"].image_size, cfg.towers["image"].image_size, requires_grad=True)
    ids = torch.zeros(0, cfg.towers["text"].context_length, dtype=torch.long)
    img, txt = model.encode_image(pixels), model.encode_text(ids)
    assert img.shape == (0, cfg.embed_dim) and txt.shape == (0, cfg.embed_dim)
    (img.sum() + txt.sum()).backward()  # an empty graph still back-propagates (zeros)

def test_logit_scale_init_and_cap():
    clip = create_model("tiny-vit-28")
    assert float(clip.scale().detach()) == pytest.approx(1 / 0.07, rel=1e-5)
    assert clip.logit_bias is None
    with torch.no_grad():
        clip.logit_scale.fill_(math.log(500.0))
    assert float(clip.scale().detach()) == pytest.approx(100.0)
    clip.clamp_logit_scale_()
    assert float(clip.logit_scale.detach()) == pytest.approx(math.log(100.0))
    siglip = create_model("tiny-siglip-28")
    assert float(siglip.scale().detach()) == pytest.approx(10.0, rel=1e-5)
    assert float(siglip.logit_bias.detach()) == pytest.approx(-10.0)


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours, ref = Attention(32, 4), nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.in_proj_bias.copy_(ours.in_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 7, 32)
    causal = torch.triu(torch.full((7, 7), float("-inf")), 1)
    assert torch.allclose(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-6)
    assert torch.allclose(ours(x, causal=True), ref(x, x, x, attn_mask=causal, need_weights=False)[0], atol=1e-6)
    q = torch.randn(2, 1, 32)
    assert torch.allclose(ours.cross(q, x), ref(q, x, x, need_weights=False)[0], atol=1e-6)


def _std(params) -> float:
    return float(torch.cat([p.detach().flatten() for p in params]).std())


def test_init_follows_open_clip():
    """OpenCLIP's scheme: attention as nn.MultiheadAttention (Xavier q/k/v, zero biases) in every
    tower; the text tower's blocks then get CLIP's normal init; the projections std width**-0.5."""
    torch.manual_seed(0)
    model = create_model("tiny-vit-28")
    vision, text = list(model.towers["image"].transformer.blocks), list(model.towers["text"].transformer.blocks)
    w, layers = model.towers["text"].cfg.width, len(text)
    for block in vision + text:
        for bias in (block.attn.in_proj.bias, block.attn.out_proj.bias):
            assert torch.count_nonzero(bias) == 0
    vw = model.towers["image"].cfg.width
    qkv = torch.cat([b.attn.in_proj.weight.detach().flatten() for b in vision])
    assert float(qkv.abs().max()) <= (6 / (4 * vw)) ** 0.5  # Xavier-uniform bound, fan_in + fan_out = 4w
    assert float(qkv.std()) == pytest.approx((2 / (4 * vw)) ** 0.5, rel=0.03)
    assert _std(b.attn.out_proj.weight for b in vision) == pytest.approx((3 * vw) ** -0.5, rel=0.03)
    assert _std(b.mlp.fc1.weight for b in vision) == pytest.approx((3 * vw) ** -0.5, rel=0.03)
    proj = w**-0.5 * (2 * layers) ** -0.5
    assert _std(b.attn.in_proj.weight for b in text) == pytest.approx(w**-0.5, rel=0.03)
    assert _std(b.attn.out_proj.weight for b in text) == pytest.approx(proj, rel=0.03)
    assert _std(b.mlp.fc1.weight for b in text) == pytest.approx((2 * w) ** -0.5, rel=0.03)
    assert _std(b.mlp.fc2.weight for b in text) == pytest.approx(proj, rel=0.03)
    assert _std([model.towers["text"].token_embedding.weight]) == pytest.approx(0.02, rel=0.03)
    assert _std([model.towers["text"].positional_embedding]) == pytest.approx(0.01, rel=0.1)
    assert _std([model.projections["image"].weight]) == pytest.approx(vw**-0.5, rel=0.05)
    assert _std([model.projections["text"].weight]) == pytest.approx(w**-0.5, rel=0.05)
    head = create_model("tiny-siglip-28").towers["image"].head.attn  # SigLIP's attention-pool head: the same attention init
    assert torch.count_nonzero(head.in_proj.bias) == 0 and torch.count_nonzero(head.out_proj.bias) == 0


def test_causal_text_ignores_tokens_after_eot():
    torch.manual_seed(0)
    model = create_model("tiny-vit-28").eval()
    ids = torch.zeros(2, 24, dtype=torch.long)
    ids[:, :5] = torch.tensor([1, 10, 11, 12, 2])  # bos ... eos (id 2: the eot id of tether-trained BPE)
    ids[1, 8] = 99  # junk after the end token must not change a causal model's embedding
    emb = model.encode_text(ids)
    assert torch.allclose(emb[0], emb[1], atol=1e-6)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = create_model("tiny-vit-28").train()
    pixels, ids = torch.randn(2, 3, 28, 28), torch.randint(1, 2000, (2, 24))

    def grads():
        model.zero_grad()
        out = model(pixels, ids)
        out.logits_per_image().logsumexp(1).sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    model.set_grad_checkpointing(True)
    checkpointed = grads()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))


def test_patch_dropout_only_in_training():
    torch.manual_seed(0)
    cfg = get_model_config("tiny-vit-28")
    cfg.towers["image"].patch_dropout = 0.5
    model = AlignedModel(cfg)
    pixels = torch.randn(2, 3, 28, 28)
    model.eval()
    assert model.towers["image"].tokens(pixels).shape[1] == 17
    model.train()
    assert model.towers["image"].tokens(pixels).shape[1] == 1 + 8


def test_position_embedding_resize_keeps_identity_and_changes_grid():
    pos = torch.randn(1 + 16, 8)
    assert torch.equal(resize_pos_embed(pos, 4), pos)
    bigger = resize_pos_embed(pos, 6)
    assert bigger.shape == (37, 8) and torch.equal(bigger[0], pos[0])
    model = create_model("tiny-vit-28").eval()
    assert model.encode_image(torch.randn(1, 3, 42, 42)).shape == (1, 64)  # 6x6 grid, interpolated


def test_custom_module_tower_plugs_in():
    class MeanColour(nn.Module):
        output_dim = 3

        def forward(self, pixels):
            return pixels.mean(dim=(2, 3))

    cfg = get_model_config("tiny-vit-28")
    cfg.towers["image"].kind = "module"
    model = AlignedModel(cfg, towers={"image": MeanColour()})
    assert model.encode_image(torch.randn(2, 3, 5, 5), normalize=True).shape == (2, 64)
    with pytest.raises(ValueError, match="pass the tower itself"):
        AlignedModel(cfg)
    with pytest.raises(TypeError, match="output_dim"):
        AlignedModel(cfg, towers={"image": nn.Identity()})


def test_config_rejects_unknown_keys_and_wrong_types():
    data = get_model_config("tiny-vit-28").to_dict()
    assert ModelConfig.from_dict(data) == get_model_config("tiny-vit-28")
    towers = data["towers"]

    def with_tower(name, **changes):
        return {**data, "towers": {**towers, name: {**towers[name], **changes}}}

    with pytest.raises(ConfigError, match="config.towers.image: unknown key 'pach_size'"):
        ModelConfig.from_dict(with_tower("image", pach_size=7))
    with pytest.raises(ConfigError, match="text.layers: expected an integer"):
        ModelConfig.from_dict(with_tower("text", layers="two"))
    with pytest.raises(ConfigError, match="not a multiple"):
        ModelConfig.from_dict(with_tower("image", patch_size=5)).validate()
    with pytest.raises(ConfigError, match="config: unknown key 'vision'"):
        ModelConfig.from_dict({**data, "vision": towers["image"]})  # the version-1 layout only loads from checkpoints
    with pytest.raises(KeyError, match="known"):
        get_model_config("ViT-Z-99")


def test_top_level_api():
    assert "ViT-B-32" in tether.list_models()
    assert isinstance(tether.create_model("tiny-vit-28"), tether.AlignedModel)
