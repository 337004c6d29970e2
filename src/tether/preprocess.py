"""Image loading and preprocessing for tether's image towers.

Pretrained CLIP/SigLIP weights only give their published accuracy when images are
prepared exactly the way they were during training, so every step here reproduces a
reference implementation's rounding: OpenAI CLIP's torchvision pipeline
(``Resize(S, BICUBIC)`` -> ``CenterCrop(S)`` -> ``ToTensor`` -> ``Normalize``) and
SigLIP's Hugging Face processor (squash-resize to ``S x S``).  torchvision itself is not
a dependency; the few functions needed are reimplemented on Pillow + torch.

Loading is deliberately strict: a bad file raises :class:`ImageDecodeError` naming the
file at load time, instead of a confusing failure deep inside a data-loader worker.
"""

from __future__ import annotations

import io
import math
import operator
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import ConfigError, ImageDecodeError

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "SIGLIP_MEAN",
    "SIGLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZATION_PRESETS",
    "ImageDecodeError",
    "ImageInput",
    "load_image",
    "PreprocessConfig",
    "ImagePreprocessor",
    "resize_shortest",
    "center_crop",
    "to_tensor",
    "normalize",
    "random_resized_crop_params",
]

Triple = tuple[float, float, float]

OPENAI_CLIP_MEAN: Triple = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: Triple = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN: Triple = (0.5, 0.5, 0.5)
SIGLIP_STD: Triple = (0.5, 0.5, 0.5)
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)

NORMALIZATION_PRESETS: dict[str, tuple[Triple, Triple]] = {
    "openai": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "siglip": (SIGLIP_MEAN, SIGLIP_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}

_INTERPOLATIONS: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}
_RESIZE_MODES = ("shortest", "squash")

ImageInput = Union[str, Path, bytes, bytearray, memoryview, Image.Image, np.ndarray]


