"""``tether fetch``: download published models into the Hugging Face cache (for offline use later)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fetch", help="download published models into the Hugging Face cache and verify them",
        description=(
            "Download what tether needs of each model (configs, tokenizer, one weights file, safetensors\n"
            "first) into huggingface_hub's cache (HF_HUB_CACHE, else HF_HOME/hub, else\n"
            "~/.cache/huggingface/hub) and verify every file's checksum. With HF_HUB_OFFLINE=1 it only\n"
            "checks that the cache holds them. To prepare an air-gapped machine: fetch on a connected one,\n"
            "copy the cache directory over, and set HF_HUB_OFFLINE=1 there (docs/pretrained.md).\n\n"
            "Examples:\n"
            "  tether fetch ViT-B-32/openai SigLIP-B-16/webli\n"
            "  tether fetch hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K\n"
            "  HF_HOME=/mnt/usb/hf tether fetch openai/clip-vit-large-patch14@main"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", help="published names (tether models --pretrained) or Hub ids")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.hub import fetch_name, hf_cache_dir
    for name in args.names:
        fetched = fetch_name(name)
        files = ", ".join(p.name for p in fetched.files)
        print(f"{name}: {fetched.repo_id}@{fetched.revision} (commit {fetched.commit}, {fetched.format} format) "
              f"verified: {files}")
    print(f"cache: {hf_cache_dir()}")
    return 0
