"""OpenAI-style TorchScript archives: ``tether.load`` reads the .pt files OpenAI released.

The fixture tests/fixtures/open_clip/openai_jit/model.pt was written by OpenCLIP's own jit path in
the peer venv (bench/open_clip_fixtures.py, case ``openai_jit``): ``open_clip.create_model(cfg,
pretrained=..., precision="fp16", jit=True)`` (OpenAI's fp16/fp32 mix, then ``torch.jit.script``)
saved with ``torch.jit.save``; ``expected.safetensors`` holds OpenCLIP's outputs for its inputs.
"""
import json
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import tether
from tether.checkpoints import detect_format
from tether.checkpoints.common import read_weights

CASE = Path(__file__).parent / "fixtures" / "open_clip" / "openai_jit"
ARCHIVE = CASE / "model.pt"
TOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models (tests/conftest.py)


def test_the_fixture_is_a_torchscript_archive():
    """Not a pickled state dict: torch.load refuses it, and it carries TorchScript code."""
    with zipfile.ZipFile(ARCHIVE) as z:
        assert any("/code/__torch__/open_clip/" in name for name in z.namelist())
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="TorchScript"):
        warnings.simplefilter("ignore")
        torch.load(ARCHIVE, map_location="cpu", weights_only=True)
    assert isinstance(torch.jit.load(str(ARCHIVE), map_location="cpu"), torch.jit.ScriptModule)


def test_read_weights_takes_the_archives_state_dict():
    state = read_weights(ARCHIVE)
    keys = [line.split(" ")[0] for line in (CASE / "keys.txt").read_text().splitlines()]
    assert sorted(state) == sorted(keys)
    assert state["visual.conv1.weight"].dtype == torch.float16      # OpenAI's mixed precision
    assert state["token_embedding.weight"].dtype == torch.float32


def test_tether_load_matches_open_clip_on_the_archive():
    meta = json.loads((CASE / "meta.json").read_text())
    assert detect_format(ARCHIVE) == "open_clip"
    model = tether.load(ARCHIVE)      # no config: everything inferred from the archive's shapes
    cfg = meta["model_cfg"]
    image, text = model.config.towers["image"], model.config.towers["text"]
    assert (image.width, image.layers, image.patch_size, image.image_size) == \
        (cfg["vision_cfg"]["width"], cfg["vision_cfg"]["layers"], cfg["vision_cfg"]["patch_size"],
         cfg["vision_cfg"]["image_size"])
    assert (text.width, text.heads, text.layers, text.vocab_size, text.context_length) == \
        (cfg["text_cfg"]["width"], cfg["text_cfg"]["heads"], cfg["text_cfg"]["layers"],
         cfg["text_cfg"]["vocab_size"], cfg["text_cfg"]["context_length"])
    assert image.act == text.act == "quick_gelu" and model.config.embed_dim == cfg["embed_dim"]

    inputs = load_file(CASE / "inputs.safetensors")
    expected = load_file(CASE / "expected.safetensors")
    with torch.no_grad():
        image_embeds = model.encode_image(inputs["pixel_values"])
        text_embeds = model.encode_text(inputs["input_ids"])
    torch.testing.assert_close(image_embeds, expected["image_embeds"], atol=TOL, rtol=0)
    torch.testing.assert_close(text_embeds, expected["text_embeds"], atol=TOL, rtol=0)
    assert model.logit_scale.item() == expected["logit_scale"].item()
    logits = model.scale() * F.normalize(image_embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).T
    # |logits| <= exp(logit_scale) ~ 15: a few float32 ulps of that
    torch.testing.assert_close(logits, expected["logits_per_image"], atol=1e-4, rtol=0)