# --------------------------------------------------------------------------- loading


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """Map 16/32-bit integer and float greyscale to 8-bit 'L' without clipping.

    Pillow's own ``convert('RGB')`` clips 16-bit values at 255, turning almost every
    16-bit PNG/TIFF white. Integer modes are treated as 16-bit data (how Pillow
    delivers 16-bit files) and scaled by 255/65535; float images are assumed to be in
    [0, 1] when they fit, otherwise in [0, 255], and are clipped to that range.
    """
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        scale = 255.0 if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else 1.0
        arr = np.nan_to_num(arr * scale, nan=0.0, posinf=255.0, neginf=0.0)
    else:
        arr = arr.astype(np.float64) * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency onto white.

    White (not black, Pillow's default when dropping alpha) matches what Hugging Face's
    processors do and keeps transparent logos/icons legible.
    """
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_bit_depth_to_l(img)
    if img.mode == "La":  # premultiplied; Pillow only converts it via LA
        img = img.convert("LA")
    has_alpha = "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


def _from_array(array: np.ndarray, label: str) -> Image.Image:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 pixels as a PIL image."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageDecodeError(label, f"expected uint8 pixels of shape (H, W) or (H, W, 1|3|4), "
                                      f"found {array.dtype} {tuple(array.shape)}")
    return Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)


def _open(source: ImageInput, label: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(source)))
    path = Path(source)
    if not path.exists():
        raise ImageDecodeError(label, "file not found")
    if path.is_dir():
        raise ImageDecodeError(label, "path is a directory")
    return Image.open(path)


def load_image(source: ImageInput, *, name: str | None = None) -> Image.Image:
    """Load ``source`` as a fully decoded RGB image, upright per its EXIF orientation.

    ``source`` may be a path, encoded bytes, a PIL image or a uint8 array (H, W[, C]). ``name`` is the label used
    in errors (default: the path, ``<bytes>``, or the PIL image's filename). Decoding is forced
    here so truncated files fail now; note this is defeated if some other code sets
    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` process-wide.
    """
    if isinstance(source, (str, Path)):
        label = name or str(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
    elif isinstance(source, Image.Image):
        label = name or getattr(source, "filename", "") or "<PIL.Image>"
    elif isinstance(source, np.ndarray):
        label = name or "<array>"
    else:
        raise TypeError(
            f"load_image expects a path, bytes, a PIL.Image.Image or a uint8 array, got {type(source).__name__}"
        )
    try:
        img = _open(source, label)
        try:
            img.load()
            try:
                upright = ImageOps.exif_transpose(img)
            except Exception as exc:  # malformed EXIF should not cost us the pixels
                warnings.warn(f"ignoring unreadable EXIF in {label!r}: {_describe(exc)}")
                upright = img
            return _to_rgb(upright)
        finally:
            if img is not source:
                img.close()
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow plugins raise many types (OSError, SyntaxError, struct.error...)
        raise ImageDecodeError(label, _describe(exc)) from exc


# ------------------------------------------------------------------ geometric ops


def _resample(interpolation: str) -> Image.Resampling:
    try:
        return _INTERPOLATIONS[interpolation]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {interpolation!r}; expected one of {sorted(_INTERPOLATIONS)}"
        ) from None


def resize_shortest(img: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    """Resize so the short side is ``size``, like ``torchvision.transforms.Resize(size)``.

    The long side is ``int(size * long / short)`` (truncated, as torchvision does), so
    crop offsets downstream line up with the reference pipeline pixel for pixel.
    """
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((new_w, new_h), resample=_resample(interpolation))


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to ``size x size`` with torchvision's rounding.

    Offsets are ``int(round((dim - size) / 2))`` (Python's round-half-even); images
    smaller than ``size`` are first zero-padded, the odd pixel going right/bottom.
    """
    w, h = img.size
    if w < size or h < size:
        pad_left, pad_top = max(size - w, 0) // 2, max(size - h, 0) // 2
        canvas = Image.new(img.mode, (max(w, size), max(h, size)), 0)
        canvas.paste(img, (pad_left, pad_top))
        img, (w, h) = canvas, canvas.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """HWC uint8 PIL image -> CHW float32 tensor in [0, 1] (``ToTensor`` semantics)."""
    arr = np.array(img, dtype=np.uint8, copy=True)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div(255.0)


def normalize(t: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(t - mean) / std`` on ``(..., C, H, W)``; returns a new tensor."""
    m = torch.as_tensor(mean, dtype=t.dtype, device=t.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=t.dtype, device=t.device).view(-1, 1, 1)
    return (t - m) / s


def random_resized_crop_params(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """Sample a crop box ``(top, left, h, w)`` with torchvision's RandomResizedCrop rule.

    Ten tries of (area fraction ~ U(scale), aspect ~ logU(ratio)); if none fits, a
    centre crop whose aspect is clamped into ``ratio``. All randomness comes from
    ``generator`` (torch's global RNG when None, like torchvision).
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))  # float32 like torchvision, same draws per seed
    log_lo, log_hi = float(log_ratio[0]), float(log_ratio[1])
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_lo, log_hi, generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


# ------------------------------------------------------------------------ config


@dataclass
class PreprocessConfig:
    """How to turn an image into model input; serialisable next to a checkpoint."""

    image_size: int = 224
    mean: Triple = OPENAI_CLIP_MEAN
    std: Triple = OPENAI_CLIP_STD
    resize_mode: str = "shortest"  # "shortest": resize short side + centre crop; "squash"
    interpolation: str = "bicubic"  # "bicubic" | "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool):
            raise ConfigError(f"image_size must be an int, got {self.image_size!r}")
        try:
            self.image_size = operator.index(self.image_size)
        except TypeError:
            raise ConfigError(f"image_size must be an int, got {self.image_size!r}") from None
        if self.image_size <= 0:
            raise ConfigError(f"image_size must be positive, got {self.image_size}")
        self.mean = tuple(float(x) for x in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(x) for x in self.std)  # type: ignore[assignment]
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("mean and std must have exactly 3 values (R, G, B)")
        if any(not s > 0 for s in self.std):
            raise ConfigError(f"std values must be > 0, got {self.std}")
        if self.resize_mode not in _RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {_RESIZE_MODES}, got {self.resize_mode!r}")
        _resample(self.interpolation)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (tuples become lists)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected so typos don't vanish."""
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ConfigError(f"unknown PreprocessConfig key {key!r}; expected {sorted(known)}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, image_size: int) -> PreprocessConfig:
        """Reference settings: 'openai'/'clip' (shortest+crop) or 'siglip' (squash)."""
        key = name.lower()
        if key in ("openai", "clip"):
            return cls(image_size, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "shortest", "bicubic")
        if key == "siglip":
            return cls(image_size, SIGLIP_MEAN, SIGLIP_STD, "squash", "bicubic")
        raise ConfigError(f"unknown preprocessing preset {name!r}; expected 'openai', 'clip' or 'siglip'")


# ------------------------------------------------------------------ preprocessor


class ImagePreprocessor:
    """Eval and train transforms producing normalised ``(3, S, S)`` float tensors."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"ImagePreprocessor({self.config!r})"

    def resize_and_crop(self, img: Image.Image) -> Image.Image:
        """The geometric part of the eval transform, on an RGB PIL image."""
        cfg = self.config
        size = cfg.image_size
        if cfg.resize_mode == "squash":
            return img.resize((size, size), resample=_resample(cfg.interpolation))
        return center_crop(resize_shortest(img, size, cfg.interpolation), size)

    def _finish(self, img: Image.Image) -> torch.Tensor:
        return normalize(to_tensor(img), self.config.mean, self.config.std)

    def __call__(self, image: ImageInput) -> torch.Tensor:
        """Deterministic eval transform: load, resize, centre crop, tensor, normalise."""
        return self._finish(self.resize_and_crop(load_image(image)))

    def batch(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Apply the eval transform to each input (paths/bytes/PIL mixed) -> ``(N, 3, S, S)``."""
        if isinstance(images, (str, Path, bytes, bytearray, Image.Image)):
            raise TypeError("batch() takes a sequence of images; call the preprocessor for one image")
        tensors = [self(img) for img in images]
        if not tensors:
            raise ValueError("batch() needs at least one image")
        return torch.stack(tensors)

    def collate(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        """Rows from ``__call__`` -> one ``(N, 3, S, S)`` batch."""
        return torch.stack(list(rows))

    def train_transform(
        self,
        scale: tuple[float, float] = (0.9, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ) -> Callable[[ImageInput], torch.Tensor]:
        """Random-resized-crop augmentation, reproducible when given a seeded generator.

        The returned callable draws from ``generator`` on every call, so two transforms
        built with identically seeded generators yield identical sequences of crops.
        """
        if not (0 < scale[0] <= scale[1]):
            raise ValueError(f"scale must satisfy 0 < min <= max, got {scale}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        size = self.config.image_size
        resample = _resample(self.config.interpolation)

        def transform(image: ImageInput) -> torch.Tensor:
            img = load_image(image)
            top, left, h, w = random_resized_crop_params(img.width, img.height, scale, ratio, generator)
            crop = img.crop((left, top, left + w, top + h)).resize((size, size), resample=resample)
            return self._finish(crop)

        return transform
