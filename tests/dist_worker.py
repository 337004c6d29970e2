"""Worker for tests/test_distributed.py, started by torchrun (gloo, CPU):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_worker.py CASE OUTFILE [ARGS]

CASE ``losses``: every spec in ``SPECS`` for this world size in one launch. Each rank builds the same seeded model and
global batch, takes its slice, computes the distributed loss (through ``DistributedContext.wrap_loss``
and, for ``micro`` specs, the gradient cache), back-propagates, averages gradients, and rank 0
saves the reported loss of every rank, the averaged parameter gradients and the gradients of all
ranks' local embeddings to OUTFILE (torch.save). The test recomputes everything in one process.

CASE ``train``: runs ``tether train`` (``tether.cli.main.main``) with the arguments after OUTFILE,
recording which ranks call ``tether.checkpoints.save_model`` in ``OUTFILE.saved_by_rank<r>`` and a checksum of
every batch a rank trains on in ``OUTFILE.batches_rank<r>``.

CASE ``cli``: runs the tether command line with the arguments after OUTFILE (which is unused).

The helpers (``build``, ``SPECS``) are imported by the test for the single-process reference.
"""
from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F

# name -> (loss, chunk_size, local sizes (one per rank), source, micro_batch)
SPECS = {
    "clip-plain-equal": ("clip", None, (4, 4), "model", None),
    "clip-chunked-unequal": ("clip", 3, (5, 2), "model", None),
    "clip-plain-unequal": ("clip", None, (2, 5), "model", None),
    "clip-chunked-equal-gradcache": ("clip", 3, (4, 4), "model", 3),
    "clip-empty-rank": ("clip", 2, (5, 0), "raw", None),
    "siglip-plain-equal": ("siglip", None, (4, 4), "model", None),
    "siglip-chunked-unequal": ("siglip", 3, (5, 2), "model", None),
    "siglip-plain-unequal": ("siglip", None, (2, 5), "model", None),
    "siglip-chunked-unequal-gradcache": ("siglip", 3, (5, 3), "model", 2),
    "siglip-empty-rank": ("siglip", 2, (0, 5), "raw", None),
    # Three ranks: the ring takes more than one hop (with two, "next" and "previous" coincide).
    "clip-3-ranks": ("clip", 2, (3, 1, 2), "raw", None),
    "siglip-3-ranks-plain": ("siglip", None, (2, 3, 2), "raw", None),
    "siglip-3-ranks-chunked": ("siglip", 2, (3, 1, 4), "raw", None),
    "siglip-3-ranks-empty": ("siglip", None, (2, 0, 3), "raw", None),
    # Distillation: image embeddings the student, text embeddings the frozen teacher.
    "cosine-plain-unequal": ("cosine", None, (5, 2), "model", None),
    "l2-empty-rank": ("l2", None, (0, 5), "raw", None),
    "kl-chunked-unequal": ("kl", 3, (5, 2), "model", None),
    "kl-plain-equal-gradcache": ("kl", None, (4, 4), "model", 3),
    "kl-3-ranks-empty": ("kl", 2, (3, 0, 2), "raw", None),
}
DISTILL = ("cosine", "l2", "kl")


def specs_for(world: int) -> list[str]:
    return [name for name, spec in SPECS.items() if len(spec[2]) == world]


class Scalars(torch.nn.Module):
    """logit_scale / logit_bias parameters for the raw-embedding specs."""

    def __init__(self):
        super().__init__()
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = torch.nn.Parameter(torch.tensor(-5.0))

    def scale(self):
        return self.logit_scale.exp()


def build(name: str):
    """(model, inputs) of a spec, identical in every process: inputs are (pixels, ids) for model
    specs, (image_embeds, text_embeds) for raw specs (normalised, full global batch)."""
    loss, _, sizes, source, _ = SPECS[name]
    total = sum(sizes)
    torch.manual_seed(1234)
    if source == "raw":
        model = Scalars()
        image = F.normalize(torch.randn(total, 16, dtype=torch.float64), dim=1)
        text = F.normalize(image + 0.5 * torch.randn(total, 16, dtype=torch.float64), dim=1)
        return model.double(), (image, text)
    from tether import create_model
    model = create_model("tiny-vit-28" if loss == "clip" else "tiny-siglip-28").double().eval()
    ctx = model.config.towers["text"].context_length
    pixels = torch.randn(total, 3, 28, 28, dtype=torch.float64)
    ids = torch.randint(3, 500, (total, ctx))
    ids[:, 9] = 2  # end of text for the EOT-pooled tower
    return model, (pixels, ids)


