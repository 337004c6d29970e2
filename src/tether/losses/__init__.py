"""Contrastive and distillation losses for aligned dual encoders.

Contrastive (``chunk_size=None``: plain, N x N in memory; an int or ``"auto"``: exact tiled
computation in O(N d + chunk^2) memory, see docs/losses.md):

- :func:`clip_loss`     symmetric InfoNCE (CLIP)
- :func:`infonce_rows`  per-row InfoNCE of queries against a larger key set (distributed CLIP)
- :func:`siglip_loss`   pairwise sigmoid loss (SigLIP)
- :func:`siglip_block`  summed sigmoid loss of one (images x texts) block, with or without
                        positives (distributed SigLIP)

Distillation: :func:`cosine_distill_loss`, :func:`l2_distill_loss`, :func:`similarity_kl_loss`.
"""
from ._checks import DEFAULT_CHUNK_SIZE
from .distill import DISTILL_LOSSES, cosine_distill_loss, distill_loss, l2_distill_loss, similarity_kl_loss
from .infonce import clip_loss, infonce_rows
from .siglip import siglip_block, siglip_loss

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "clip_loss",
    "infonce_rows",
    "siglip_loss",
    "siglip_block",
    "DISTILL_LOSSES",
    "distill_loss",
    "cosine_distill_loss",
    "l2_distill_loss",
    "similarity_kl_loss",
]
