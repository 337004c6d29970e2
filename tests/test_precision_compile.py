"""bf16 autocast, torch.compile and activation checkpointing, checked on the CPU.

The trainer's ``precision: bf16`` (``torch.autocast(device, bfloat16)``), ``compile: true``
(``torch.compile``) and ``grad_checkpointing: true`` are not GPU-specific. Here each one, and
the combinations with each other and with the gradient cache (``micro_batch_size``), is run on
the CPU against fp32 eager:

- the losses compute in float32 whatever the embeddings' dtype and even inside autocast;
- bf16 training really runs its matmuls in bf16, keeps fp32 weights, follows the fp32 loss
  curve, and saves an fp32 model that ``tether.load`` reads;
- checkpointed gradients are identical to plain ones (fp32 and bf16, with the gradient cache);
- a compiled model (inductor, the default backend) trains like eager, resumes, and checkpoints
  keys without torch.compile's ``_orig_mod.`` prefix; the combinations with bf16, checkpointing
  and the gradient cache use the ``aot_eager`` backend (Dynamo capture and AOTAutograd, where
  integration bugs live, without a second inductor C++ build: one costs 30-80 s on 2 cores).

The models are tiny-vit-28 and tiny-siglip-28 (1-layer towers where something is compiled), the
data a learnable synthetic task in memory, so the file needs no dataset except for the
``tether.train.train`` test.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

import tether
from tether.losses import (clip_loss, cosine_distill_loss, infonce_rows, l2_distill_loss, siglip_block,
                           siglip_loss, similarity_kl_loss)
from tether.models import AlignedModel, get_model_config
from tether.train.config import TrainConfig
from tether.train.gradcache import contrastive_step
from tether.train.trainer import Trainer

BF16 = torch.bfloat16


# Tiny tensors: one thread avoids OpenMP hand-offs (tests/conftest.py) and keeps the inductor
# kernels built for one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


def bf16_autocast():
    return torch.autocast("cpu", dtype=BF16)


# --------------------------------------------------------------------------------------------
# Models, data, runs
# --------------------------------------------------------------------------------------------

def tiny(name="tiny-vit-28", layers=None, seed=0, patch_dropout=0.0):
    torch.manual_seed(seed)
    cfg = get_model_config(name)
    if layers is not None:
        cfg.towers["image"].layers = cfg.towers["text"].layers = layers
    cfg.towers["image"].patch_dropout = patch_dropout
    return AlignedModel(cfg)


class Synthetic:
    """A learnable TrainData in memory: 10 classes, each an image prototype plus noise and a
    fixed 5-token caption (end token 2, then padding). Batches are functions of (epoch, index)."""

    def __init__(self, batch=32, n_batches=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.protos = torch.randn(10, 3, 28, 28, generator=g)
        self.captions = torch.randint(3, 500, (10, 5), generator=g)
        self.batch, self.n, self.seed = batch, n_batches, seed

    def batches_per_epoch(self):
        return self.n

    def batch_at(self, epoch, index):
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch * 1009 + index)
        y = torch.randint(0, 10, (self.batch,), generator=g)
        pixels = self.protos[y] + 0.5 * torch.randn(self.batch, 3, 28, 28, generator=g)
        ids = torch.zeros(self.batch, 24, dtype=torch.long)
        ids[:, :5] = self.captions[y]
        ids[:, 5] = 2
        return pixels, ids

    def batches(self, epoch, position):
        for i in range(position, self.n):
            yield self.batch_at(epoch, i)

    def skipped(self):
        return {}


def run_config(out_dir, **overrides):
    data = {"steps": 6, "batch_size": 32, "out_dir": str(out_dir), "device": "cpu", "tensorboard": False,
            "workers": 0, "log_every": 1, "checkpoint_every": 1000, "optim": {"lr": 2e-3, "warmup_steps": 10}}
    data.update(overrides)
    return TrainConfig.from_dict(data)


def fit(model, out_dir, **overrides):
    """Train ``model`` with the Trainer; returns (per-step training losses, trainer)."""
    trainer = Trainer(run_config(out_dir, **overrides), model, Synthetic(), progress=False)
    trainer.fit()
    log = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in log if r["kind"] == "train"], trainer


def clip_fn(img, txt, scale, bias):
    return clip_loss(img, txt, scale)


def siglip_fn(img, txt, scale, bias):
    return siglip_loss(img, txt, scale, bias)


def step_grads(model, pixels, ids, loss_fn=clip_fn, micro=None, autocast=None, encoder=None):
    """Loss and parameter gradients of one contrastive step (the trainer's step function),
    run through ``encoder`` (e.g. the compiled model) when given."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)                      # the same patch-dropout masks in every call
    loss = contrastive_step(model if encoder is None else encoder, pixels, ids, loss_fn, micro_batch=micro, autocast=autocast)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def batch(n=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 28, 28, generator=g)
    ids = torch.randint(3, 500, (n, 24), generator=g)
    ids[:, 4 + torch.arange(n) % 7] = 2         # captions of different lengths
    return pixels, ids


def rel_err(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-30))


