"""Device names from configs and command lines, checked where they are read.

``torch.device("gpu")`` fails with a list of every backend torch knows, and ``"cuda"`` on a machine
without one fails only when the first tensor moves; both are a user's setting, so both are a
one-line :class:`~tether.errors.ConfigError` naming the setting before any work starts.
"""
from __future__ import annotations

import torch

from .errors import ConfigError

EXAMPLES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def parse_device(name: str | torch.device, where: str = "device") -> torch.device | None:
    """The ``torch.device`` a name means (None for "auto"); a name torch does not know is a ConfigError."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return None
    try:
        return torch.device(name)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ConfigError(f"{where}={name!r}: not a device; expected {EXAMPLES}") from err


def pick_device(name: str | torch.device, where: str = "device") -> torch.device:
    """``"auto"`` (CUDA when present, else the CPU) or a device this machine has."""
    device = parse_device(name, where)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{where}={name!r}: this machine has no CUDA device; expected 'cpu' or 'auto'")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{where}={name!r}: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{where}={name!r}: MPS is not available on this machine; expected 'cpu' or 'auto'")
    return device
