"""The patch transformer beyond RGB squares: rectangular and overlapping patches, 1-D series,
ImageBind's learned key/value tokens, stochastic depth, and clips averaged in ``encode``.

References are torch's own modules (Conv1d, nn.MultiheadAttention(add_bias_kv=True)) and
ImageBind's layouts written out by hand; tolerances are float32 rounding of a few matmuls.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tether.config import ModelConfig, PatchTowerConfig, TextTowerConfig
from tether.errors import ConfigError
from tether.models import MODALITIES, AlignedModel, Modality
from tether.models.layers import Attention
from tether.models.vit import VisionTransformer, patch_tower_builder, resize_pos_embed

pytestmark = pytest.mark.usefixtures("one_thread")
ATOL = 1e-5  # float32 rounding of sums of a few hundred products of O(1) values


def _audio_cfg(**kw) -> PatchTowerConfig:
    base = dict(in_channels=1, input_size=(128, 204), patch_size=16, patch_stride=10, width=32, layers=2,
                heads=4, act="gelu", ln_eps=1e-6, ln_pre=False, patch_norm=True, attn_bias_kv=True)
    return PatchTowerConfig(**{**base, **kw})


def test_audio_geometry_is_imagebinds_12_by_19_overlapping_grid():
    tower = VisionTransformer(_audio_cfg(), "audio").eval()
    assert tower.grid == (12, 19)  # (128 - 16) // 10 + 1, (204 - 16) // 10 + 1
    assert tuple(tower.positional_embedding.shape) == (1 + 12 * 19, 32)
    x = torch.randn(2, 1, 128, 204)
    tokens, grid = tower.patchify(x)
    # patch (i, j) covers rows 10i..10i+15 and columns 10j..10j+15: compare one patch by hand
    i, j = 5, 17
    patch = x[:, 0, 10 * i:10 * i + 16, 10 * j:10 * j + 16].reshape(2, -1)
    raw = patch @ tower.patch_embed.weight.reshape(32, -1).T
    expected = F.layer_norm(raw, (32,), tower.patch_norm.weight, tower.patch_norm.bias)
    torch.testing.assert_close(tokens[:, i * 19 + j], expected, atol=ATOL, rtol=0)
    assert tower(x).shape == (2, 32)


def test_series_stem_is_a_strided_conv1d_and_imagebinds_unfold_layout():
    cfg = PatchTowerConfig(in_channels=6, input_size=(2000,), patch_size=8, width=24, layers=1, heads=2,
                           act="gelu", patch_norm=False)
    tower = VisionTransformer(cfg, "imu").eval()
    assert tower.grid == (250,) and tower.patch_embed.weight.shape == (24, 48)
    x = torch.randn(3, 6, 2000)
    tokens, _ = tower.patchify(x)
    conv = F.conv1d(x, tower.patch_embed.weight.view(24, 6, 8), stride=8).transpose(1, 2)
    torch.testing.assert_close(tokens, conv, atol=ATOL, rtol=0)
    # ImageBind's IMUPreprocessor: unfold(-1, 8, 8).permute(0, 2, 1, 3).reshape(B, L, -1) then Linear(48 -> D)
    imagebind = x.unfold(-1, 8, 8).permute(0, 2, 1, 3).reshape(3, 250, -1) @ tower.patch_embed.weight.T
    torch.testing.assert_close(tokens, imagebind, atol=ATOL, rtol=0)


def test_bias_kv_attention_equals_torch_multihead_attention_with_add_bias_kv():
    torch.manual_seed(0)
    ours = Attention(16, 4, bias_kv=True)
    ref = nn.MultiheadAttention(16, 4, add_bias_kv=True, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.in_proj_bias.copy_(torch.randn(48))
        ours.in_proj.bias.copy_(ref.in_proj_bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
        ref.bias_k.copy_(ours.bias_k)
        ref.bias_v.copy_(ours.bias_v)
    x = torch.randn(2, 7, 16)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=0)
    # the pooled path (last block at the class token) sees the extra key too
    torch.testing.assert_close(ours.cross(x[:, :1], x)[:, 0], expected[:, 0], atol=ATOL, rtol=0)


def test_without_bias_kv_the_key_tokens_matter():
    torch.manual_seed(0)
    cfg = _audio_cfg(layers=1)
    with_kv = VisionTransformer(cfg, "audio").eval()
    state = with_kv.state_dict()
    assert {"transformer.blocks.0.attn.bias_k", "transformer.blocks.0.attn.bias_v", "patch_norm.weight"} <= set(state)
    x = torch.randn(1, 1, 128, 204)
    before = with_kv(x)
    with torch.no_grad():
        with_kv.transformer.blocks[0].attn.bias_v.mul_(3)
    assert not torch.allclose(before, with_kv(x), atol=1e-4)


def test_drop_path_only_acts_in_training_and_rises_with_depth():
    torch.manual_seed(0)
    tower = VisionTransformer(_audio_cfg(layers=3, drop_path=0.5), "audio")
    assert [b.drop_path for b in tower.transformer.blocks] == [0.0, 0.25, 0.5]
    plain = VisionTransformer(_audio_cfg(layers=3), "audio")
    plain.load_state_dict(tower.state_dict())  # same keys: stochastic depth has no parameters
    x = torch.randn(8, 1, 128, 204)
    tower.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(tower(x), plain(x), atol=ATOL, rtol=0)
        tower.train()
        torch.manual_seed(1)
        a = tower(x)
        torch.manual_seed(2)
        b = tower(x)
    assert not torch.allclose(a, b, atol=1e-3)


def test_rectangular_and_series_position_tables_resize():
    pos = torch.randn(1 + 12 * 19, 8)
    out = resize_pos_embed(pos, (12, 21), 1, old_grid=(12, 19))
    assert out.shape == (1 + 12 * 21, 8) and torch.equal(out[0], pos[0])
    same = resize_pos_embed(pos, (12, 19), 1, old_grid=(12, 19))
    assert same is pos
    series = resize_pos_embed(torch.arange(11.0).unsqueeze(1), (20,), 1, old_grid=(10,))
    assert series.shape == (21, 1) and series[1:].min() >= 1 and series[1:].max() <= 10
    # a longer spectrogram runs through the tower with interpolated positions
    tower = VisionTransformer(_audio_cfg(layers=1), "audio").eval()
    assert tower(torch.randn(1, 1, 128, 224)).shape == (1, 32)


def test_wrong_channels_or_rank_is_a_one_line_error():
    tower = VisionTransformer(_audio_cfg(layers=1), "audio")
    with pytest.raises(ValueError, match=r"C=1, got \(2, 3, 128, 204\)"):
        tower(torch.randn(2, 3, 128, 204))
    with pytest.raises(ConfigError, match="input_size"):
        _audio_cfg(input_size=(8, 204)).validate("towers.audio")
    with pytest.raises(ConfigError, match="drop_path"):
        _audio_cfg(drop_path=1.0).validate("towers.audio")


@pytest.fixture
def spectro_modality(monkeypatch):
    """A throwaway modality with patch-transformer towers, removed again after the test."""
    monkeypatch.setitem(MODALITIES, "spectro_test",
                        Modality("spectro_test", PatchTowerConfig, patch_tower_builder("spectro_test")))


@pytest.mark.usefixtures("spectro_modality")
def test_clips_are_averaged_after_normalisation_in_encode():
    cfg = ModelConfig(embed_dim=16, towers={
        "spectro_test": _audio_cfg(input_size=(32, 44), layers=1),
        "text": TextTowerConfig(vocab_size=50, context_length=8, width=16, layers=1, heads=2)})
    torch.manual_seed(0)
    model = AlignedModel(cfg).eval()
    clips = torch.randn(2, 3, 1, 32, 44)  # 2 recordings x 3 clips
    with torch.no_grad():
        got = model.encode("spectro_test", clips)
        each = F.normalize(model.encode("spectro_test", clips.flatten(0, 1)), dim=-1).view(2, 3, -1)
        normalised = model.encode("spectro_test", clips, normalize=True)
    torch.testing.assert_close(got, each.mean(1), atol=ATOL, rtol=0)
    torch.testing.assert_close(normalised, F.normalize(each.mean(1), dim=-1), atol=ATOL, rtol=0)
    assert model.encode("spectro_test", clips[:, 0]).shape == (2, 16)  # one clip: no clip dim needed


@pytest.mark.usefixtures("spectro_modality")
def test_patch_tower_config_round_trips_through_json(tmp_path):
    cfg = ModelConfig(embed_dim=16, towers={"spectro_test": _audio_cfg(logit_scale=20.0),
                                            "text": TextTowerConfig()})
    cfg.to_json(tmp_path / "config.json")
    back = ModelConfig.from_json(tmp_path / "config.json")
    assert back.towers["spectro_test"] == cfg.towers["spectro_test"]
    assert back.towers["spectro_test"].patch_stem().grid() == (12, 19)