def assert_same_grads(got, want, tol):
    """Every parameter's gradient within ``tol`` of the reference, relative to its norm."""
    assert got.keys() == want.keys() and "logit_scale" in want
    errors = {key: rel_err(got[key], want[key]) for key in want}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tol, (worst, errors[worst])


class CountingCompile:
    """``torch.compile`` with the aot_eager backend that counts compiled graphs and their runs."""

    def __init__(self):
        from torch._dynamo.backends.registry import lookup_backend
        self.real, self.aot_eager = torch.compile, lookup_backend("aot_eager")
        self.graphs = self.runs = 0

    def backend(self, gm, example_inputs):
        self.graphs += 1
        compiled = self.aot_eager(gm, example_inputs)

        def run(*args):
            self.runs += 1
            return compiled(*args)
        return run

    def __call__(self, model=None, **kwargs):
        kwargs["backend"] = self.backend
        return self.real(model, **kwargs) if model is not None else self.real(**kwargs)


@pytest.fixture
def counting_compile(monkeypatch):
    counting = CountingCompile()
    monkeypatch.setattr(torch, "compile", counting)
    return counting


# --------------------------------------------------------------------------------------------
# Losses: float32 compute for bf16 inputs and under autocast
# --------------------------------------------------------------------------------------------

def unit(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1).to(dtype)


@pytest.mark.parametrize("which", ["clip", "siglip"])
@pytest.mark.parametrize("chunk", [None, 7])
def test_losses_compute_bf16_inputs_in_float32(which, chunk):
    """bf16 embeddings give the float32 loss of those same values (rounded once, to bf16) and
    bf16 gradients equal to the float32 ones rounded to bf16 (a bf16 GEMM would be off by
    several bf16 ulps)."""
    x, y = unit(64, 32, 1, BF16), unit(64, 32, 2, BF16)
    if which == "clip":
        fn = lambda a, b: clip_loss(a, b, 30.0, chunk_size=chunk)  # noqa: E731
    else:
        fn = lambda a, b: siglip_loss(a, b, 30.0, -10.0, chunk_size=chunk)  # noqa: E731
    xa, ya = x.clone().requires_grad_(), y.clone().requires_grad_()
    loss = fn(xa, ya)
    loss.backward()
    xr, yr = x.float().requires_grad_(), y.float().requires_grad_()
    ref = fn(xr, yr)
    ref.backward()
    assert loss.dtype == BF16 and xa.grad.dtype == BF16 and ya.grad.dtype == BF16
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=2 ** -8)   # one bf16 rounding
    for got, want in ((xa.grad, xr.grad), (ya.grad, yr.grad)):
        torch.testing.assert_close(got.float(), want, rtol=2 ** -8, atol=1e-3 * float(want.abs().max()))


