"""Published models by name, from the Hugging Face Hub: names, the registry, downloads, checksums.

    tether.load("ViT-B-32/openai")                       # registry (pretrained.json), OpenCLIP-style name
    tether.load("openai/clip-vit-base-patch32@main")     # any CLIP/SigLIP repository in transformers' layout
    tether.load("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")   # OpenCLIP's hub layout

Downloads go into huggingface_hub's cache once and are verified before loading; with
``HF_HUB_OFFLINE=1`` only the cache is read. See docs/pretrained.md.
"""
from __future__ import annotations

from .download import Fetched, fetch, hf_cache_dir, offline_mode
from .load import apply_entry, fetch_name, load_pretrained
from .names import (ModelName, PretrainedEntry, parse_name, pretrained_registry, pretrained_tags,
                    random_weights_refusal, register_pretrained)

__all__ = ["Fetched", "ModelName", "PretrainedEntry", "apply_entry", "fetch", "fetch_name", "hf_cache_dir",
           "load_pretrained", "offline_mode", "parse_name", "pretrained_registry", "pretrained_tags",
           "random_weights_refusal", "register_pretrained"]
