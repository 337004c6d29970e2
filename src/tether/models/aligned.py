"""The aligned dual encoder: two towers, projections, L2 norm and a temperature.

``AlignedModel`` is tether's one model abstraction. Any image tower and any text
tower that map inputs to pooled features of width ``output_dim`` can be joined;
projections map both into ``embed_dim`` where embeddings are L2-normalised and
compared by ``exp(logit_scale) * cosine + logit_bias``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .towers import build_text_tower, build_vision_tower

if TYPE_CHECKING:
    from ..preprocess import ImagePreprocessor
    from ..tokenizer import Tokenizer


@dataclass
class AlignedOutput:
    image_embeds: torch.Tensor | None
    text_embeds: torch.Tensor | None
    logit_scale: torch.Tensor
    logit_bias: torch.Tensor | None

    def logits_per_image(self) -> torch.Tensor:
        """(N_images, N_texts) scaled similarities, with the bias when there is one."""
        logits = self.logit_scale * self.image_embeds @ self.text_embeds.T
        return logits if self.logit_bias is None else logits + self.logit_bias


def projection(kind: str, in_dim: int, out_dim: int, bias: bool) -> nn.Module:
    """Map a tower's pooled features into the shared space."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim, bias=bias)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim, bias=bias), nn.GELU(), nn.Linear(in_dim, out_dim, bias=bias))
    if kind == "none":
        if in_dim != out_dim:
            raise ValueError(f"projection 'none' needs tower width {in_dim} == embed_dim {out_dim}")
        return nn.Identity()
    raise ValueError(f"unknown projection {kind!r}: expected 'linear', 'mlp' or 'none'")


class AlignedModel(nn.Module):
    """Images and texts into one L2-normalised embedding space."""

    def __init__(self, config: ModelConfig, visual: nn.Module | None = None,
                 text: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        self.visual = visual if visual is not None else build_vision_tower(config.vision, config.embed_dim)
        self.text = text if text is not None else build_text_tower(config.text)
        for name, tower in (("visual", self.visual), ("text", self.text)):
            if not isinstance(getattr(tower, "output_dim", None), int):
                raise TypeError(f"the {name} tower must have an integer attribute output_dim (its feature width)")
        self.image_proj = projection(config.image_proj, self.visual.output_dim, config.embed_dim,
                                     config.image_proj_bias)
        self.text_proj = projection(config.text_proj, self.text.output_dim, config.embed_dim,
                                    config.text_proj_bias)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        bias = config.logit_bias_init
        self.logit_bias = nn.Parameter(torch.tensor(float(bias))) if bias is not None else None
        self.tokenizer: Tokenizer | None = None
        self.preprocessor: ImagePreprocessor | None = None
        _init_projection(self.image_proj, self.visual.output_dim)
        _init_projection(self.text_proj, self.text.output_dim)

    # ---- tensors in, embeddings out -------------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Pixel tensors (N, 3, H, W), already preprocessed, -> (N, embed_dim)."""
        emb = self.image_proj(self.visual(pixel_values))
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_text(self, input_ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Token ids (N, L) -> (N, embed_dim)."""
        emb = self.text_proj(self.text(input_ids))
        return F.normalize(emb, dim=-1) if normalize else emb

    def forward(self, pixel_values: torch.Tensor | None = None,
                input_ids: torch.Tensor | None = None) -> AlignedOutput:
        image = self.encode_image(pixel_values, normalize=True) if pixel_values is not None else None
        text = self.encode_text(input_ids, normalize=True) if input_ids is not None else None
        return AlignedOutput(image, text, self.scale(), self.logit_bias)

    def scale(self) -> torch.Tensor:
        """The temperature multiplier t = exp(logit_scale), capped at max_logit_scale."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Keep the stored log-scale inside [0, log(max)] (CLIP clamps after each step)."""
        self.logit_scale.clamp_(0, math.log(self.config.max_logit_scale))

    # ---- files and strings in, normalised embeddings out ---------------------------
    @torch.inference_mode()
    def embed_images(self, images: Iterable[Any], batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """PIL images, paths or bytes -> (N, embed_dim) float32, L2-normalised."""
        if self.preprocessor is None:
            raise RuntimeError("this model has no image preprocessor; set model.preprocessor")
        return self._embed(list(images), batch_size, progress, "images",
                           lambda chunk: self.encode_image(self._to_device(self.preprocessor.batch(chunk)), True))

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str] | str, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        """Strings -> (N, embed_dim) float32, L2-normalised."""
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer; set model.tokenizer")
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self._embed(texts, batch_size, progress, "texts",
                           lambda chunk: self.encode_text(self._to_device(self.tokenizer(chunk)), True))

    def _embed(self, items: list, batch_size: int, progress: bool, what: str, fn) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            chunks = range(0, len(items), batch_size)
            if progress:
                from tqdm.auto import tqdm
                chunks = tqdm(chunks, desc=f"embedding {what}", unit="batch")
            out = [fn(items[i:i + batch_size]).float().cpu() for i in chunks]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.config.embed_dim)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        p = next(self.parameters())
        return t.to(p.device, dtype=p.dtype if t.is_floating_point() else t.dtype)

    # ---- housekeeping ------------------------------------------------------------------
    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        for tower in (self.visual, self.text):
            if hasattr(tower, "set_grad_checkpointing"):
                tower.set_grad_checkpointing(enabled)

    def save(self, path: str | Path, format: str = "tether") -> Path:
        """Write a checkpoint directory: "tether" (default), "hf" or "open_clip"."""
        from ..checkpoints import save_model
        return save_model(self, path, format=format)


def _init_projection(proj: nn.Module, width: int) -> None:
    for m in proj.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=width**-0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