def test_losses_ignore_an_enclosing_autocast():
    """The trainer calls the loss inside its bf16 autocast region: float32 embeddings must still
    give the float32 loss and gradients (the N x N similarity GEMM must not run in bf16)."""
    x, y = unit(96, 32, 3), unit(96, 32, 4)
    t, b = torch.tensor(40.0, requires_grad=True), torch.tensor(-10.0, requires_grad=True)
    cases = {
        "clip": lambda x, y: clip_loss(x, y, t),
        "clip tiled": lambda x, y: clip_loss(x, y, t, chunk_size=32),
        "siglip": lambda x, y: siglip_loss(x, y, t, b),
        "siglip tiled": lambda x, y: siglip_loss(x, y, t, b, chunk_size=32),
        "infonce_rows": lambda x, y: infonce_rows(x[:40], y, t, 0).mean(),
        "siglip_block": lambda x, y: siglip_block(x[:40], y[40:], t, b, positives=False) / 40,
        "cosine": lambda x, y: cosine_distill_loss(x, y),
        "l2": lambda x, y: l2_distill_loss(x, y),
        "similarity_kl": lambda x, y: similarity_kl_loss(x, y, y, x, temperature=0.05),
        "similarity_kl chunked": lambda x, y: similarity_kl_loss(x, y, y, x, temperature=0.05, chunk_size=32),
    }
    for name, fn in cases.items():
        results = []
        for use_autocast in (False, True):
            xa, ya = x.clone().requires_grad_(), y.clone().requires_grad_()
            t.grad = b.grad = None
            with bf16_autocast() if use_autocast else torch.autocast("cpu", enabled=False):
                loss = fn(xa, ya)
            loss.backward()
            results.append((loss.detach(), xa.grad, ya.grad))
        (plain, gx, gy), (auto, ax, ay) = results
        assert auto.dtype == torch.float32, name
        torch.testing.assert_close(auto, plain, rtol=1e-6, atol=1e-7, msg=name)
        torch.testing.assert_close(ax, gx, rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(ay, gy, rtol=1e-5, atol=1e-7, msg=name)


def test_distillation_losses_take_bf16_inputs():
    s, t = unit(32, 16, 5, BF16), unit(32, 16, 6, BF16)
    for fn in (cosine_distill_loss, l2_distill_loss, lambda a, b: similarity_kl_loss(a, b, b, a, 0.1)):
        sa = s.clone().requires_grad_()
        loss = fn(sa, t)
        loss.backward()
        ref = fn(s.float(), t.float())
        assert loss.dtype == BF16 and sa.grad.dtype == BF16
        assert float(loss.detach()) == pytest.approx(float(ref), rel=2 ** -8)


# --------------------------------------------------------------------------------------------
# bf16 autocast
# --------------------------------------------------------------------------------------------

def test_bf16_training_runs_in_bf16_keeps_fp32_weights_and_tracks_fp32(tmp_path):
    fp32_losses, _ = fit(tiny(), tmp_path / "fp32", steps=30)
    model = tiny()
    seen = set()
    model.towers["image"].transformer.blocks[0].mlp.fc1.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    model.towers["text"].transformer.blocks[0].attn.in_proj.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    bf16_losses, trainer = fit(model, tmp_path / "bf16", steps=30, precision="bf16")

    assert seen == {BF16}                                   # autocast really ran the matmuls in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(v.dtype == torch.float32 for v in load_file(
        tmp_path / "bf16" / "checkpoints" / "step_00000030" / "model.safetensors").values())
    for state in trainer.optimizer.state.values():          # AdamW moments stay fp32 too
        assert all(v.dtype == torch.float32 for v in state.values() if v.dim() > 0)
    assert len(bf16_losses) == 30
    assert sum(bf16_losses[-5:]) / 5 < 0.5 * sum(bf16_losses[:3]) / 3   # it learns
    # the bf16 loss curve follows the fp32 one: step by step early, and where it ends up
    for a, b in zip(bf16_losses[:8], fp32_losses[:8]):
        assert a == pytest.approx(b, rel=0.03)
    assert sum(bf16_losses[-5:]) == pytest.approx(sum(fp32_losses[-5:]), rel=0.1)


