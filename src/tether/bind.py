"""``tether.bind`` / ``tether.distill``: a new modality's tower trained against a frozen anchor.

Both are one training run of :mod:`tether.train` (gradient cache, tiled losses, the locked
anchor's feature cache, resume after a kill, logs, held-out evaluation) with ``train.bind`` set:

- **binding** (ImageBind): symmetric InfoNCE between the new modality and the anchor (the image
  tower by default, or text), at the modality's fixed temperature (ImageBind's: depth 5,
  thermal 10, IMU 5, audio 20) or a learnable one. Whatever the anchor is aligned to (text)
  becomes reachable from the new modality without a single pair of the two.
- **distillation**: the same run with a loss that matches the frozen teacher's embeddings
  (cosine, L2, or KL between student-teacher and teacher-teacher similarity distributions), or
  with contrastive binding (``loss="clip"``).

The result is ``out_dir/model``: one tether checkpoint holding every tower of the loaded model,
bit for bit as it was, plus the trained one.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .errors import ConfigError
from .train.config import BindConfig, TrainConfig, apply_override


def data_spec(text: str | Mapping[str, Any]) -> dict[str, Any]:
    """A data spec from ``{"type": ...}``, JSON text, ``TYPE:PATH`` or a built-in ``TYPE``."""
    if isinstance(text, Mapping):
        return dict(text)
    text = text.strip()
    if text.startswith("{"):
        import json
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"data spec {text!r}: not valid JSON ({err.msg})") from None
        if not isinstance(spec, dict):
            raise ConfigError(f"data spec {text!r}: expected a JSON object")
        return spec
    kind, _, path = text.partition(":")
    return {"type": kind, "path": path} if path else {"type": kind}


def bind_config(model: str, modality: str, train_data: str | Mapping[str, Any], *, anchor: str = "image",
                tower: str | Mapping[str, Any] | None = "tiny", scale: float | None = None,
                learn_scale: bool = False, loss: str = "clip", val_data: str | Mapping[str, Any] | None = None,
                out_dir: str = "runs/bind", steps: int = 500, batch_size: int = 64, lr: float = 1e-3,
                overrides: list[str] = (), **train: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a bind (or distill) run.

    ``model``: a checkpoint path, published name or Hub id holding the anchor; ``tower``: the new
    tower's config (a preset name of the modality, e.g. "tiny", or a mapping; None: the model has
    the tower already and training continues it); ``scale``: the pair's multiplier t (default the
    modality's ImageBind value, else 1/0.07); ``overrides``: ``key=value`` strings as ``--set``.
    """
    from .modalities import tower_preset
    tower_cfg = tower_preset(modality, tower) if isinstance(tower, str) else dict(tower or {})
    data: dict[str, Any] = {
        "model": model, "loss": loss, "steps": steps, "batch_size": batch_size, "out_dir": out_dir,
        "train_data": data_spec(train_data), "optim": {"lr": lr, "warmup_steps": min(50, steps // 10)},
        "bind": {"modality": modality, "anchor": anchor, "tower": tower_cfg, "scale": scale,
                 "learn_scale": learn_scale},
        **train}
    if val_data is not None:
        data["val_data"] = data_spec(val_data)
    for item in overrides:
        apply_override(data, item)
    return TrainConfig.from_dict(data)


def bind(model: str, modality: str, train_data: str | Mapping[str, Any], *, progress: bool = False,
         **options: Any) -> dict:
    """Train ``modality``'s tower against the frozen ``anchor`` of ``model``; returns the final record
    (held-out metrics when ``val_data`` is given). The model is written to ``out_dir/model``.
    Options: see :func:`bind_config`."""
    from .train.run import train
    return train(bind_config(model, modality, train_data, **options), progress=progress)


def distill(teacher: str, modality: str, train_data: str | Mapping[str, Any], *, loss: str = "cosine",
            anchor: str = "image", progress: bool = False, **options: Any) -> dict:
    """Train a student ``modality`` tower to match the frozen teacher tower ``anchor`` of ``teacher``
    on paired data: ``loss`` "cosine", "l2", "kl" (similarity distributions) or "clip" (contrastive
    binding). Held-out evaluation (``val_data``) uses the teacher's own text classifier and
    retrieval against the teacher's embeddings. A student of the teacher's own modality is named
    ``"<anchor>@<tag>"`` (``image@small``); it is also written as a model of its own,
    ``out_dir/student`` (see :func:`export_student`). Options: see :func:`bind_config`."""
    from .train.run import train
    cfg = bind_config(teacher, modality, train_data, anchor=anchor, loss=loss, **options)
    final = train(cfg, progress=progress)
    export_if_student(cfg)
    return final


def export_if_student(cfg: TrainConfig) -> None:
    """After a distill run whose student is a variant of the teacher's modality: ``out_dir/student``."""
    from pathlib import Path

    from .modalities import base_modality
    if cfg.bind is not None and cfg.bind.modality != base_modality(cfg.bind.modality) \
            and base_modality(cfg.bind.modality) == cfg.bind.anchor:
        from .checkpoints import load_model, save_model
        model = load_model(Path(cfg.out_dir) / "model")
        save_model(export_student(model, cfg.bind.modality), Path(cfg.out_dir) / "student")


def export_student(model, student: str):
    """A model whose ``<modality>`` tower is the student ``<modality>@<tag>`` (a smaller image tower
    beside the teacher's text tower, say): the teacher's tower of that modality is dropped, the
    student takes its key, every other tower and the shared scale are kept as they are."""
    import copy

    from .models.aligned import AlignedModel
    from .modalities import base_modality
    base = base_modality(student)
    if student == base or student not in model.towers:
        raise ConfigError(f"export_student: {student!r} is not a student tower of this model (towers: "
                          f"{', '.join(model.towers)}); a student is named <modality>@<tag>")
    def swap(mapping: Mapping) -> dict:  # the student in its modality's place, in the same order
        return {m: mapping[student if m == base else m] for m in mapping if m != student}
    config = copy.deepcopy(model.config)
    config.towers = swap(config.towers)
    config.logit_scales = {m: t for m, t in config.logit_scales.items() if m not in (base, student)}
    towers = swap(model.towers)
    out = AlignedModel(config, towers=towers)
    for name, proj in model.projections.items():
        if name != base:
            out.projections[base if name == student else name].load_state_dict(proj.state_dict())
    with torch.no_grad():
        out.logit_scale.copy_(model.logit_scale)
        if out.logit_bias is not None:
            out.logit_bias.copy_(model.logit_bias)
    out.processors.update({(base if m == student else m): p for m, p in model.processors.items() if m != base})
    return out.eval()


__all__ = ["BindConfig", "bind", "bind_config", "data_spec", "distill", "export_student"]
