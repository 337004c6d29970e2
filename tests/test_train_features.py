"""Training features the docs advertise: AdamW's no-decay groups, held-out evaluation (``val_data``),
TensorBoard event files, and gradient clipping in one process.

The evaluation and TensorBoard tests share one 4-step run on scikit-learn's digits (no dataset
package needed: scikit-learn ships them); the others build the model and the trainer directly.
"""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import tether
from tether.checkpoints.open_clip_layout import to_open_clip_key
from tether.models import AlignedModel, create_model, get_model_config
from tether.train.config import TrainConfig
from tether.train.optim import param_groups
from tether.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models (tests/conftest.py)


# ---------------------------------------------------------------- AdamW's no-decay groups
def _groups(model) -> tuple[set[str], set[str]]:
    """(decayed names, undecayed names) of ``param_groups``, checked to be a partition of the trainable ones."""
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, weight_decay=0.2)
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    d, nd = {names[id(p)] for p in decay["params"]}, {names[id(p)] for p in no_decay["params"]}
    assert not d & nd
    assert d | nd == {n for n, p in model.named_parameters() if p.requires_grad}
    return d, nd


def test_vit_and_text_transformer_decay_only_their_weight_matrices():
    model = create_model("tiny-vit-28")
    decay, no_decay = _groups(model)
    # written out by hand: every Linear/conv weight matrix, nothing else
    blocks = [f"towers.{m}.transformer.blocks.{i}.{w}.weight" for m, n in (("image", 3), ("text", 2))
              for i in range(n) for w in ("attn.in_proj", "attn.out_proj", "mlp.fc1", "mlp.fc2")]
    assert decay == {*blocks, "towers.image.patch_embed.weight", "projections.image.weight",
                     "projections.text.weight"}
    for name in ("logit_scale", "towers.image.class_embedding", "towers.image.positional_embedding",
                 "towers.image.ln_pre.weight", "towers.image.ln_post.bias",
                 "towers.image.transformer.blocks.0.ln_1.weight", "towers.image.transformer.blocks.0.attn.in_proj.bias",
                 "towers.text.token_embedding.weight", "towers.text.positional_embedding",
                 "towers.text.ln_final.weight", "towers.text.transformer.blocks.1.mlp.fc2.bias"):
        assert name in no_decay, name


def _open_clip_excludes(name: str, param: torch.Tensor) -> bool:
    """open_clip_train/main.py's rule (open_clip 3.3.0), on OpenCLIP's parameter names."""
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


@pytest.mark.parametrize("name", ["tiny-vit-28", "tiny-rn-64"])
def test_no_decay_matches_open_clip_except_for_two_dimensional_embeddings(name):
    """OpenCLIP decays the 2-D position and token embeddings; tether leaves every embedding undecayed.
    Every other parameter is in the same group under both rules."""
    model = create_model(name)
    _, no_decay = _groups(model)
    differ = set()
    for tname, param in model.named_parameters():
        hit = to_open_clip_key(tname, model.config.towers["image"].kind)
        assert hit is not None, tname
        if (tname in no_decay) != _open_clip_excludes(hit[0], param):
            differ.add(hit[0])
    embeddings = {"positional_embedding", "token_embedding.weight"}
    embeddings |= {"visual.positional_embedding"} if name.startswith("tiny-vit") else \
        {"visual.attnpool.positional_embedding"}
    assert differ == embeddings


def test_a_tower_decides_its_own_no_decay_and_a_plain_module_gets_the_default():
    class Colour(nn.Module):
        output_dim = 4

        def __init__(self) -> None:
            super().__init__()
            self.mix = nn.Linear(3, 4)
            self.gain = nn.Parameter(torch.ones(4, 4))

        def forward(self, pixels):
            return self.mix(pixels.mean(dim=(2, 3))) @ self.gain

    class ColourKeepsMix(Colour):
        def no_decay(self, name, param):
            return name.startswith("mix.")   # its own call: the bias and the matrix of `mix`

    cfg = get_model_config("tiny-vit-28")
    cfg.towers["image"].kind = "module"
    plain = _groups(AlignedModel(cfg, towers={"image": Colour()}))
    assert {"towers.image.mix.weight", "towers.image.gain"} <= plain[0] and "towers.image.mix.bias" in plain[1]
    own = _groups(AlignedModel(cfg, towers={"image": ColourKeepsMix()}))
    assert {"towers.image.mix.weight", "towers.image.mix.bias"} <= own[1] and "towers.image.gain" in own[0]
    # the text tower and the projections are unaffected by the image tower's rule
    assert {n for n in own[0] if not n.startswith("towers.image.")} == \
        {n for n in plain[0] if not n.startswith("towers.image.")}


def test_locked_tower_parameters_are_in_no_group():
    model = create_model("tiny-vit-28")
    from tether.train.optim import lock_tower
    lock_tower(model, "image")
    decay, no_decay = _groups(model)
    assert not any(n.startswith("towers.image.") for n in decay | no_decay)
    assert "projections.image.weight" in decay