def param_grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def run_spec(name: str, ctx) -> dict:
    import torch.distributed as dist

    from tether.train.config import TrainConfig
    from tether.train.gradcache import contrastive_step
    from tether.train.trainer import loss_function

    loss_kind, chunk, sizes, source, micro = SPECS[name]
    model, (a, b) = build(name)
    lo = sum(sizes[: ctx.rank])
    hi = lo + sizes[ctx.rank]
    cfg = TrainConfig(loss=loss_kind, loss_chunk_size=chunk)  # not validated: distillation without bind
    loss_fn = ctx.wrap_loss(loss_function(cfg), cfg)
    image_grad = text_grad = None
    if micro:
        loss = contrastive_step(model, a[lo:hi], b[lo:hi], loss_fn, micro_batch=micro)
    else:
        if source == "raw":
            image, text = a[lo:hi].clone().requires_grad_(), b[lo:hi].clone().requires_grad_()
        else:
            image = model.encode_image(a[lo:hi], normalize=True)
            text = model.encode_text(b[lo:hi], normalize=True)
            image.retain_grad()
            text.retain_grad()
        loss = loss_fn(image, text, model.scale(), model.logit_bias)
        loss.backward()
        image_grad, text_grad = image.grad, text.grad
    ctx.average_gradients(model)
    gathered = [None] * ctx.world_size
    dist.all_gather_object(gathered, (float(loss.detach()), image_grad, text_grad))
    out = {"losses": [g[0] for g in gathered], "params": param_grads(model)}
    for i, key in ((1, "image_grad"), (2, "text_grad")):
        if any(g[i] is not None for g in gathered):
            out[key] = torch.cat([g[i] for g in gathered])
    return out


def check_average_gradients(ctx) -> dict:
    """Parameters with a gradient on some ranks only; one never touched; a float64 one."""
    torch.manual_seed(0)
    model = torch.nn.ParameterDict({
        "everywhere": torch.nn.Parameter(torch.zeros(3)),
        "rank0_only": torch.nn.Parameter(torch.zeros(2, 2)),
        "never": torch.nn.Parameter(torch.zeros(1)),
        "float64": torch.nn.Parameter(torch.zeros(4, dtype=torch.float64)),
    })
    model["everywhere"].grad = torch.full((3,), float(ctx.rank + 1))
    if ctx.rank == 0:
        model["rank0_only"].grad = torch.ones(2, 2)
    model["float64"].grad = torch.full((4,), float(ctx.rank), dtype=torch.float64)
    ctx.average_gradients(model)
    return {name: None if p.grad is None else p.grad.clone() for name, p in model.items()}


def main() -> int:
    case, outfile = sys.argv[1], sys.argv[2]
    if case == "losses":
        from tether.train.distributed import DistributedContext
        ctx = DistributedContext.from_env()
        results = {name: run_spec(name, ctx) for name in specs_for(ctx.world_size)}
        results["average_gradients"] = check_average_gradients(ctx)
        if ctx.is_main:
            torch.save(results, outfile)
        ctx.barrier()
        return 0
    if case == "train":  # exactly what `tether train` does: the process group is joined by the trainer
        import os
        from pathlib import Path

        import tether.checkpoints
        from tether.cli.main import main as cli_main
        rank = int(os.environ["RANK"])
        original = tether.checkpoints.save_model

        def spy(model, path, *args, **kwargs):
            Path(f"{outfile}.saved_by_rank{rank}").write_text(str(path))
            return original(model, path, *args, **kwargs)

        tether.checkpoints.save_model = spy

        from tether.train.trainer import Trainer
        train_step = Trainer._train_step

        def record_batch(self, pixels, input_ids):  # which samples this rank trains on
            with open(f"{outfile}.batches_rank{rank}", "a") as f:
                f.write(f"{self.step} {pixels.double().sum().item():.6f} {pixels.shape[0]}\n")
            return train_step(self, pixels, input_ids)

        Trainer._train_step = record_batch
        return cli_main(["train", *sys.argv[3:]])
    if case == "cli":  # any tether command, exactly as the command line runs it (OUTFILE unused)
        from tether.cli.main import main as cli_main
        return cli_main(sys.argv[3:])
    raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    sys.exit(main())