def test_bf16_train_api_saves_an_fp32_model_that_loads(tmp_path, fashion_mnist):
    """``tether.train.train`` with precision bf16 (and the gradient cache) on Fashion-MNIST."""
    from tether.train.run import train
    out = tmp_path / "run"
    cfg = TrainConfig.from_dict({
        "model": "tiny-vit-28", "steps": 25, "batch_size": 64, "micro_batch_size": 24, "precision": "bf16",
        "workers": 0, "out_dir": str(out), "device": "cpu", "tensorboard": False, "log_every": 1,
        "checkpoint_every": 1000, "optim": {"lr": 2e-3, "warmup_steps": 3},
        "train_data": {"type": "fashion_mnist", "split": "train"}, "tokenizer": {"train_vocab_size": 600}})
    torch.manual_seed(0)
    train(cfg, progress=False)
    losses = [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert len(losses) == 25 and sum(losses[-5:]) / 5 < 0.92 * sum(losses[:3]) / 3   # 4.4 -> 3.8

    saved = load_file(out / "model" / "model.safetensors")
    assert saved and all(v.dtype == torch.float32 for v in saved.values())
    model = tether.load(out / "model")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    img = model.embed_images([Image.new("L", (28, 28), 128)])
    txt = model.embed_texts(["a photo of a sneaker", "a photo of a shirt"])
    assert img.dtype == txt.dtype == torch.float32 and img.shape == (1, 64) and txt.shape == (2, 64)
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()


def test_gradient_cache_under_bf16_matches_the_full_batch_step():
    """Micro-batching under bf16 changes GEMM shapes, so not bitwise; it must stay well inside the
    bf16 rounding noise (the distance between bf16 and fp32 gradients) of the full-batch step:
    a re-encoding pass run without autocast, for one, would be off by about that noise."""
    model = tiny(patch_dropout=0.25).train()
    pixels, ids = batch(12)
    _, fp32 = step_grads(model, pixels, ids)
    full_loss, full = step_grads(model, pixels, ids, autocast=bf16_autocast)
    cached_loss, cached = step_grads(model, pixels, ids, micro=5, autocast=bf16_autocast)
    assert float(cached_loss) == pytest.approx(float(full_loss), rel=1e-2)
    assert full.keys() == cached.keys() == fp32.keys()
    noise = {key: rel_err(full[key], fp32[key]) for key in full}
    assert max(noise.values()) > 1e-2                       # bf16 really was used (2-5% here)
    for key in full:                                        # (0.3-0.6% here)
        assert rel_err(cached[key], full[key]) <= max(0.5 * noise[key], 2e-3), key


# --------------------------------------------------------------------------------------------
# Activation checkpointing
# --------------------------------------------------------------------------------------------

def count_forwards(module, calls, key):
    """Count ``module.forward`` runs (module hooks do not fire in checkpoint recomputation)."""
    forward = module.forward

    def counted(*args, **kwargs):
        calls[key] += 1
        return forward(*args, **kwargs)
    module.forward = counted


@pytest.mark.parametrize("name,loss_fn", [("tiny-vit-28", clip_fn), ("tiny-siglip-28", siglip_fn)])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_grad_checkpointing_gives_the_same_gradients(name, loss_fn, precision):
    """Checkpointed blocks are recomputed in the backward (they run twice), under the same
    autocast and random state, so the gradients are those of the plain backward."""
    autocast = bf16_autocast if precision == "bf16" else None
    model = tiny(name, patch_dropout=0.25).train()
    pixels, ids = batch(9)
    want_loss, want = step_grads(model, pixels, ids, loss_fn, autocast=autocast)

    calls = {"image": 0, "text": 0}
    count_forwards(model.towers["image"].transformer.blocks[0], calls, "image")
    count_forwards(model.towers["text"].transformer.blocks[0], calls, "text")
    model.set_grad_checkpointing(True)
    got_loss, got = step_grads(model, pixels, ids, loss_fn, autocast=autocast)
    assert calls == {"image": 2, "text": 2}                 # forward + recomputation in the backward
    assert float(got_loss) == float(want_loss)
    assert_same_grads(got, want, 1e-6)

    # with the gradient cache too: the full-batch fp32 gradients (the cache's own tolerance)
    if precision == "fp32":
        calls.update(image=0, text=0)
        cached_loss, cached = step_grads(model, pixels, ids, loss_fn, micro=4, autocast=autocast)
        assert calls == {"image": 3 + 3 * 2, "text": 3 + 3 * 2}   # pass 1 plain, pass 3 checkpointed
        assert float(cached_loss) == pytest.approx(float(want_loss), rel=1e-6)
        assert_same_grads(cached, want, 1e-5)


def test_prepare_model_turns_checkpointing_on_in_both_towers():
    from tether.train.run import prepare_model
    on = prepare_model(TrainConfig.from_dict({"grad_checkpointing": True}))
    off = prepare_model(TrainConfig.from_dict({}))
    assert on.towers["image"].transformer.grad_checkpointing and on.towers["text"].transformer.grad_checkpointing
    assert not off.towers["image"].transformer.grad_checkpointing and not off.towers["text"].transformer.grad_checkpointing


# --------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")),
                    reason="inductor builds C++ kernels: needs g++ or clang++ (apt-get install g++)")
