"""Distributed losses under torchrun (2 processes, gloo): the same gradients as one process.

One torchrun launch runs every loss spec of tests/dist_worker.py (clip / siglip / distillation, plain / chunked,
equal / unequal / empty local batches, direct and through the gradient cache); the test recomputes
each with ``clip_loss`` / ``siglip_loss`` / the distillation losses on the whole batch in this
process. Further launches run ``tether train`` and ``tether distill`` for a few steps on Fashion-MNIST.
"""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from tether.losses import clip_loss, siglip_loss
from tether.train.binding import distill_loss
from tether.train.config import TrainConfig
from torchrun_launch import run_torchrun
from tether.train.distributed import DistributedContext, distributed_clip_loss, distributed_siglip_loss

HERE = Path(__file__).resolve().parent
WORKER = HERE / "dist_worker.py"
spec = importlib.util.spec_from_file_location("dist_worker", WORKER)
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)

pytestmark = [pytest.mark.slow,  # every test launches torchrun
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="needs torch.distributed with gloo")]

REL = 1e-5


def torchrun(*args, nproc=2, timeout=240):
    return run_torchrun(WORKER, *args, nproc=nproc, timeout=timeout)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def reference(name: str) -> dict:
    """Loss and gradients of one process holding the whole batch."""
    from tether.train.gradcache import contrastive_step
    loss_kind, chunk, sizes, source, micro = worker.SPECS[name]
    model, (a, b) = worker.build(name)

    def loss_fn(image, text, scale, bias):
        if loss_kind == "clip":
            return clip_loss(image, text, scale)
        if loss_kind == "siglip":
            return siglip_loss(image, text, scale, bias)
        return distill_loss(TrainConfig(loss=loss_kind))(image, text, scale, bias)  # the single-process loss

    out = {}
    if micro:
        out["loss"] = float(contrastive_step(model, a, b, loss_fn))
    else:
        if source == "raw":
            image, text = a.clone().requires_grad_(), b.clone().requires_grad_()
        else:
            image, text = model.encode_image(a, normalize=True), model.encode_text(b, normalize=True)
            image.retain_grad()
            text.retain_grad()
        loss = loss_fn(image, text, model.scale(), model.logit_bias)
        loss.backward()
        out.update(loss=float(loss.detach()), image_grad=image.grad, text_grad=text.grad)
    out["params"] = worker.param_grads(model)
    return out


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    """world size -> spec name -> results (one torchrun launch per world size, on first use)."""
    cache = {}

    def get(world: int) -> dict:
        if world not in cache:
            path = tmp_path_factory.mktemp("dist") / f"results{world}.pt"
            try:
                torchrun("losses", path, nproc=world)
                cache[world] = torch.load(path)
            except BaseException as err:  # fail every test of this world size, launch once
                cache[world] = err
        if isinstance(cache[world], BaseException):
            raise cache[world]
        return cache[world]

    return get


@pytest.mark.parametrize("name", list(worker.SPECS))
def test_distributed_loss_matches_single_process(distributed_results, name):
    world = len(worker.SPECS[name][2])
    got, want = distributed_results(world)[name], reference(name)
    # The reported value is the global loss, identical on every rank.
    for value in got["losses"]:
        assert value == pytest.approx(want["loss"], rel=REL)
    # Averaged parameter gradients (encoders, projections, logit_scale, logit_bias) are exact.
    assert got["params"].keys() == want["params"].keys()
    kind = worker.SPECS[name][0]
    if kind in worker.DISTILL:  # the teacher (text side) and the scale are frozen: only the student learns
        assert not any(k.startswith(("towers.text", "projections.text", "logit")) for k in want["params"])
        assert worker.SPECS[name][3] == "raw" or any(k.startswith("towers.image.") for k in want["params"])
    else:
        assert "logit_scale" in want["params"]
    if kind == "siglip":
        assert "logit_bias" in want["params"]
    errors = {key: rel_err(got["params"][key], want["params"][key]) for key in want["params"]}
    if errors:  # raw distillation specs have no trainable parameter: their embedding gradients are checked below
        worst = max(errors, key=errors.get)
        assert errors[worst] < REL, f"{worst}: relative error {errors[worst]:.2e}"
    # Each rank's local embedding gradient is W times the single-process one (it back-propagates
    # W times its share of the loss; averaging the parameter gradients divides the W back out).
    if "image_grad" in want:
        for key in ("image_grad", "text_grad"):
            if kind in worker.DISTILL and key == "text_grad":
                assert want.get(key) is None and key not in got  # the teacher gets no gradient
                continue
            assert got[key].shape == want[key].shape
            assert rel_err(got[key] / world, want[key]) < REL, key


