"""A small convolutional tower for spectrograms (audio kind "cnn").

Patch transformers learn slowly from a few thousand short recordings: they must discover
locality that a convolution has built in. This tower is the classic small keyword-spotting
network: ``layers`` blocks of a 3x3 convolution, GroupNorm (not BatchNorm: an embedding never
depends on the rest of its batch), GELU and 2x2 max pooling, the channels doubling up to
``width``; then the mean over frequency, the max and mean over time (a word may sit anywhere in
its clip), a linear layer and a LayerNorm. It reads the same (N, C, mel bins, frames) clips as
the audio patch transformer, so processors and clip averaging are unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from .tower import Tower

__all__ = ["SpectrogramCNN"]


class SpectrogramCNN(Tower, nn.Module):
    """(N, in_channels, H, W) -> (N, width) pooled features."""

    uses_every_parameter = True
    input_ndim = 4

    def __init__(self, in_channels: int = 1, width: int = 128, layers: int = 4) -> None:
        super().__init__()
        if layers < 1 or width < 8:
            raise ValueError(f"SpectrogramCNN: expected layers >= 1 and width >= 8, got {layers}, {width}")
        stages, last = [], in_channels
        for i in range(layers):
            size = max(8, width // 2 ** (layers - 1 - i))
            stages += [nn.Conv2d(last, size, 3, padding=1, bias=False), nn.GroupNorm(min(8, size // 4), size),
                       nn.GELU(), nn.MaxPool2d(2, ceil_mode=True)]
            last = size
        self.features = nn.Sequential(*stages)
        self.head = nn.Linear(2 * last, width)
        self.ln_post = nn.LayerNorm(width)
        self.in_channels, self.output_dim = in_channels, width

    def forward(self, spectrograms: torch.Tensor) -> torch.Tensor:
        if spectrograms.dim() != 4 or spectrograms.shape[1] != self.in_channels:
            raise ValueError(f"the spectrogram CNN takes (batch, {self.in_channels}, bins, frames) tensors, got "
                             f"shape {tuple(spectrograms.shape)}")
        feats = self.features(spectrograms).mean(dim=2)  # (N, C, frames'): frequency averaged
        pooled = torch.cat([feats.amax(dim=-1), feats.mean(dim=-1)], dim=-1)
        return self.ln_post(self.head(pooled))
