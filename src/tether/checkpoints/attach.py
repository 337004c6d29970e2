"""Give a freshly loaded model its image preprocessor and tokenizer."""
from __future__ import annotations

from pathlib import Path


def attach_processors(model, tokenizer_dir: Path | None = None, tokenizer=None) -> None:
    """Preprocessor from ``config.preprocess``; tokenizer from a directory or object.

    A tokenizer directory holding tether's tokenizer_config.json is read with
    ``Tokenizer.load``; otherwise it is treated as a Hugging Face directory.
    """
    from ..preprocess import ImagePreprocessor, PreprocessConfig
    from ..tokenizer import Tokenizer

    cfg = model.config
    pre = dict(cfg.preprocess)
    pre.setdefault("image_size", cfg.vision.image_size)
    model.preprocessor = ImagePreprocessor(PreprocessConfig.from_dict(pre))
    if tokenizer is not None:
        model.tokenizer = tokenizer
    elif tokenizer_dir is not None:
        if _is_tether_tokenizer(tokenizer_dir):
            model.tokenizer = Tokenizer.load(tokenizer_dir)
        else:
            model.tokenizer = Tokenizer.from_hf_dir(tokenizer_dir, context_length=cfg.text.context_length)


def _is_tether_tokenizer(directory: Path) -> bool:
    import json

    from ..tokenizer import CONFIG_FORMAT
    try:
        data = json.loads((directory / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == CONFIG_FORMAT
