"""``tether.train.train(config)``: everything ``tether train`` does, as a function."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import ConfigError
from ..io import atomic_write_json
from ..models.tower import set_patch_dropout, supports_patch_dropout
from .config import TrainConfig
from .data import LoaderTrainData, build_loader, ensure_tokenizer
from .evaluation import make_evaluator
from .feature_cache import install_feature_cache, remove_feature_cache
from .optim import lock_tower
from .trainer import Trainer


def prepare_model(cfg: TrainConfig):
    """The model to train: an architecture (``tether.create_model``, random init), or a checkpoint path,
    published name or Hub id (``tether.load``: fine-tuning and LiT from published weights)."""
    from ..checkpoints import resolve_model
    from ..models import create_model, get_model_config, list_models

    if Path(cfg.model).exists() or cfg.model not in list_models():
        if cfg.model_overrides:
            raise ConfigError(f"train.model_overrides applies to architecture names only, not to {cfg.model!r}")
        model = resolve_model(cfg.model)
    else:
        overrides = dict(cfg.model_overrides)
        if cfg.loss == "siglip" and "logit_bias_init" not in overrides \
                and get_model_config(cfg.model, **overrides).logit_bias_init is None:
            # SigLIP's own initialisation (t = 10, b = -10): the sigmoid loss needs a bias, and
            # starting near log(1/N) keeps the first steps from being swamped by negatives
            overrides.update(logit_scale_init=10.0, logit_bias_init=-10.0)
        model = create_model(cfg.model, **overrides)
    if cfg.bind is not None:
        _add_bound_tower(model, cfg)
    _set_patch_dropout(model, cfg.patch_dropout)
    if cfg.loss == "siglip" and model.logit_bias is None:
        raise ConfigError(f"train.loss=siglip needs a model with a logit bias; {cfg.model!r} has none "
                          "(named configs get one automatically)")
    for modality in cfg.lock:
        lock_tower(model, modality)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def _add_bound_tower(model, cfg: TrainConfig) -> None:
    """Binding: the new modality's tower (``bind.tower``) when the model has none yet (a resumed
    or continued run finds it in the checkpoint), with its own scale (see ``add_tower``)."""
    from ..models.extend import add_tower
    bind = cfg.bind
    if bind.modality in model.towers:
        if bind.tower:
            raise ConfigError(f"train.bind.tower: the model {cfg.model!r} has a {bind.modality!r} tower already; "
                              "leave bind.tower out to keep training it")
        return
    if not bind.tower:
        raise ConfigError(f"train.bind.tower: the model {cfg.model!r} has no {bind.modality!r} tower; give its "
                          f"config (towers: {', '.join(model.towers)})")
    add_tower(model, bind.modality, bind.tower, scale=bind.scale)


def _set_patch_dropout(model, fraction: float) -> None:
    """FLIP patch dropout on every tower that has it (the ViT image tower)."""
    towers = [t for m, t in model.towers.items() if supports_patch_dropout(t)]
    for tower in towers:
        set_patch_dropout(tower, fraction)
    if fraction and not towers:
        warnings.warn(f"train.patch_dropout={fraction}: no tower of this model has patch dropout; ignored",
                      stacklevel=2)


def _locked_feature_cache(model, cfg: TrainConfig, dist):
    """The LiT feature cache on the locked tower, where it is exact and safe (see feature_cache)."""
    if not cfg.lock or cfg.locked_feature_cache_mib == 0:
        return None
    locked = cfg.lock[0]
    why_off = None
    if dist.enabled and cfg.strategy == "fsdp":
        why_off = "under FSDP (every forward is a collective)"
    elif locked == "image" and cfg.augment:
        why_off = "with augment=true (random crops never repeat, so every lookup would miss)"
    if why_off:
        if dist.is_main:
            print(f"locked_feature_cache_mib: off {why_off}")
        return None
    return install_feature_cache(model.towers[locked], cfg.locked_feature_cache_mib)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train, evaluate and save ``out_dir/model`` (tether format); resumes if ``out_dir`` has checkpoints."""
    from ..data import build_source
    if not cfg.train_data:
        raise ConfigError("train.train_data is required, e.g. {\"type\": \"fashion_mnist\", \"split\": \"train\"}")
    from .distributed import DistributedContext
    dist = DistributedContext.from_env()  # join the process group first: the data pipeline shards by rank
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    model = prepare_model(cfg)
    source = build_source(cfg.train_data)
    saved_tokenizer = out / "tokenizer"
    uses_text = "text" in cfg.modalities or cfg.bind is None
    if saved_tokenizer.is_dir():  # resuming: the same vocabulary as before
        from ..tokenizer import Tokenizer
        model.tokenizer = Tokenizer.load(saved_tokenizer)
    elif uses_text:
        ensure_tokenizer(model, source, cfg)
    out.mkdir(parents=True, exist_ok=True)
    if dist.is_main and not saved_tokenizer.is_dir() and model.tokenizer is not None:
        model.tokenizer.save(saved_tokenizer)
    keys = ("pixels", "input_ids") if list(cfg.modalities) == ["image", "text"] else tuple(cfg.modalities)
    data = LoaderTrainData(build_loader(cfg.train_data, model, cfg, train=True, source=source), keys)
    evaluate = None
    if cfg.val_data and cfg.bind is not None:
        from .binding import bind_evaluator
        evaluate = bind_evaluator(build_source(cfg.val_data), cfg)
    elif cfg.val_data:
        val_source = build_source(cfg.val_data)
        val_loader = build_loader(cfg.val_data, model, cfg, train=False, batch_size=256, source=val_source)
        evaluate = make_evaluator(val_loader, getattr(val_source, "class_names", None),
                                  cfg.eval_templates or getattr(val_source, "templates", None))
    cache = _locked_feature_cache(model, cfg, dist)
    trainer = Trainer(cfg, model, data, evaluate, dist=dist, progress=progress)
    try:
        final = trainer.fit()
    finally:
        if cache is not None:
            remove_feature_cache(cache.tower)
    if cache is not None:
        final["locked_feature_cache"] = cache.stats.as_dict()
    trainer.save_model(out / "model")  # every rank: FSDP gathers the sharded weights to rank 0
    if trainer.dist.is_main:
        atomic_write_json(out / "final.json", final)
    return final