def test_compile_inductor_trains_like_eager_resumes_and_saves_plain_keys(tmp_path):
    """The real thing: inductor's C++ kernels. Six eager steps, against three compiled steps,
    a fresh compiled Trainer resuming at step 3 and running to 6 (warmup covers all six steps,
    so the learning rates do not depend on ``steps``)."""
    eager_losses, eager = fit(tiny(layers=1), tmp_path / "eager", steps=6)
    first, _ = fit(tiny(layers=1), tmp_path / "compiled", steps=3, compile=True)
    counters = torch._dynamo.utils.counters
    assert counters["frames"]["ok"] >= 1 and not counters["graph_break"], dict(counters["graph_break"])

    weights = load_file(tmp_path / "compiled" / "checkpoints" / "step_00000003" / "model.safetensors")
    assert weights.keys() == tiny(layers=1).state_dict().keys()
    assert not any(k.startswith("_orig_mod.") for k in weights)

    resumed_model = tiny(layers=1, seed=99)                 # other weights: the checkpoint must win
    second, _ = fit(resumed_model, tmp_path / "compiled", steps=6, compile=True)
    losses = first + second[-3:]
    assert len(second) == 6 - 3 + 3                         # the log is appended to: 3 + 3 steps
    assert losses == pytest.approx(eager_losses, rel=1e-3)   # compile reorders float ops: loose
    for key, value in eager.model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value, rtol=1e-3, atol=1e-4, msg=key)

    tether.save(resumed_model, tmp_path / "saved")
    loaded = tether.load(tmp_path / "saved")
    for key, value in resumed_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.slow
@pytest.mark.parametrize("precision,checkpointing,micro", [
    ("bf16", False, None), ("bf16", True, None), ("fp32", False, 12), ("bf16", True, 12)])
def test_compile_combinations_train_like_eager(tmp_path, counting_compile, precision, checkpointing, micro):
    """compile with bf16, checkpointing and the gradient cache: the same loss curve as eager."""
    def run(name, compile):
        model = tiny(layers=2)              # 2 blocks: the first is checkpointed, the last pooled
        model.set_grad_checkpointing(checkpointing)
        return fit(model, tmp_path / name, steps=4, compile=compile, precision=precision,
                   micro_batch_size=micro)[0]
    eager = run("eager", False)
    compiled = run("compiled", True)
    assert not torch._dynamo.utils.counters["graph_break"]
    assert counting_compile.runs >= 4
    tol = 1e-4 if precision == "fp32" else 5e-3        # aot_eager moves bf16 roundings: 1e-3 here
    assert compiled == pytest.approx(eager, rel=tol)


def test_compiled_checkpointed_gradients_equal_plain_eager(counting_compile):
    model = tiny(layers=2, patch_dropout=0.25).train()
    pixels, ids = batch(8)
    want_loss, want = step_grads(model, pixels, ids)
    model.set_grad_checkpointing(True)
    got_loss, got = step_grads(model, pixels, ids, encoder=torch.compile(model))
    assert counting_compile.runs >= 1
    assert float(got_loss) == pytest.approx(float(want_loss), rel=1e-6)
    assert_same_grads(got, want, 1e-5)


@pytest.mark.slow
def test_compile_with_the_gradient_cache_runs_compiled_code(tmp_path, counting_compile):
    fit(tiny(layers=1), tmp_path / "run", steps=1, compile=True, micro_batch_size=12)
    assert counting_compile.runs >= 1
