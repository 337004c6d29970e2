"""Numeric inputs of the array modalities (point clouds, depth, thermal, IMU) from memory or files.

One reader for all of them, so each processor only checks shapes and values: numpy arrays,
tensors and nested lists as they are; files by suffix: ``.npy``, ``.npz`` (the array under
``key`` or the only one), ``.txt`` / ``.xyz`` / ``.csv`` (numbers separated by spaces or
commas), and images (``.png``, ``.tif``, ... through Pillow, 16-bit and float modes kept).
A file that cannot be read is an ``OSError`` naming it (counted as ``unreadable_input`` in jobs);
content that is not numbers is an :class:`~tether.errors.InputError`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError

TEXT_SUFFIXES = (".txt", ".xyz", ".csv", ".pts")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".pgm", ".pfm")


def load_array(item: Any, what: str, key: str | None = None, keep_dtype: bool = False) -> np.ndarray:
    """``item`` as a float32 numpy array (``keep_dtype``: in its own numeric type, e.g. a 16-bit
    image's uint16); ``what`` names the input in errors ("point cloud", "IMU series")."""
    if isinstance(item, (str, os.PathLike)):
        array = _read_file(Path(item), what, key)
    else:
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        try:
            array = np.asarray(item)
        except (TypeError, ValueError) as err:
            raise InputError(f"{what}: expected an array of numbers, got {type(item).__name__} ({err})") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        try:
            array = array.astype(np.float32)
        except (TypeError, ValueError) as err:
            raise InputError(f"{what}: expected an array of numbers, got {array.dtype} values ({err})") from None
    return array if keep_dtype else array.astype(np.float32, copy=False)


def _read_file(path: Path, what: str, key: str | None) -> np.ndarray:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.keys())
                name = key if key in names else (names[0] if len(names) == 1 else None)
                if name is None:
                    raise InputError(f"{path}: a {what} .npz needs one array or one named {key!r}; found {names}")
                return np.asarray(archive[name])
        if suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8").replace(",", " ")
            return np.loadtxt(text.splitlines(), dtype=np.float32, ndmin=2)
        if suffix in IMAGE_SUFFIXES:
            from PIL import Image
            with Image.open(path) as image:
                return np.asarray(image)
    except OSError as err:
        raise OSError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    except ValueError as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: not a {what} of numbers ({' '.join(str(err).split())[:120]})") from None
    raise InputError(f"{path}: unknown {what} file type {suffix or '(none)'!r}; expected .npy, .npz, "
                     f"{', '.join(TEXT_SUFFIXES)} or an image")


def check_finite(array: np.ndarray, what: str) -> None:
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{what}: {bad} value(s) are NaN or infinite; expected finite numbers")
