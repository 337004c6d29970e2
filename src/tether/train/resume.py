"""Resume checks what it resumes: the checkpoint's run config against the current one.

A training checkpoint stores the run's resolved :class:`TrainConfig` and its model's
:class:`~tether.config.ModelConfig`. Resuming with settings that change what is trained
(model, data, batch size, loss, optimizer and schedule, precision, seed, tokenizer ...) would
silently continue one run with another's settings, so it stops with a one-line-per-key diff.
The keys in :data:`SAFE_TO_CHANGE` only change bookkeeping, speed or memory, or (``steps``)
extend the run; ``TrainConfig.resume_allow`` (``tether train --allow-changed KEY``) lets any
other key change on purpose.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ..config import ConfigError
from .config import TrainConfig, known_key
from .schedule import lr_at

# key -> why changing it on resume is safe (docs/training.md#what-resume-checks lists the same)
SAFE_TO_CHANGE = {
    "steps": "a longer (or shorter) run; the cosine schedule is re-stretched over the new total",
    "log_every": "logging", "eval_every": "evaluation cadence", "val_data": "held-out evaluation",
    "eval_templates": "held-out evaluation", "tensorboard": "logging",
    "checkpoint_every": "checkpoint cadence", "keep_checkpoints": "checkpoint retention",
    "out_dir": "where the run lives", "resume_allow": "this list itself",
    "workers": "data order is a function of (seed, epoch, position), not of the workers",
    "device": "where the same computation runs (float rounding may differ)",
    "compile": "the same computation, compiled (float rounding may differ)",
    "grad_checkpointing": "recomputes the same activations (float rounding may differ)",
    "strategy": "how ranks share the same step (float rounding may differ)",
    "locked_feature_cache_mib": "serves the features the locked tower computes for the same input",
    "row_cache_mib": "serves the rows the processors compute for the same file",
}
# model-config keys that a TrainConfig key sets (reported under that key, not twice)
_SET_BY_TRAIN_CONFIG = ("patch_dropout",)
_ABSENT = object()


class ResumeMismatchError(ConfigError):
    """The checkpoint in ``out_dir`` was written by a run with different settings."""


def run_snapshot(cfg, model) -> dict[str, Any]:
    """What a checkpoint stores about its run: the train config and the model's architecture."""
    snapshot = {"config": cfg.to_dict()}
    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        snapshot["model_config"] = config.to_dict()
    return snapshot


def check_resume(path: Path, saved: dict[str, Any], cfg, model_config: dict | None) -> list[str]:
    """Raise :class:`ResumeMismatchError` if the run at ``path`` had other settings than ``cfg``
    (except keys that may change or that ``cfg.resume_allow`` names); return notes to print.

    ``saved`` is the checkpoint's training state (with ``config`` and ``model_config`` when it
    was written by a tether that stores them; without ``config`` it resumes with a warning).
    """
    if "config" not in saved:
        warnings.warn(f"{path}: the checkpoint stores no training config (written by an older tether); "
                      "resuming without checking that this run has the same settings", stacklevel=2)
        return []
    saved_flat = _flatten(saved["config"])
    parents = {k.rsplit(".", i)[0] for k in saved_flat for i in range(1, k.count(".") + 1)}
    # defaults fill keys an older run did not store; not a section's default (bind: None) beside its keys
    before = {**{k: v for k, v in _flatten(TrainConfig().to_dict()).items() if k not in parents}, **saved_flat}
    now = _flatten(cfg.to_dict())
    changed = _diff({k: v for k, v in before.items() if known_key(k)}, now)
    if saved.get("model_config") is not None and model_config is not None \
            and not any(_under(k, ("model", "model_overrides", "loss")) for k in changed):
        changed.update(_diff(_flatten(saved["model_config"], "model_config"), _flatten(model_config, "model_config"),
                             skip=_SET_BY_TRAIN_CONFIG))
    refused = [k for k in changed if not _under(_owner(k), (*SAFE_TO_CHANGE, *cfg.resume_allow))]
    if refused:
        raise ResumeMismatchError(_refusal(path, changed, refused))
    notes = [f"resume: {k} changed: {_show(a)} -> {_show(b)} (allowed)" for k, (a, b) in changed.items()]
    if "steps" in changed:
        notes.append(_schedule_note(int(saved["step"]), changed["steps"], cfg))
    return notes


def _refusal(path: Path, changed: dict[str, tuple], refused: list[str]) -> str:
    lines = [f"{path} was written by a run with other settings; changed since (saved -> now):"]
    lines += [f"  {k}: {_show(a)} -> {_show(b)}" + ("" if k in refused else " (may change)")
              for k, (a, b) in changed.items()]
    owners = list(dict.fromkeys(_owner(k) for k in refused))
    flags = " ".join(f"--allow-changed {k}" for k in owners)
    lines.append(f"to continue that run with these settings anyway, rerun with {flags} (config: "
                 f"resume_allow: {json.dumps(owners)}); to start a new run, use another out_dir")
    return "\n".join(lines)


def _schedule_note(step: int, steps: tuple, cfg) -> str:
    o = cfg.optim
    old, new = (lr_at(step, o.lr, o.warmup_steps, int(n), o.min_lr) for n in steps)
    return (f"resume: the learning-rate schedule now ends at step {steps[1]} instead of {steps[0]}: "
            f"at step {step} the learning rate goes from {old:.4g} to {new:.4g}")


def _owner(key: str) -> str:
    """The TrainConfig key a changed key is allowed by: model-config keys belong to ``model``."""
    return "model" if key.startswith("model_config.") else key


def _under(key: str, roots) -> bool:
    return any(key == r or key.startswith(r + ".") for r in roots)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: list(data) if isinstance(data, tuple) else data}


def _diff(before: dict[str, Any], now: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    out = {}
    for key in dict.fromkeys([*before, *now]):
        if key.rsplit(".", 1)[-1] in skip:
            continue
        a, b = before.get(key, _ABSENT), now.get(key, _ABSENT)
        if _normal(a) != _normal(b):
            out[key] = (a, b)
    return out


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return {} if value is _ABSENT else value


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value, default=str)