# ---------------------------------------------------------------- held-out evaluation and TensorBoard
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """4 steps on the digits' train split, evaluating on its test split at step 2 and at the end."""
    from tether.train.run import train
    out = tmp_path_factory.mktemp("digits_run")
    cfg = TrainConfig.from_dict({
        "model": "tiny-vit-28", "steps": 4, "batch_size": 32, "workers": 0, "out_dir": str(out),
        "checkpoint_every": 100, "log_every": 2, "eval_every": 2, "tensorboard": True, "device": "cpu",
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "train_data": {"type": "digits", "split": "train"}, "val_data": {"type": "digits", "split": "test"},
        "tokenizer": {"train_vocab_size": 600}})
    final = train(cfg, progress=False)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return out, final, log


EVAL_KEYS = {"val_samples", "zeroshot_acc1", "zeroshot_acc5", "zeroshot_mean_per_class_recall",
             *(f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in (1, 5, 10))}


def test_val_data_writes_eval_records_to_the_log(digits_run):
    from tether.data.digits import DIGIT_CLASSES, DIGIT_TEMPLATES, digits_arrays
    out, final, log = digits_run
    evals = [r for r in log if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]            # eval_every=2, and always at the end
    assert [r["step"] for r in log if r["kind"] == "train"] == [2, 4]
    images, labels = digits_arrays("test")
    for record in evals:
        assert set(record) == {"step", "kind", *EVAL_KEYS}
        assert record["val_samples"] == len(labels)
        assert all(0 <= record[k] <= 1 for k in EVAL_KEYS - {"val_samples"})
    assert {k: final[k] for k in EVAL_KEYS} == {k: evals[-1][k] for k in EVAL_KEYS}
    # the final zero-shot accuracy, recomputed from the saved model without the evaluation driver
    model = tether.load(out / "model")
    image_embeds = model.embed_images(list(images))
    text_embeds = model.embed_texts([DIGIT_TEMPLATES[0].format(c) for c in DIGIT_CLASSES])
    acc = float(((image_embeds @ text_embeds.T).argmax(dim=1).numpy() == labels).mean())
    # both sides embed the same images in different batch shapes: a near-tie may flip one argmax
    assert abs(acc - evals[-1]["zeroshot_acc1"]) <= 1 / len(labels) + 1e-12


def test_tensorboard_scalars_equal_the_json_log(digits_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out, _, log = digits_run
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in log:
        for key, value in record.items():
            if key not in ("step", "kind"):
                expected.setdefault(f"{record['kind']}/{key}", []).append((record["step"], value))
    assert set(acc.Tags()["scalars"]) == set(expected)
    assert {"train/loss", "train/lr", "train/scale", "train/grad_norm", "eval/zeroshot_acc1"} <= set(expected)
    for tag, points in expected.items():
        # TensorBoard stores float32: compare with the logged value rounded the same way
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert got == [(step, float(np.float32(v))) for step, v in points], tag


# ---------------------------------------------------------------- gradient clipping
def _batch(model, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = model.config.towers["text"]
    pixels = torch.randn(n, 3, 28, 28, generator=g)
    ids = torch.randint(3, 500, (n, text.context_length), generator=g)
    ids[:, 0] = 1
    ids[torch.arange(n), torch.randint(2, text.context_length, (n,), generator=g)] = text.eot_token_id
    return pixels, ids


def _gradients_at_the_optimizer_step(model, grad_clip, tmp_path) -> tuple[dict, dict[str, torch.Tensor]]:
    """One trainer step; -> (its log record, the parameter gradients the optimizer was given)."""
    cfg = TrainConfig.from_dict({"model": "tiny-vit-28", "steps": 10, "batch_size": 8, "device": "cpu",
                                 "out_dir": str(tmp_path), "optim": {"grad_clip": grad_clip}})
    trainer = Trainer(cfg, model, data=None, progress=False)
    seen: dict[str, torch.Tensor] = {}
    step = trainer.optimizer.step

    def capture(*args, **kwargs):
        seen.update({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
        return step(*args, **kwargs)

    trainer.optimizer.step = capture
    return trainer._train_step(*_batch(model)), seen


def _norm(grads: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))


@pytest.mark.parametrize("clip_factor", [0.1, 10.0])
def test_grad_clip_scales_the_global_norm_and_logs_the_raw_one(clip_factor, tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny-vit-28")
    record, raw = _gradients_at_the_optimizer_step(copy.deepcopy(model), None, tmp_path / "raw")
    assert "grad_norm" not in record               # no clipping: nothing measured
    raw_norm = _norm(raw)
    clip = clip_factor * raw_norm
    record, clipped = _gradients_at_the_optimizer_step(copy.deepcopy(model), clip, tmp_path / "clipped")
    assert clipped.keys() == raw.keys()
    # the logged norm is the one before clipping (float32 sums in another order: a few ulps)
    assert record["grad_norm"] == pytest.approx(raw_norm, rel=1e-5)
    coef = min(clip / (record["grad_norm"] + 1e-6), 1.0)   # torch.nn.utils.clip_grad_norm_'s factor
    for name, grad in clipped.items():
        torch.testing.assert_close(grad, raw[name] * coef, rtol=1e-5, atol=1e-9 * raw_norm)
    if clip_factor < 1:
        assert _norm(clipped) == pytest.approx(clip, rel=1e-5)
    else:                                          # under the limit: the gradients are left alone
        assert all(torch.equal(clipped[n], raw[n]) for n in raw)
