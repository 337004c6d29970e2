"""Worker for tests/test_distributed_strategies.py, started by torchrun (gloo, CPU):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_strategy_worker.py OUTDIR

Every case of ``CASES`` trains a tiny model for a few steps through ``Trainer`` with its strategy
(ddp / fsdp / manual), each rank on its slice of the same global batches; rank 0 writes the final
full weights (gathered for FSDP) to ``OUTDIR/results.pt``. The test trains the same model in one
process on the whole batches and compares. ``fsdp-resume`` also crashes a run after its step-2
checkpoint, resumes it in a fresh sharded model (and a DDP run's checkpoint with FSDP), and saves
``out_dir/model`` in tether's format.

``build_case`` and ``GlobalBatches`` are imported by the test for the single-process reference.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

STEPS = 3

# name -> (strategy, TrainConfig keys, local batch size of each rank)
CASES = {
    "ddp-clip-clipped": ("ddp", {"loss": "clip", "optim": {"grad_clip": 0.5}}, (4, 4)),
    "ddp-siglip-gradcache-unequal": ("ddp", {"loss": "siglip", "loss_chunk_size": 3, "micro_batch_size": 2,
                                             "grad_checkpointing": True}, (5, 3)),
    "ddp-clip-lit": ("ddp", {"loss": "clip", "lock": ["image"]}, (4, 4)),
    "manual-siglip": ("manual", {"loss": "siglip", "optim": {"grad_clip": 0.5}}, (4, 4)),
    "manual-clip-gradcache": ("manual", {"loss": "clip", "micro_batch_size": 3}, (4, 4)),
    "fsdp-clip-clipped-eval": ("fsdp", {"loss": "clip", "optim": {"grad_clip": 0.5}}, (4, 4)),
    "fsdp-siglip-gradcache-unequal": ("fsdp", {"loss": "siglip", "micro_batch_size": 2}, (6, 4)),
    "fsdp-clip-gradcache-lit-ckpt": ("fsdp", {"loss": "clip", "micro_batch_size": 3, "lock": ["text"],
                                              "grad_checkpointing": True, "optim": {"grad_clip": 0.5}}, (4, 4)),
    # Each rank draws its own patch-dropout masks: no single-process twin, but ranks must agree
    # (plain: DDP without find_unused_parameters; gradient cache: with it, masks replayed).
    "ddp-patch-dropout": ("ddp", {"loss": "clip", "patch_dropout": 0.5}, (4, 4)),
    "ddp-patch-dropout-gradcache": ("ddp", {"loss": "clip", "patch_dropout": 0.5, "micro_batch_size": 2}, (4, 4)),
}


class GlobalBatches:
    """``TrainData`` over fixed random global batches; ``rows`` picks this process's rows of each."""

    def __init__(self, sizes: tuple[int, ...], rank: int | None, context: int, crash_at: int | None = None) -> None:
        gen = torch.Generator().manual_seed(99)
        total = sum(sizes)
        self.pixels = torch.randn(8 * total, 3, 28, 28, generator=gen)
        self.ids = torch.randint(3, 500, (8 * total, context), generator=gen)
        self.ids[:, 9] = 2  # end of text
        self.total, self.crash_at = total, crash_at
        lo = 0 if rank is None else sum(sizes[:rank])
        self.rows = slice(lo, lo + (total if rank is None else sizes[rank]))

    def batches_per_epoch(self) -> int:
        return 8

    def batches(self, epoch: int, position: int):
        for step in range(position, 8):
            if step == self.crash_at:
                self.crash_at = None
                raise KeyboardInterrupt("simulated crash")
            glob = slice(step * self.total, (step + 1) * self.total)
            yield self.pixels[glob][self.rows], self.ids[glob][self.rows]


