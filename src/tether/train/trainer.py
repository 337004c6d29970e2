"""The training loop: contrastive steps, schedule, checkpoints, logs and evaluation.

The trainer is deliberately small: data order, the learning rate and randomness
are functions of (seed, step), which is what makes a resumed run identical to an
uninterrupted one. It takes any ``TrainData`` (see ``train/data.py``) and an
optional ``evaluate(model) -> dict`` callable for periodic held-out evaluation.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Callable

import torch

from ..devices import pick_device
from ..errors import ConfigError
from ..io import atomic_write_json
from ..embedding.precision import autocast
from ..modalities import check_processors
from .config import DISTILL_LOSSES, TrainConfig
from .optim import build_optimizer, lock_tower
from .parallel import build_strategy
from .resume import check_resume, run_snapshot
from .schedule import lr_at
from .state import latest_checkpoint, read_checkpoint, save_checkpoint_state, set_rng_state


# TETHER_TEST_SIGKILL_AT_STEP=K: the trainer SIGKILLs itself right after step K (and its checkpoint,
# if one falls there), so the resume test crashes at the same point on any machine
_SIGKILL_AT_STEP = int(os.environ.get("TETHER_TEST_SIGKILL_AT_STEP", "-1"))


def loss_function(cfg: TrainConfig) -> Callable:
    from .. import losses
    if cfg.loss in DISTILL_LOSSES:
        from .binding import distill_loss
        return distill_loss(cfg)
    if cfg.loss == "clip":
        return lambda img, txt, scale, bias: losses.clip_loss(img, txt, scale, chunk_size=cfg.loss_chunk_size)
    return lambda img, txt, scale, bias: losses.siglip_loss(img, txt, scale, bias, chunk_size=cfg.loss_chunk_size)


class Trainer:
    def __init__(self, cfg: TrainConfig, model, data, evaluate: Callable | None = None,
                 dist=None, progress: bool = True) -> None:
        from .distributed import DistributedContext
        self.cfg, self.data, self.evaluate = cfg, data, evaluate
        self.dist = dist or DistributedContext.from_env()
        self.device = self.dist.device if self.dist.enabled else pick_device(cfg.device, "train.device")
        missing = [m for m in cfg.modalities if m not in model.towers]
        if missing:
            raise ConfigError(f"train.modalities: the model has no {missing[0]!r} tower; its towers: "
                              f"{', '.join(model.towers)}")
        check_processors(model)  # a tokenizer the text tower cannot take fails before the first step
        for modality in cfg.lock:  # LiT (prepare_model has done it already for `tether train`)
            lock_tower(model, modality)
        if cfg.bind is not None:  # binding / distillation: only the bound tower (and its scale) trains
            from .binding import freeze_all_but_bound
            freeze_all_but_bound(model, cfg.bind)
        self.strategy = build_strategy(cfg, self.dist, self.device)  # ddp / fsdp / manual under torchrun
        self.model = self.strategy.setup(model)  # FSDP shards in place: build the optimizer after
        self.optimizer = build_optimizer(self.model, cfg.optim.lr, cfg.optim.weight_decay,
                                         tuple(cfg.optim.betas), cfg.optim.eps)
        self.loss_fn = self.dist.wrap_loss(loss_function(cfg), cfg)
        self.run_dir = Path(cfg.out_dir)
        self.progress = progress and self.dist.is_main
        self.step = 0
        self.history: list[dict] = []
        self.snapshot = run_snapshot(cfg, model)  # stored in checkpoints, checked on resume

    # ------------------------------------------------------------------ public
    def fit(self) -> dict:
        """Train to ``cfg.steps`` (resuming from the latest checkpoint) and return the final record."""
        self._resume()
        logger = RunLogger(self.run_dir, self.cfg, enabled=self.dist.is_main)
        bar = self._bar()
        samples, started = 0, time.perf_counter()
        per_epoch = self.data.batches_per_epoch()
        batches = None
        try:
            while self.step < self.cfg.steps:
                # The data pipeline draws from torch's global generator (DataLoader seeds); fork it
                # so the model's randomness (patch dropout) depends on the step alone, which keeps
                # a resumed run on the same random stream as an uninterrupted one.
                with torch.random.fork_rng(devices=[]):
                    if batches is None:
                        epoch, position = divmod(self.step, per_epoch)
                        batches = iter(self.data.batches(epoch, position))
                    batch = next(batches, None)
                if batch is None:  # epoch finished: the next one starts at position 0
                    batches = None
                    continue
                record = self._train_step(*batch)
                samples += batch[0].shape[0] * self.dist.world_size
                self.step += 1
                record["samples_per_s"] = samples / (time.perf_counter() - started)
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                    logger.log(self.step, record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", sps=f"{record['samples_per_s']:.0f}")
                if self.cfg.eval_every and self.step % self.cfg.eval_every == 0 and self.step < self.cfg.steps:
                    logger.log(self.step, self._evaluate(), prefix="eval/")
                if self.step % self.cfg.checkpoint_every == 0 and self.step < self.cfg.steps:
                    self._checkpoint()
                if self.step == _SIGKILL_AT_STEP:  # tests: a crash at a known step, whatever the speed
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            if bar is not None:
                bar.close()
        final = {"step": self.step, **self._evaluate()}
        logger.log(self.step, final, prefix="eval/")
        self._checkpoint()  # every rank: the save is rank 0's, the barrier after it is collective
        skipped = getattr(self.data, "skipped", lambda: {})()
        final["skipped_samples"] = skipped
        logger.close()
        return final

    # ------------------------------------------------------------------ internals
    def _train_step(self, inputs_a: torch.Tensor, inputs_b: torch.Tensor) -> dict:
        """One step on a batch of ``cfg.modalities`` (pixels and token ids by default)."""
        cfg = self.cfg
        lr = lr_at(self.step, cfg.optim.lr, cfg.optim.warmup_steps, cfg.steps, cfg.optim.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        inputs_a = inputs_a.to(self.device, non_blocking=True)
        inputs_b = inputs_b.to(self.device, non_blocking=True)
        loss = self.strategy.backward(inputs_a, inputs_b, self.loss_fn, self._autocast)  # gradients averaged
        norm = self.strategy.clip_grad_norm_(cfg.optim.grad_clip) if cfg.optim.grad_clip else None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.clamp_logit_scale_()
        loss_value = float(loss)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at step {self.step}; lower optim.lr or check the data")
        record = {"loss": loss_value, "lr": lr, "scale": self.model.scale(*cfg.modalities).item()}
        if self.model.logit_bias is not None:
            record["logit_bias"] = self.model.logit_bias.item()
        if norm is not None:
            record["grad_norm"] = norm
        return record

    def _autocast(self):
        return autocast(self.cfg.precision, self.device)  # the engine's rule: fp32 none, bf16 autocast

    def save_model(self, path) -> None:
        """Write the trained model in tether's format (rank 0; every rank must call: FSDP gathers)."""
        with self.strategy.full_model(on_device=False) as model:
            if model is not None:
                from ..checkpoints import save_model
                save_model(model, path)

    def _evaluate(self) -> dict:
        if self.evaluate is None:
            return {}
        with self.strategy.full_model() as model:  # rank 0 only; FSDP gathers the weights on every rank
            if model is None:
                return {}
            was_training = model.training
            model.eval()
            try:
                return self.evaluate(model)
            finally:
                model.train(was_training)

    def _checkpoint(self) -> None:
        state = self.strategy.checkpoint_state(self.optimizer)  # collective; None except on rank 0
        if state is not None:
            weights, optim_state, names = state
            save_checkpoint_state(self.run_dir, self.step, weights, optim_state,
                                  {**self.snapshot, "param_names": names}, keep=self.cfg.keep_checkpoints)
        self.dist.barrier()

    def _resume(self) -> None:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return
        weights, extra = read_checkpoint(path)
        notes = check_resume(path, extra, self.cfg, self.snapshot.get("model_config"))
        names = extra.pop("param_names", None)  # absent in checkpoints written before strategies
        self.strategy.load_checkpoint_state(self.optimizer, weights, extra.pop("optimizer"), names)
        set_rng_state(extra.pop("rng"))
        self.step = int(extra["step"])
        if self.dist.is_main:
            print("\n".join([*notes, f"resumed from {path} at step {self.step}"]))

    def _bar(self):
        if not self.progress:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=self.cfg.steps, initial=self.step, desc="training", unit="step")


class RunLogger:
    """JSON lines in ``run_dir/log.jsonl`` and, when available, TensorBoard scalars."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, enabled: bool = True) -> None:
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", cfg.to_dict())
        self.file = open(run_dir / "log.jsonl", "a", encoding="utf-8")
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional: `pip install tensorboard`
                self.writer = None

    def log(self, step: int, record: dict, prefix: str = "train/") -> None:
        if not self.enabled or not record:
            return
        flat = {k: v for k, v in record.items()  # "step" is the x-axis, not a scalar of its own
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.file.write(json.dumps({"step": step, "kind": prefix.strip("/"), **flat}) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in flat.items():
                self.writer.add_scalar(prefix + key, value, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.writer is not None:
                self.writer.close()
