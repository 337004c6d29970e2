"""Tiny random OpenCLIP models for the fixtures: registered configs, weights perturbed away from
their init, deterministic inputs, and the outputs recorded in expected.safetensors."""
from __future__ import annotations

import copy
import math

import open_clip
import torch
from open_clip import factory as oc_factory
from open_clip.model import convert_weights_to_lp
from torch import nn

from open_clip_fixture_cases import CASES

N_ROWS = 3


def model_name(case: str) -> str:
    return f"tether-fixture-{case}"


def register_configs() -> None:
    for case, spec in CASES.items():
        oc_factory._MODEL_CONFIGS[model_name(case)] = copy.deepcopy(spec["cfg"])


def build_model(case: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name(case), pretrained=None, device="cpu", precision="fp32")
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
    """The largest abs difference, in units of each tensor's largest magnitude (at least 1): float32
    rounding differs by CPU (BLAS kernels), and scales with the values."""
    assert set(a) == set(b), (sorted(a), sorted(b))
    worst = 0.0
    for k in a:
        assert a[k].shape == b[k].shape, (k, a[k].shape, b[k].shape)
        scale = max(1.0, b[k].abs().max().item())
        worst = max(worst, (a[k] - b[k]).abs().max().item() / scale)
    return worst


def fp16_round(model: nn.Module) -> None:
    """Round exactly the tensors OpenAI keeps in fp16 to fp16 precision (values stay fp32)."""
    convert_weights_to_lp(model, torch.float16)
    model.float()
