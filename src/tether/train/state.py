"""Training checkpoints that make resume exact.

A checkpoint holds the weights, the optimizer moments, the step and every random
generator's state. The data order is a pure function of (seed, epoch, position)
and the learning rate a pure function of the step, so a run killed at any moment
and resumed from its last checkpoint ends with the same weights as one that never
stopped. Checkpoints are written to a temporary directory and renamed into place;
``latest`` names the newest complete one.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoints.common import read_weights
from ..io import atomic_directory, atomic_save_safetensors, atomic_write_text


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model, optimizer, extra: dict[str, Any], keep: int = 2) -> Path:
    """Write ``run_dir/checkpoints/step_XXXXXXXX`` atomically and point ``latest`` at it."""
    return save_checkpoint_state(run_dir, step, model.state_dict(), optimizer.state_dict(), extra, keep)


def save_checkpoint_state(run_dir: Path, step: int, weights: dict[str, torch.Tensor], optimizer_state: dict,
                          extra: dict[str, Any], keep: int = 2) -> Path:
    """:func:`save_checkpoint` from state dicts already gathered (a sharded model has no full
    ``state_dict()`` on any one rank)."""
    root = Path(run_dir) / "checkpoints"
    name = f"step_{step:08d}"
    final = root / name
    with atomic_directory(final) as tmp:
        atomic_save_safetensors(weights, tmp / "model.safetensors")
        torch.save({"optimizer": optimizer_state, "rng": rng_state(), "step": step, **extra}, tmp / "train_state.pt")
    atomic_write_text(root / "latest", name + "\n")
    for old in sorted(p for p in root.glob("step_*") if p.name != name)[:-max(keep - 1, 0) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "train_state.pt").is_file() else None


def load_checkpoint(path: Path, model, optimizer) -> dict[str, Any]:
    """Restore weights, optimizer and random state; return the saved extras (step, ...)."""
    weights, state = read_checkpoint(path)
    model.load_state_dict(weights)
    optimizer.load_state_dict(state.pop("optimizer"))
    set_rng_state(state.pop("rng"))
    return state


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, training state) of a checkpoint directory, on the CPU."""
    state = torch.load(path / "train_state.pt", map_location="cpu", weights_only=False)
    return read_weights(path / "model.safetensors"), state

