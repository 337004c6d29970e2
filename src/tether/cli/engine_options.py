"""Options every command that embeds shares: how the embedding engine runs (``tether.embedding``)."""
from __future__ import annotations

import argparse
from typing import Any

PRECISIONS = ("fp32", "bf16", "fp16")


def add_engine_options(parser: argparse.ArgumentParser, batch_size: int, device: bool = False) -> None:
    """``--batch-size``, ``--workers``, ``--precision`` (and ``--device`` when asked)."""
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"inputs per batch (default {batch_size})")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader processes decoding inputs (0: in process)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32, bf16 (autocast, CPU or GPU) or fp16 (CUDA only)")
    if device:
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine keywords (workers, precision, device where given) from parsed arguments."""
    options = {"workers": args.workers, "precision": args.precision}
    if getattr(args, "device", None) is not None:
        options["device"] = args.device
    return options
