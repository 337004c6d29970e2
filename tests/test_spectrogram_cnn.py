"""The audio modality's small convolutional tower (kind "cnn"): shapes, batch independence, and
the same calls as the patch transformer (processor, clip averaging, save/load)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tether
from tether.config import ModelConfig
from tether.errors import ConfigError
from tether.models.spectrogram_cnn import SpectrogramCNN

pytestmark = pytest.mark.usefixtures("one_thread")

CNN = {"kind": "cnn", "input_size": [32, 96], "width": 32, "layers": 3,
       "processor": {"sample_rate": 8000, "clip_duration": 1.0, "clips": 2, "trim_db": 40.0, "loudness_dbfs": -20.0}}


def _config(audio: dict) -> ModelConfig:
    path = Path(tether.__file__).parent / "model_configs" / "tiny-audio-28.json"
    data = json.loads(path.read_text())
    data["towers"]["audio"] = audio
    return ModelConfig.from_dict(data)


def test_features_have_the_width_and_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    tower = SpectrogramCNN(1, width=32, layers=3).eval()
    x = torch.randn(5, 1, 32, 96)
    with torch.no_grad():
        batch, alone = tower(x), tower(x[2:3])
    assert batch.shape == (5, 32) and tower.output_dim == 32
    torch.testing.assert_close(alone[0], batch[2], atol=1e-5, rtol=0)  # GroupNorm: no batch statistics
    with pytest.raises(ValueError, match=r"\(batch, 1, bins, frames\)"):
        tower(torch.randn(5, 32, 96))


def test_an_audio_model_with_a_cnn_tower_embeds_averages_clips_and_round_trips(tmp_path, tuxpaint_stamps):
    torch.manual_seed(0)
    model = tether.create_model(_config(CNN)).eval()
    assert isinstance(model.towers["audio"], SpectrogramCNN)
    files = sorted((tuxpaint_stamps / "symbols" / "math").glob("[0-2]_de.ogg"))
    vecs = model.embed("audio", files)
    assert vecs.shape == (3, 64) and torch.allclose(vecs.norm(dim=-1), torch.ones(3), atol=1e-5)
    clips = model.processors["audio"](files[0])
    assert clips.shape == (2, 1, 32, 96)
    with torch.no_grad():
        each = torch.nn.functional.normalize(model.encode("audio", clips), dim=-1)
    torch.testing.assert_close(vecs[0], torch.nn.functional.normalize(each.mean(0), dim=0), atol=1e-5, rtol=0)
    tether.save(model, tmp_path / "m")
    loaded = tether.load(tmp_path / "m").eval()
    assert loaded.config.towers["audio"].kind == "cnn"
    torch.testing.assert_close(loaded.embed("audio", files), vecs, atol=1e-6, rtol=0)


def test_an_unknown_audio_tower_kind_names_the_kinds():
    with pytest.raises(ConfigError, match="expected one of vit, cnn"):
        tether.create_model(_config({**CNN, "kind": "lstm"}))
