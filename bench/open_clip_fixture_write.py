"""Write one OpenCLIP fixture case: weights in the case's on-disk layout, the hub config,
inputs, expected outputs, meta.json and keys.txt (see bench/open_clip_fixtures.py)."""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import open_clip
import torch
from open_clip.model import convert_weights_to_lp
from safetensors.torch import save_file
from torch import nn

from open_clip_fixture_cases import CASES, HUB_PREPROCESS
from open_clip_fixture_models import build_model, fp16_round, make_inputs, model_name, perturb, run_model


def write_keys(path: Path, sd: dict) -> None:
    lines = [f"{k} {list(v.shape)} {str(v.dtype).replace('torch.', '')}" for k, v in sd.items()]
    path.write_text("\n".join(lines) + "\n")


def generate(case: str, out_root: Path) -> dict:
    """Write ``out_root/<case>/`` from scratch (stale files removed); -> its meta.json content."""
    spec = CASES[case]
    d = out_root / case
    d.mkdir(parents=True, exist_ok=True)
    for stale in d.iterdir():
        stale.unlink()
    gen = torch.Generator().manual_seed(spec["seed"])

    model = build_model(case, spec["seed"])
    perturb(model, gen)
    if spec["save"] in ("openai", "openai_jit"):
        fp16_round(model)
    inputs, input_info = make_inputs(case, spec, gen)
    expected = run_model(model, inputs)

    on_disk, meta_weights = save_weights(case, model, d)
    write_keys(d / "keys.txt", on_disk)
    save_file(inputs, str(d / "inputs.safetensors"))
    save_file(expected, str(d / "expected.safetensors"))
    meta = case_meta(case, spec, model, on_disk, meta_weights, inputs, input_info, expected)
    (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def save_weights(case: str, model: nn.Module, d: Path) -> tuple[dict, dict]:
    """Save the model's weights in the case's on-disk layout; -> (state dict as saved, meta["weights"])."""
    spec = CASES[case]
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
    elif spec["save"] == "openai_jit":
        on_disk = save_jit_archive(case, sd, d / "model.pt")
        meta_weights = {"file": "model.pt",
                        "format": "TorchScript archive: torch.jit.save(open_clip.create_model(cfg, pretrained=..., "
                                  "precision='fp16', jit=True))",
                        "config_file": None, "layout": "openai (== openclip-root key names)",
                        "key_prefix": "", "wrapper": None,
                        "dtypes": {"float16": sorted(k for k, v in on_disk.items() if v.dtype == torch.float16),
                                   "float32": sorted(k for k, v in on_disk.items() if v.dtype == torch.float32)}}
    else:
        raise ValueError(spec["save"])
    return on_disk, meta_weights


def save_jit_archive(case: str, sd: dict, path: Path) -> dict:
    """OpenCLIP's own jit export of ``sd``: create_model(jit=True) scripts the fp16-cast model; save it."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save(sd, weights)
        scripted = open_clip.create_model(model_name(case), pretrained=str(weights), precision="fp16",
                                          device="cpu", jit=True)
    # create_model returns the eager model with a warning when scripting fails: refuse that
    assert isinstance(scripted, torch.jit.ScriptModule), type(scripted)
    torch.jit.save(scripted, str(path))
    return {k: v.detach().clone().contiguous() for k, v in torch.jit.load(str(path)).state_dict().items()}


def case_meta(case: str, spec: dict, model: nn.Module, on_disk: dict, meta_weights: dict, inputs: dict,
              input_info: dict, expected: dict) -> dict:
    """The content of meta.json."""
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
    return meta
