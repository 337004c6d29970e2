"""The aligned encoder: one tower per modality, projections, L2 norm and a logit scale.

``AlignedModel`` is tether's one model abstraction. Towers are keyed by modality ("image",
"text", ...); any tower that maps its inputs to pooled features of width ``output_dim`` can be
joined. Projections map each into ``embed_dim``, where embeddings are L2-normalised and compared
by ``t * cosine + logit_bias`` with ``t = exp(logit_scale)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import MissingProcessorError, UnknownNameError
from ..modalities import Processor, check_processor, get_modality
from .projection import init_projection as _init_projection, projection
from .tower import set_grad_checkpointing


@dataclass
class AlignedOutput:
    """Normalised embeddings by modality, the multiplier t and the bias."""

    embeds: dict[str, torch.Tensor] = field(default_factory=dict)
    logit_scale: torch.Tensor | None = None  # the multiplier t = exp(stored logit_scale), capped
    logit_bias: torch.Tensor | None = None

    @property
    def image_embeds(self) -> torch.Tensor | None:
        return self.embeds.get("image")

    @property
    def text_embeds(self) -> torch.Tensor | None:
        return self.embeds.get("text")

    def logits_per_image(self) -> torch.Tensor:
        """(N_images, N_texts) scaled similarities, with the bias when there is one."""
        logits = self.logit_scale * self.image_embeds @ self.text_embeds.T
        return logits if self.logit_bias is None else logits + self.logit_bias


class AlignedModel(nn.Module):
    """Inputs of every modality into one L2-normalised embedding space.

    ``towers``: tower modules to use instead of building them from the config (required for
    towers whose kind is "module"). Processors (``model.processors``) are not built here:
    ``tether.create_model`` and ``tether.load`` attach them.
    """

    def __init__(self, config: ModelConfig, towers: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        given = dict(towers or {})
        unknown = sorted(set(given) - set(config.towers))
        if unknown:
            raise ValueError(f"towers given for {unknown} but config.towers has only {sorted(config.towers)}")
        self.towers = nn.ModuleDict()
        for name, tcfg in config.towers.items():
            tower = given[name] if name in given else _build_tower(name, tcfg, config.embed_dim)
            if not isinstance(getattr(tower, "output_dim", None), int):
                raise TypeError(f"the {name} tower must have an integer attribute output_dim (its feature width)")
            self.towers[name] = tower
        self.projections = nn.ModuleDict({
            name: projection(tcfg.projection, self.towers[name].output_dim, config.embed_dim, tcfg.projection_bias)
            for name, tcfg in config.towers.items()})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        # a bound modality's own scale (ImageBind's per-modality heads): see scale()
        self.logit_scales = nn.ParameterDict({m: nn.Parameter(torch.tensor(math.log(float(t))))
                                              for m, t in config.logit_scales.items()})
        bias = config.logit_bias_init
        self.logit_bias = nn.Parameter(torch.tensor(float(bias))) if bias is not None else None
        self.processors: dict[str, Processor] = {}
        for name, proj in self.projections.items():
            _init_projection(proj, self.towers[name].output_dim)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.towers.keys())

    # ---- processors -----------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The text processor (``processors["text"]``), or None."""
        return self.processors.get("text")

    @tokenizer.setter
    def tokenizer(self, value) -> None:
        self._set_processor("text", value)

    @property
    def preprocessor(self):
        """The image processor (``processors["image"]``), or None."""
        return self.processors.get("image")

    @preprocessor.setter
    def preprocessor(self, value) -> None:
        self._set_processor("image", value)

    def _set_processor(self, modality: str, value) -> None:
        if value is None:
            self.processors.pop(modality, None)
        else:
            check_processor(self, modality, value)  # a tokenizer the text tower cannot take fails here, not mid-run
            self.processors[modality] = value

    # ---- tensors in, embeddings out -------------------------------------------------------
    def encode(self, modality: str, inputs: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Processed inputs of ``modality`` (a batch) -> (N, embed_dim).

        Clips: when the tower declares ``input_ndim`` and ``inputs`` has one dim more, (N, S, ...),
        each input is S clips (an audio recording's 2 s windows): every clip is embedded and
        L2-normalised, and the S unit vectors are averaged (ImageBind's rule), then normalised
        again when ``normalize``.
        """
        if modality not in self.towers:
            raise UnknownNameError(f"the model has no {modality!r} tower; its towers: {', '.join(self.towers)}")
        tower = self.towers[modality]
        if inputs.ndim == getattr(tower, "input_ndim", -2) + 1:
            n, clips = inputs.shape[:2]
            per_clip = F.normalize(self.projections[modality](tower(inputs.flatten(0, 1))), dim=-1)
            emb = per_clip.view(n, clips, -1).mean(1)
        else:
            emb = self.projections[modality](tower(inputs))
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Pixel tensors (N, 3, H, W), already preprocessed, -> (N, embed_dim)."""
        return self.encode("image", pixel_values, normalize)

    def encode_text(self, input_ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Token ids (N, L) -> (N, embed_dim)."""
        return self.encode("text", input_ids, normalize)

    def forward(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None, *,
                inputs: Mapping[str, torch.Tensor] | None = None) -> AlignedOutput:
        """Normalised embeddings of every modality given (``inputs`` by name, or the two familiar ones)."""
        batch = dict(inputs or {})
        for name, value in (("image", pixel_values), ("text", input_ids)):
            if value is not None:
                batch[name] = value
        embeds = {name: self.encode(name, value, normalize=True) for name, value in batch.items()}
        return AlignedOutput(embeds, self.scale(*batch), self.logit_bias)

    def scale(self, *modalities: str) -> torch.Tensor:
        """The multiplier t = exp(logit_scale), capped at max_logit_scale.

        Given the modalities of a pair, the first that has a scale of its own gives it: a
        ``logit_scales`` parameter (a bound modality), else its tower config's fixed
        ``logit_scale`` (ImageBind's per-modality values); otherwise the shared one.
        """
        for modality in modalities:
            if modality in self.logit_scales:
                return self.logit_scales[modality].exp().clamp(max=self.config.max_logit_scale)
            fixed = getattr(self.config.towers.get(modality), "logit_scale", None)
            if fixed is not None:  # a fixed value in the tower's config (ImageBind's checkpoints load so)
                return self.logit_scale.new_tensor(fixed).clamp(max=self.config.max_logit_scale)
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Keep the stored log-scales inside [0, log(max)] (CLIP clamps after each step)."""
        for param in (self.logit_scale, *self.logit_scales.values()):
            if param.requires_grad:  # a frozen scale (a bound anchor's, a fixed temperature) is never touched
                param.clamp_(0, math.log(self.config.max_logit_scale))

    # ---- raw inputs in, normalised embeddings out -----------------------------------------
    def embed(self, modality: str, items: Any, batch_size: int | None = None, progress: bool = False,
              **options: Any) -> torch.Tensor:
        """Raw inputs (paths, PIL images, strings ...) or a data source -> (N, embed_dim) float32, L2-normalised.

        Strict: a bad input raises its own error naming it, so rows line up with ``items``
        (``tether.embedding.embed`` skips and counts instead). ``options``: ``workers``,
        ``precision``, ``device`` (see ``tether.embedding.embed``).
        """
        from ..embedding import embed
        if self.processors.get(modality) is None:
            raise MissingProcessorError.for_modality(modality)
        return embed(self, modality, items, batch_size=batch_size, progress=progress, strict=True,
                     **options).vectors

    def embed_images(self, images: Iterable[Any], batch_size: int = 64, progress: bool = False,
                     **options: Any) -> torch.Tensor:
        """PIL images, paths, bytes or arrays -> (N, embed_dim) float32, L2-normalised."""
        return self.embed("image", images, batch_size, progress, **options)

    def embed_texts(self, texts: Sequence[str] | str, batch_size: int = 256, progress: bool = False,
                    **options: Any) -> torch.Tensor:
        """Strings -> (N, embed_dim) float32, L2-normalised."""
        return self.embed("text", [texts] if isinstance(texts, str) else texts, batch_size, progress, **options)

    # ---- housekeeping ---------------------------------------------------------------------
    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        for tower in self.towers.values():
            set_grad_checkpointing(tower, enabled)


def _build_tower(modality: str, config, embed_dim: int) -> nn.Module:
    """The modality's own builder, or an ensemble of its towers (``kind: "ensemble"``, any modality)."""
    from .ensemble_tower import ENSEMBLE_KIND, build_ensemble_tower
    if config.kind == ENSEMBLE_KIND:
        return build_ensemble_tower(modality, config, embed_dim)
    return get_modality(modality).build_tower(config, embed_dim)