def test_average_gradients_agrees_on_missing_gradients(distributed_results):
    got = distributed_results(2)["average_gradients"]  # ranks 0 and 1
    assert torch.equal(got["everywhere"], torch.full((3,), 1.5))
    assert torch.equal(got["rank0_only"], torch.full((2, 2), 0.5))  # zeros stood in on rank 1
    assert got["never"] is None
    assert got["float64"].dtype == torch.float64 and torch.equal(got["float64"], torch.full((4,), 0.5, dtype=torch.float64))


def test_single_process_falls_back_to_the_plain_losses():
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    text = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    assert torch.equal(distributed_clip_loss(image, text, 10.0), clip_loss(image, text, 10.0))
    assert torch.equal(distributed_siglip_loss(image, text, 10.0, -5.0), siglip_loss(image, text, 10.0, -5.0))
    ctx = DistributedContext()

    def fn(*a):
        return 0

    assert ctx.wrap_loss(fn, None) is fn


@pytest.fixture(scope="module")
def train_run(tmp_path_factory, fashion_mnist):
    """``tether train`` under torchrun, 2 processes, SigLIP ring with tiled blocks, 4 steps."""
    tmp = tmp_path_factory.mktemp("train")
    out, marker = tmp / "run", tmp / "spy"
    sets = {"model": "tiny-siglip-28", "loss": "siglip", "loss_chunk_size": 5, "steps": 4, "batch_size": 16,
            "workers": 0, "out_dir": str(out), "log_every": 1, "checkpoint_every": 2, "tensorboard": False,
            "train_data": {"type": "fashion_mnist", "split": "train"},
            "tokenizer": {"train_vocab_size": 600}, "optim": {"warmup_steps": 1}}
    args = [f"--set={key}={json.dumps(value)}" for key, value in sets.items()]
    torchrun("train", marker, *args, "--no-progress")
    return out, marker


def test_tether_train_under_torchrun(train_run):
    out, marker = train_run
    # Only rank 0 saves the model and writes logs; both ranks took 4 steps.
    assert sorted(p.name for p in marker.parent.glob("spy.saved_by_rank*")) == ["spy.saved_by_rank0"]
    assert (out / "model").is_dir() and (out / "final.json").is_file()
    assert (out / "checkpoints" / "latest").is_file()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4]  # one writer: no duplicated records
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    for rank in range(2):
        lines = (marker.parent / f"spy.batches_rank{rank}").read_text().splitlines()
        assert [int(line.split()[0]) for line in lines] == [0, 1, 2, 3]


def test_ranks_train_on_different_samples(train_run):
    _, marker = train_run
    first = [(marker.parent / f"spy.batches_rank{rank}").read_text().splitlines()[0] for rank in range(2)]
    assert first[0] != first[1]


def test_tether_distill_under_torchrun(tiny_checkpoint, fashion_mnist, tmp_path):
    """`tether distill` (KL: the teacher rows gathered across ranks) runs data-parallel through the
    trainer; rank 0 writes one log and the model, whose teacher towers are the loaded ones bit for bit."""
    import tether
    out = tmp_path / "run"
    data = {"type": "fashion_mnist_points", "split": "train", "limit": 64, "num_points": 64, "augment": True}
    torchrun("cli", tmp_path / "unused", "distill", "--model", tiny_checkpoint, "--modality", "points",
             "--loss", "kl", "--data", json.dumps(data), "--out", out, "--steps", "3", "--batch-size", "16",
             "--no-progress", "--set", "workers=0", "--set", "tensorboard=false", "--set", "log_every=1")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in records if r["kind"] == "train")
    student, teacher = tether.load(out / "model"), tether.load(tiny_checkpoint)
    assert student.modalities == ("image", "text", "points")
    after = student.state_dict()
    assert all(torch.equal(after[key], value) for key, value in teacher.state_dict().items())