def build_case(name: str, out_dir: Path, strategy: str | None = None, steps: int = STEPS, **extra):
    """(TrainConfig, model) of a case, identical in every process."""
    from tether.train.config import TrainConfig
    from tether.train.run import prepare_model
    _, keys, _ = CASES.get(name, ("fsdp", {"loss": "clip"}, (4, 4)))
    keys = {**keys, **extra}
    # eps far above the gradients: AdamW then scales its steps with the gradient (about SGD),
    # so a gradient averaged wrongly by a factor would show, and float noise is not amplified.
    optim = {"lr": 0.05, "eps": 0.1, "warmup_steps": 1, "grad_clip": None, **keys.pop("optim", {})}
    data = {"model": "tiny-vit-28" if keys["loss"] == "clip" else "tiny-siglip-28", "steps": steps,
            "out_dir": str(out_dir), "tensorboard": False, "log_every": 1, "checkpoint_every": 100,
            "strategy": strategy or "ddp", "optim": optim, **keys}
    cfg = TrainConfig.from_dict(data)
    torch.manual_seed(1234)
    return cfg, prepare_model(cfg)


def weight_sum(model) -> dict:
    """An evaluation that needs every weight: FSDP must hand rank 0 the gathered model."""
    return {"weight_sum": float(sum(p.detach().double().sum() for p in model.parameters()))}


def train(name: str, out: Path, ctx, **kw) -> tuple[dict, dict, object]:
    """Train a case; returns (rank 0's full state dict or {}, final record, the trainer)."""
    from tether.train.trainer import Trainer
    strategy, _, sizes = CASES.get(name, ("fsdp", None, (4, 4)))
    crash_at, strategy = kw.pop("crash_at", None), kw.pop("strategy", strategy)
    cfg, model = build_case(name, out / name / kw.pop("run", "run"), strategy, **kw)
    data = GlobalBatches(sizes, ctx.rank, model.config.towers["text"].context_length, crash_at)
    trainer = Trainer(cfg, model, data, evaluate=weight_sum if "eval" in name else None, dist=ctx, progress=False)
    final = trainer.fit()
    with trainer.strategy.full_model(on_device=False) as full:
        state = {k: v.detach().clone() for k, v in full.state_dict().items()} if full is not None else {}
    return state, final, trainer


def resume_case(out: Path, ctx) -> dict:
    """FSDP: uninterrupted 4 steps vs crash after the step-2 checkpoint + resume; the saved model."""
    straight, _, trainer = train("fsdp-resume", out, ctx, steps=4, run="straight", checkpoint_every=2)
    trainer.save_model(out / "fsdp-resume" / "model")
    try:
        train("fsdp-resume", out, ctx, steps=4, run="resumed", checkpoint_every=2, crash_at=2)
        raise AssertionError("the run did not crash")
    except KeyboardInterrupt:
        pass
    resumed, _, _ = train("fsdp-resume", out, ctx, steps=4, run="resumed", checkpoint_every=2)
    # A checkpoint is the same for every strategy: a DDP run's, resumed with FSDP.
    try:
        train("fsdp-resume", out, ctx, steps=4, run="crossed", checkpoint_every=2, crash_at=2, strategy="ddp")
    except KeyboardInterrupt:
        pass
    crossed, _, _ = train("fsdp-resume", out, ctx, steps=4, run="crossed", checkpoint_every=2)
    return {"straight": straight, "resumed": resumed, "crossed": crossed}


def main() -> int:
    import torch.distributed as dist

    from tether.train.distributed import DistributedContext
    out = Path(sys.argv[1])
    ctx = DistributedContext.from_env()
    results = {}
    for name in CASES:
        state, final, trainer = train(name, out, ctx)
        results[name] = {"params": state, "final": final}
        if name.startswith("ddp-patch"):  # every rank's own weights
            gathered = [None] * ctx.world_size
            dist.all_gather_object(gathered, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
            results[name]["ranks"] = gathered
    results["fsdp-resume"] = resume_case(out, ctx)
    if ctx.is_main:
        torch.save(results, out / "results.pt")
    ctx.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
