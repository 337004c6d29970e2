"""``tether.train.train(config)``: everything ``tether train`` does, as a function."""
from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoints.attach import attach_processors
from ..io import atomic_write_json
from .config import TrainConfig
from .data import LoaderTrainData, build_loader, ensure_tokenizer
from .evaluation import make_evaluator
from .feature_cache import install_feature_cache, remove_feature_cache
from .optim import lock_tower
from .trainer import Trainer


def prepare_model(cfg: TrainConfig):
    """The model to train: a named config (random init), a checkpoint, or a pretrained name."""
    from ..models import AlignedModel, get_model_config, list_models
    from ..models.registry import resolve_model
    if cfg.model in list_models() and not Path(cfg.model).exists() and cfg.model != "align-effnet-minilm":
        model_cfg = get_model_config(cfg.model, **cfg.model_overrides)
        model_cfg.vision.patch_dropout = cfg.patch_dropout
        if cfg.loss == "siglip" and model_cfg.logit_bias_init is None:
            # SigLIP's own initialisation (t = 10, b = -10): the sigmoid loss needs a bias, and
            # starting near log(1/N) keeps the first steps from being swamped by negatives
            model_cfg.logit_scale_init, model_cfg.logit_bias_init = 10.0, -10.0
        model = AlignedModel(model_cfg)
        attach_processors(model)
    else:
        if cfg.model_overrides:
            raise ValueError(f"train.model_overrides applies to named configs only, not to {cfg.model!r}")
        model = resolve_model(cfg.model)
        if hasattr(model.visual, "cfg"):
            model.visual.cfg.patch_dropout = cfg.patch_dropout
    if cfg.loss == "siglip" and model.logit_bias is None:
        raise ValueError(f"train.loss=siglip needs a model with a logit bias; {cfg.model!r} has none "
                         "(named configs get one automatically)")
    if cfg.lock_image:
        lock_tower(model, "image")
    if cfg.lock_text:
        lock_tower(model, "text")
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def _locked_feature_cache(model, cfg: TrainConfig, dist):
    """The LiT feature cache on the locked tower, where it is exact and safe (see feature_cache)."""
    if not (cfg.lock_image or cfg.lock_text) or cfg.locked_feature_cache_mib == 0:
        return None
    why_off = None
    if dist.enabled and cfg.strategy == "fsdp":
        why_off = "under FSDP (every forward is a collective)"
    elif cfg.lock_image and cfg.augment:
        why_off = "with augment=true (random crops never repeat, so every lookup would miss)"
    if why_off:
        if dist.is_main:
            print(f"locked_feature_cache_mib: off {why_off}")
        return None
    tower = model.visual if cfg.lock_image else model.text
    return install_feature_cache(tower, cfg.locked_feature_cache_mib)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train, evaluate and save ``out_dir/model`` (tether format); resumes if ``out_dir`` has checkpoints."""
    from ..data import build_source
    if not cfg.train_data:
        raise ValueError("train.train_data is required, e.g. {\"type\": \"fashion_mnist\", \"split\": \"train\"}")
    from .distributed import DistributedContext
    dist = DistributedContext.from_env()  # join the process group first: the data pipeline shards by rank
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    model = prepare_model(cfg)
    source = build_source(cfg.train_data)
    saved_tokenizer = out / "tokenizer"
    if model.tokenizer is None and saved_tokenizer.is_dir():  # resuming: the same vocabulary as before
        from ..tokenizer import Tokenizer
        model.tokenizer = Tokenizer.load(saved_tokenizer)
    ensure_tokenizer(model, source, cfg)
    out.mkdir(parents=True, exist_ok=True)
    if dist.is_main and not saved_tokenizer.is_dir():
        model.tokenizer.save(saved_tokenizer)
    data = LoaderTrainData(build_loader(cfg.train_data, model, cfg, train=True, source=source))
    evaluate = None
    if cfg.val_data:
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
