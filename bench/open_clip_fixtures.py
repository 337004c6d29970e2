"""Generate reference fixtures from OpenCLIP itself (tiny random-initialised models).

OpenCLIP (``open_clip_torch``) needs torchvision, which cannot live beside the main
environment's CPU torch, so this script runs in its own virtual environment:

    python -m venv bench/.venv-openclip
    bench/.venv-openclip/bin/pip install torch==2.14.1 torchvision==0.29.1 open_clip_torch safetensors
    bench/.venv-openclip/bin/python bench/open_clip_fixtures.py            # writes tests/fixtures/open_clip/
    bench/.venv-openclip/bin/python bench/open_clip_fixtures.py --check    # only re-verify what is on disk

(run from the repository root; ``--out DIR`` writes elsewhere). It runs on CPU in a few
seconds, is deterministic (fixed seeds per case) and never touches the network.

What it writes
==============
For every case a folder ``tests/fixtures/open_clip/<case>/`` holding:

* the weights, in the exact layout a user would have on disk (see the table below);
* ``open_clip_config.json`` for the "hub directory" cases, in OpenCLIP's hub format
  ``{"model_cfg": {...}, "preprocess_cfg": {"mean", "std", "interpolation", "resize_mode"}}``
  (what ``open_clip.push_to_hf_hub`` writes and ``create_model('local-dir:...')`` reads);
* ``inputs.safetensors``: ``pixel_values`` float32 [3, 3, H, W] (already normalised, i.e. what
  the model takes; preprocessing is NOT covered) and ``input_ids`` int64 [3, context_length];
* ``expected.safetensors`` (all float32, computed in eval mode under ``torch.no_grad``):
  ``image_embeds`` = ``model.encode_image(pixel_values)`` (unnormalised),
  ``text_embeds`` = ``model.encode_text(input_ids)`` (unnormalised),
  ``logit_scale`` = the raw parameter (NOT exp'd; shape [] or [1] as stored),
  ``logit_bias`` (only where the model has one), and
  ``logits_per_image`` = ``model.get_logits(pixel_values, input_ids)[0]``
  (= exp(logit_scale) * norm(img) @ norm(txt).T [+ logit_bias]);
* ``meta.json``: config, options, versions, weights file / layout, input token ids, description;
* ``keys.txt``: every key of the saved state dict exactly as stored, one per line:
  ``<key> <shape as [a, b]> <dtype>``.

Weights are NOT left at OpenCLIP's init: every LayerNorm/BatchNorm weight, every bias,
BatchNorm running stats, LayerScale gammas, logit_scale and logit_bias are randomly perturbed
(OpenCLIP initialises many of these to 0/1 and ModifiedResNet zero-inits every ``bn3.weight``,
which would hide a converter that drops them). ``logit_scale`` is therefore NOT log(1/0.07).

Each case is verified inside the script: the saved file is re-loaded by OpenCLIP's own loaders
into a fresh model and must reproduce the expected outputs to a max abs diff below 1e-6 times the
tensor's largest magnitude (at least 1): float32 rounding differs between CPUs.

Cases
=====
============== =============== ================================= ==================================
case           model class     weights on disk                    loader used for the check
============== =============== ================================= ==================================
vit_root       CLIP            model.safetensors + hub config     create_model('local-dir:<case>')
vit_gelu_      CLIP            model.pt: torch.save({"state_dict": create_model(cfg, pretrained=model.pt)
state_dict                     {"module."+k: v}, "epoch": 1})     (load_checkpoint strips module.)
vit_text_      CustomTextCLIP  model.safetensors + hub config     create_model('local-dir:<case>')
layout
resnet         CLIP (Modified  model.safetensors + hub config     create_model('local-dir:<case>')
               ResNet)
openai_style   CLIP            model.pt: plain torch state dict,  open_clip.load_openai_model(path)
                               OpenAI dtypes (fp16 + fp32), no    and build_model_from_openai_
                               config at all                      state_dict (infers arch)
openai_jit     CLIP            model.pt: TorchScript archive as   the archive's own code (fp32) and
                               OpenAI released them:              build_model_from_openai_state_dict
                               torch.jit.save(create_model(cfg,   on its state dict (load_openai_model
                               precision='fp16', jit=True))       fails: it keeps the attn_mask buffer
                                                                  TorchScript stores)
vit_options    CLIP            model.safetensors + hub config     create_model('local-dir:<case>')
vit_attn_pool  CustomTextCLIP  model.safetensors + hub config     create_model('local-dir:<case>')
vit_custom_    CLIP            model.safetensors + hub config     create_model('local-dir:<case>')
block
============== =============== ================================= ==================================

Code
====
This file is the command line; the rest lives beside it in bench/:

* ``open_clip_fixture_cases.py``: the cases (OpenCLIP configs, seeds, save formats) and a reference
  of open_clip 3.3.0's key layouts and forward semantics that a converter must reproduce;
* ``open_clip_fixture_models.py``: building, perturbing and running the OpenCLIP models, the inputs;
* ``open_clip_fixture_write.py``: writing one case's folder (weights, config, inputs, expected, meta);
* ``open_clip_fixture_check.py``: re-loading a case with OpenCLIP's own loaders and comparing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from open_clip_fixture_cases import CASES
from open_clip_fixture_check import check
from open_clip_fixture_models import register_configs
from open_clip_fixture_write import generate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "open_clip"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="only verify existing fixtures")
    ap.add_argument("cases", nargs="*", default=list(CASES))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    register_configs()
    import logging
    logging.disable(logging.WARNING)

    total = 0
    for case in args.cases:
        if not args.check:
            generate(case, args.out)
        res = check(case, args.out)
        size = sum(f.stat().st_size for f in (args.out / case).iterdir())
        total += size
        print(f"{case:22s} {size / 1024:8.1f} KiB  " + "  ".join(f"{n}: {v:.2e}" for n, v in res))
    print(f"total {total / 1024 / 1024:.2f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
