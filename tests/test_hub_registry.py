"""The shipped registry (src/tether/hub/pretrained.json) against what its publishers publish.

Each entry's preprocessing and tokenizer are checked against the publisher's own settings: the
preprocessor_config.json files OpenAI and Google ship with their transformers checkpoints (read here
through tether's own Hugging Face reader), and OpenCLIP's pretrained.py for LAION's models
(``_pcfg``: OpenAI's mean/std, bicubic, shortest side + centre crop; ViT-L-14 laion2b_s32b_b82k
overrides mean/std with INCEPTION_MEAN/STD = 0.5). The architectures must agree with tether's
shipped configs of the same name.
"""
from __future__ import annotations

import json

import pytest

from tether.checkpoints.hf import _preprocess_from_hf
from tether.hub import PretrainedEntry, pretrained_registry
from tether.hub.download import weight_candidates
from tether.models import get_model_config, list_models
from tether.preprocess import PreprocessConfig

REGISTRY = pretrained_registry()
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]

# preprocessor_config.json as published in openai/clip-vit-* (CLIPFeatureExtractor, 2021)
OPENAI_HF = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
             "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": OPENAI_MEAN, "image_std": OPENAI_STD,
             "resample": 3, "size": 224}
# preprocessor_config.json as published in google/siglip-base-patch16-224
SIGLIP_HF = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
             "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5],
             "processor_class": "SiglipProcessor", "resample": 3, "rescale_factor": 1 / 255,
             "size": {"height": 224, "width": 224}}
# open_clip/pretrained.py: _pcfg defaults, and the one LAION entry that overrides them
OPEN_CLIP_PCFG = {"image_size": 224, "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
                  "resize_mode": "shortest"}
OPEN_CLIP_INCEPTION = {**OPEN_CLIP_PCFG, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

PUBLISHED = {  # name -> (publisher's preprocessing, tokenizer kind, context length)
    "ViT-B-32/openai": ("hf", OPENAI_HF, "clip", 77),
    "ViT-B-16/openai": ("hf", OPENAI_HF, "clip", 77),
    "ViT-L-14/openai": ("hf", OPENAI_HF, "clip", 77),
    "SigLIP-B-16/webli": ("hf", SIGLIP_HF, "siglip", 64),
    "ViT-B-32/laion2b_s34b_b79k": ("open_clip", OPEN_CLIP_PCFG, "clip", 77),
    "ViT-B-16/laion2b_s34b_b88k": ("open_clip", OPEN_CLIP_PCFG, "clip", 77),
    "ViT-L-14/laion2b_s32b_b82k": ("open_clip", OPEN_CLIP_INCEPTION, "clip", 77),
    "ViT-B-32/datacomp_xl_s13b_b90k": ("open_clip", OPEN_CLIP_PCFG, "clip", 77),
    "ViT-B-16/datacomp_xl_s13b_b90k": ("open_clip", OPEN_CLIP_PCFG, "clip", 77),
    "ViT-L-14/datacomp_xl_s13b_b90k": ("open_clip", OPEN_CLIP_PCFG, "clip", 77),
}


def test_every_entry_has_a_publisher_check():
    assert set(REGISTRY) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preprocessing_and_tokenizer_match_the_publisher(name, tmp_path):
    entry = REGISTRY[name]
    source, published, kind, context = PUBLISHED[name]
    if source == "hf":
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(published))
        family = "siglip" if kind == "siglip" else "clip"
        want = _preprocess_from_hf(tmp_path, family, 224)
    else:
        want = PreprocessConfig(**published).to_dict()
    assert PreprocessConfig(**entry.preprocess).to_dict() == want
    assert entry.tokenizer == {"kind": kind, "context_length": context}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entries_fit_tethers_architecture_of_the_same_name(name):
    entry: PretrainedEntry = REGISTRY[name]
    assert entry.architecture in list_models()
    cfg = get_model_config(entry.architecture)
    assert entry.preprocess["image_size"] == cfg.towers["image"].image_size
    assert entry.tokenizer["context_length"] == cfg.towers["text"].context_length
    assert (entry.tokenizer["kind"] == "siglip") == (cfg.family == "siglip")
    assert set(entry.files) <= set(weight_candidates(entry.format)), "files the format's reader would not pick"
    assert entry.files[0].endswith(".safetensors")
    assert entry.license and entry.accuracy_source and entry.publisher
    assert 0.5 < entry.imagenet_zeroshot_top1 < 0.9


def test_open_clip_entries_say_which_activation():
    """Without open_clip_config.json the activation is not in the weights: LAION's models use GELU."""
    for entry in REGISTRY.values():
        if entry.format == "open_clip":
            assert entry.load_options == {"quick_gelu": False}, entry.name


def test_registry_entries_are_checked():
    from tether.checkpoints import CheckpointError
    good = {"hub_id": "acme/x", "format": "hf", "files": ["model.safetensors"]}
    for bad, match in ((dict(good, format="onnx"), "format"), (dict(good, hub_id="no-slash"), "hub_id"),
                       (dict(good, files=[]), "files"), (dict(good, sha256={"model.safetensors": "xyz"}), "64 hex"),
                       (dict(good, colour="red"), "unknown key")):
        with pytest.raises(CheckpointError, match=match):
            PretrainedEntry.from_dict("ViT-B-32/x", bad)
    with pytest.raises(CheckpointError, match="ARCH/TAG"):
        PretrainedEntry.from_dict("no-tag", good)
