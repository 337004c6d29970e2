"""The precision an embedding job runs in: fp32, or autocast to bf16 / fp16."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch

from ..errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")


def autocast(precision: str, device: torch.device) -> ContextManager:
    """A context running the forward pass in ``precision`` on ``device``; errors are one line.

    bf16 autocasts on CPU and on GPUs that have it; fp16 is for CUDA only (CPU kernels are slow or
    missing there, so asking for it is a mistake worth stopping on).
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise InputError(f"precision 'fp16' needs a CUDA device, the model is on {device.type}; "
                         "use precision 'bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"precision 'bf16' is not supported by {torch.cuda.get_device_name(device)}; "
                         "use precision 'fp16' or 'fp32'")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
