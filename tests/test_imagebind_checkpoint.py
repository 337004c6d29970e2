"""ImageBind's checkpoint layout loads into tether's towers and gives ImageBind's embeddings.

The reference is a small ImageBindModel built, run and saved by ImageBind's own code
(bench/imagebind_fixtures.py, from an ImageBind checkout in a peer venv): the released
imagebind_huge.pth has the same key names at other widths. Every modality is compared: image
(its Conv3d stem folded into a Conv2d), text, audio (3 clips averaged), depth, thermal and IMU
(towers registered here as plain patch-transformer modalities).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tether.checkpoints.common import CheckpointError
from tether.checkpoints.imagebind import load_imagebind
from tether.config import ImageTowerConfig, ModelConfig, PatchTowerConfig, TextTowerConfig
from tether.models import MODALITIES, Modality
from tether.models.audio_modality import AudioTowerConfig
from tether.models.vit import patch_tower_builder

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURE = Path(__file__).parent / "fixtures" / "imagebind" / "tiny_imagebind.npz"
ATOL = 2e-5  # float32 rounding through two blocks; the folded image stem sums two products per weight


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURE) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays.pop("meta")))
    state = {k[len("state/"):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("state/")}
    inputs = {k[len("input/"):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("input/")}
    inputs = {k: v if k == "text" else v.float() / meta["input_scale"] for k, v in inputs.items()}
    outputs = {k[len("output/"):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("output/")}
    return meta, state, inputs, outputs


@pytest.fixture
def sensor_modalities(monkeypatch):
    """depth, thermal and IMU as plain patch-transformer modalities, for this test only."""
    for name in ("depth", "thermal", "imu"):
        monkeypatch.setitem(MODALITIES, name, Modality(name, PatchTowerConfig, patch_tower_builder(name)))


def _config(meta: dict, modalities=("image", "text", "audio", "depth", "thermal", "imu")) -> ModelConfig:
    w, h, n = meta["width"], meta["heads"], meta["blocks"]
    common = dict(width=w, heads=h, layers=n, act="gelu", ln_eps=1e-6)
    patch = dict(common, ln_pre=False, patch_norm=True, attn_bias_kv=True)
    towers = {"image": ImageTowerConfig(image_size=224, patch_size=14, **common),
              "text": TextTowerConfig(vocab_size=49408, context_length=77, pool="argmax", causal=True,
                                      processor={"context_length": 77, "tokenizer": "clip"}, **common),
              "audio": AudioTowerConfig(**common),
              "depth": PatchTowerConfig(in_channels=1, input_size=(224, 224), patch_size=16, **patch),
              "thermal": PatchTowerConfig(in_channels=1, input_size=(224, 224), patch_size=16, **patch),
              "imu": PatchTowerConfig(in_channels=6, input_size=(2000,), patch_size=8, **patch)}
    return ModelConfig(embed_dim=meta["out_embed_dim"], towers={m: towers[m] for m in modalities})


@pytest.mark.usefixtures("sensor_modalities")
def test_every_modality_embeds_as_imagebind_does(ref):
    meta, state, inputs, outputs = ref
    model = load_imagebind(state, _config(meta))
    names = {"image": "vision"}
    with torch.no_grad():
        for modality in model.modalities:
            got = model.encode(modality, inputs[names.get(modality, modality)], normalize=True)
            expected = F.normalize(outputs[names.get(modality, modality)], dim=-1)
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0, msg=modality)
    # ImageBind's text scale is learned (tether's logit_scale); the others are fixed, in the config
    assert float(model.logit_scale.detach()) == pytest.approx(float(state["modality_postprocessors.text.1.log_logit_scale"]))
    assert model.config.towers["audio"].logit_scale == pytest.approx(
        float(state["modality_postprocessors.audio.1.log_logit_scale"].exp()), rel=1e-6)
    assert model.config.towers["imu"].logit_scale == pytest.approx(
        float(state["modality_postprocessors.imu.1.log_logit_scale"].exp()), rel=1e-6)


def test_a_subset_of_modalities_loads_and_mismatches_are_named(ref):
    meta, state, inputs, outputs = ref
    model = load_imagebind(state, _config(meta, ("image", "text", "audio")))
    assert model.modalities == ("image", "text", "audio")
    assert model.processors["audio"] is not None and model.tokenizer is not None
    wrong = _config(meta, ("image", "text", "audio"))
    wrong.towers["audio"].attn_bias_kv = False
    with pytest.raises(CheckpointError, match="bias_k has no place"):
        load_imagebind(state, wrong)
    narrow = _config(meta, ("image", "text"))
    narrow.towers["image"].patch_size = 16
    with pytest.raises(CheckpointError, match=r"patch_embed.weight has shape \(32, 3, 14, 14\)"):
        load_imagebind(state, narrow)
    gone = {k: v for k, v in state.items() if not k.startswith("modality_heads.audio")}
    with pytest.raises(CheckpointError, match="missing 'modality_heads.audio.0.weight'"):
        load_imagebind(gone, _config(meta, ("audio", "text")))


def test_imagebind_h14_config_takes_every_tensor_of_the_released_checkpoint():
    """imagebind_huge.pth's key names and shapes (ImageBind's own model built on the meta device by
    bench/imagebind_fixtures.py; the 4.5 GB file itself is not downloaded) fill the ImageBind-H-14
    model exactly: every tether tensor gets one of the right shape."""
    import gzip

    from tether.checkpoints.imagebind import convert_state_dict
    from tether.models import create_model, get_model_config

    layout = json.loads(gzip.decompress((FIXTURE.parent / "imagebind_huge_layout.json.gz").read_bytes()))
    state = {k: torch.empty(shape, device="meta") for k, shape in layout.items()}
    state.update({k: torch.tensor(math.log(20.0)) for k in layout if k.endswith("audio.1.log_logit_scale")})
    config = get_model_config("ImageBind-H-14")
    tensors, scales = convert_state_dict(state, config)
    with torch.device("meta"):
        model = create_model(config)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in tensors.items()} == own
    assert scales == {"audio": pytest.approx(20.0)}  # depth, thermal, IMU: not in this config
    # and nothing of those three modalities is left behind: one tether tensor per ImageBind tensor, except
    # the text's causal mask (a constant) and the audio scale (a config value)
    theirs = [k for k in layout if k.split(".")[1] in ("vision", "text", "audio")]
    assert len(tensors) == len(theirs) - 2 and "modality_preprocessors.text.mask" in theirs
    assert own["towers.image.patch_embed.weight"] == (1280, 3, 14, 14)  # ImageBind's Conv3d, folded
