"""Export to OpenCLIP's layout gives back OpenCLIP's own state dict, key for key and value for value.

For every OpenCLIP fixture tether can load (tests/fixtures/open_clip/, written by open_clip itself:
bench/open_clip_fixtures.py), ``tether.load`` then ``tether.save(format="open_clip")`` must write
exactly the tensors of the OpenCLIP model the fixture was saved from. Where the file on disk is not
that state dict as such, OpenCLIP's own loader makes the same change before it loads:

* ``module.`` prefixes of a DDP training checkpoint are stripped (open_clip's ``load_state_dict``);
* OpenAI-style fp16 tensors are compared as float32 (fp16 -> fp32 is exact; OpenCLIP's
  ``load_openai_model(precision="fp32")`` casts them the same way; tether always writes float32);
* a TorchScript archive also stores the causal ``attn_mask``, a non-persistent buffer that is not
  in the eager model's state dict;
* ``CustomTextCLIP`` fixtures (``text.*`` keys) are compared with
  ``checkpoints.open_clip.save(custom_text=True)``; ``tether.save`` writes the root layout, whose
  keys are OpenCLIP's ``convert_to_custom_text_state_dict`` inverse (the ``text.`` prefix dropped).
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tether
from tether.checkpoints import open_clip as oc
from tether.checkpoints.common import read_weights

FIXTURES = Path(__file__).parent / "fixtures" / "open_clip"
# Every fixture tether loads (the attentional pooler and custom blocks are refused; see
# tests/test_open_clip_checkpoints.py). Listed by name so a missing folder fails.
CASES = ["vit_root", "vit_gelu_state_dict", "vit_text_layout", "resnet", "openai_style", "openai_jit", "vit_options"]

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models (tests/conftest.py)


def _meta(case: str) -> dict:
    return json.loads((FIXTURES / case / "meta.json").read_text())


def _open_clip_state(case: str) -> dict[str, torch.Tensor]:
    """The state dict of the OpenCLIP model the fixture was written from."""
    meta = _meta(case)
    state = read_weights(FIXTURES / case / meta["weights"]["file"])
    prefix = meta["weights"]["key_prefix"]
    state = {k[len(prefix):]: v for k, v in state.items()}
    if case == "openai_jit":  # the causal mask buffer, not a weight
        mask = state.pop("attn_mask")
        assert torch.equal(mask, torch.full(mask.shape, float("-inf")).triu(1))
    # keys.txt lists what open_clip saved: the reader above must not have dropped or added any
    listed = [line.split(" ")[0] for line in (FIXTURES / case / "keys.txt").read_text().splitlines()]
    assert sorted(k[len(prefix):] for k in listed if k != "attn_mask") == sorted(state)
    return state


def _load_kwargs(meta: dict) -> dict:
    """What shapes cannot tell, for the config-less training checkpoint (as in test_open_clip_checkpoints)."""
    if meta["weights"]["config_file"] is not None or meta["case"].startswith("openai"):
        return {}
    cfg = meta["model_cfg"]
    return {"quick_gelu": cfg.get("quick_gelu", False),
            "vision_heads": cfg["vision_cfg"]["width"] // cfg["vision_cfg"].get("head_width", 64),
            "text_heads": cfg["text_cfg"]["heads"]}


def _assert_same_state(written: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert sorted(written) == sorted(reference)
    for key, ref in reference.items():
        got = written[key]
        assert got.shape == ref.shape, (key, got.shape, ref.shape)
        want = ref.float() if ref.dtype == torch.float16 else ref
        assert got.dtype == want.dtype, (key, got.dtype, want.dtype)
        assert torch.equal(got, want), key


@pytest.mark.parametrize("case", CASES)
def test_export_reproduces_open_clips_state_dict(case, tmp_path):
    meta = _meta(case)
    reference = _open_clip_state(case)
    model = tether.load(FIXTURES / case, **_load_kwargs(meta))
    custom_text = bool(meta["model_cfg"].get("custom_text", False))

    tether.save(model, tmp_path / "root", format="open_clip")
    root = load_file(tmp_path / "root" / "open_clip_model.safetensors")
    if custom_text:  # open_clip's convert_to_custom_text_state_dict, undone
        reference_root = {k[len("text."):] if k.startswith("text.") else k: v for k, v in reference.items()}
        _assert_same_state(root, reference_root)
        oc.save(model, tmp_path / "custom", custom_text=True)
        _assert_same_state(load_file(tmp_path / "custom" / "open_clip_model.safetensors"), reference)
        written_cfg = json.loads((tmp_path / "custom" / "open_clip_config.json").read_text())["model_cfg"]
        assert written_cfg["custom_text"] is True
    else:
        _assert_same_state(root, reference)

    # and the export loads back to OpenCLIP's outputs
    inputs = load_file(FIXTURES / case / "inputs.safetensors")
    expected = load_file(FIXTURES / case / "expected.safetensors")
    again = tether.load(tmp_path / "root")
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(inputs["pixel_values"]), expected["image_embeds"],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(again.encode_text(inputs["input_ids"]), expected["text_embeds"],
                                   atol=1e-5, rtol=0)
