"""Re-load a written OpenCLIP fixture case with OpenCLIP's own loaders and compare with its
expected.safetensors (max abs diff < TOL times each tensor's largest magnitude, at least 1)."""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import open_clip
import torch
from open_clip.model import build_model_from_openai_state_dict, convert_weights_to_lp
from safetensors.torch import load_file

from open_clip_fixture_cases import CASES
from open_clip_fixture_models import build_model, max_diff, model_name, run_model

TOL = 1e-6


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
        m2 = open_clip.create_model(model_name(case), device="cpu").eval()
        m2.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
        results.append(("load_state_dict(strict)", max_diff(run_model(m2, inputs), expected)))
    elif spec["save"] == "train_ckpt":
        m = open_clip.create_model(model_name(case), pretrained=str(d / "model.pt"), device="cpu").eval()
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
    elif spec["save"] == "openai_jit":
        results.append(("TorchScript archive + build_model_from_openai_state_dict", check_jit_archive(case, d / "model.pt", inputs, expected)))
    for name, diff in results:
        assert diff < TOL, f"{case}: {name} max abs diff {diff:.3g} >= {TOL}"
    return results


def check_jit_archive(case: str, path: Path, inputs: dict, expected: dict) -> float:
    """A real TorchScript archive (not a pickled state dict): its own code, run in fp32, and OpenCLIP's
    OpenAI builder on its state dict reproduce the expected outputs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.load says it dispatches to torch.jit.load, then refuses
            torch.load(path, map_location="cpu", weights_only=True)
    except RuntimeError as err:
        assert "TorchScript" in str(err), err
    else:
        raise AssertionError(f"{path}: torch.load read it: a state dict, not a TorchScript archive")
    archive = torch.jit.load(str(path), map_location="cpu")
    assert isinstance(archive, torch.jit.ScriptModule)
    state = archive.state_dict()
    assert state["visual.conv1.weight"].dtype == torch.float16 and state["ln_final.weight"].dtype == torch.float32
    archive = archive.float().eval()
    ran = {"image_embeds": archive.encode_image(inputs["pixel_values"]),
           "text_embeds": archive.encode_text(inputs["input_ids"])}
    worst = max_diff(ran, {k: expected[k] for k in ran})
    # TorchScript's state dict also holds the causal mask (a non-persistent buffer of the eager model);
    # open_clip.load_openai_model does not drop it and fails on its own jit export, so drop it here
    ref = build_model(case, 1)
    assert state.pop("attn_mask").shape == (ref.context_length,) * 2
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in ref.state_dict().items()}
    m = build_model_from_openai_state_dict(state, quick_gelu=True, cast_dtype=None).float().eval()
    return max(worst, max_diff(run_model(m, inputs), expected))
