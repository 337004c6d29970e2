"""tether bind / distill: a new modality's tower trained against a frozen anchor through the trainer.

The anchor is the session's tiny CLIP checkpoint; the pairs are real Fashion-MNIST images and
point clouds drawn from them. What must hold: every parameter of the loaded model is bit for bit
the same afterwards (compared tensor by tensor, bitwise), the loss falls, the checkpoint holds
every tower and loads back, and the run resumes after a SIGKILL exactly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tether
from tether.bind import bind_config
from tether.errors import ConfigError
from tether.train.config import TrainConfig
from tether.train.run import train

pytestmark = [pytest.mark.usefixtures("one_thread")]

POINTS = {"type": "fashion_mnist_points", "split": "train", "limit": 256, "num_points": 128, "augment": True}
VAL = {"type": "fashion_mnist_points", "split": "test", "limit": 100, "num_points": 128}


def _cfg(anchor_path: Path, out: Path, **kw) -> TrainConfig:
    options = dict(out_dir=str(out), steps=12, batch_size=32, lr=3e-3, workers=0, log_every=1,
                   tensorboard=False, checkpoint_every=6, device="cpu")
    options.update(kw)
    return bind_config(str(anchor_path), "points", POINTS, **options)


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["kind"] == "train"]


@pytest.mark.slow
def test_bind_keeps_every_loaded_tensor_bitwise_and_adds_the_tower(tiny_checkpoint, fashion_mnist, tmp_path):
    before = tether.load(tiny_checkpoint).state_dict()
    final = train(_cfg(tiny_checkpoint, tmp_path / "run", val_data=VAL), progress=False)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3]), losses
    bound = tether.load(tmp_path / "run" / "model")
    assert bound.modalities == ("image", "text", "points")
    after = bound.state_dict()
    for key, value in before.items():  # anchor, text tower, projections, shared scale: untouched
        assert after[key].dtype == value.dtype and torch.equal(after[key], value), key
    new = set(after) - set(before)
    assert new and all(k.startswith(("towers.points.", "projections.points.", "logit_scales.points")) for k in new)
    # the fixed temperature stays where it started (CLIP's 1/0.07: the point tower's config has none)
    assert bound.scale("points", "image").item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert bound.scale("image", "text").item() == tether.load(tiny_checkpoint).scale().item()
    # the held-out evaluation ran through the model's own text classifier and retrieval
    assert {"zeroshot_acc1", "points_to_image_recall@1", "image_to_points_recall@5"} <= set(final)
    assert final["locked_feature_cache"]["hits"] > 0  # the anchor's features came from the cache
    from tether.data import build_source
    points = build_source(VAL).sample(0).extra["points"]
    assert torch.equal(bound.embed("points", [points]), tether.load(tmp_path / "run" / "model").embed("points", [points]))


@pytest.mark.slow
def test_learnable_scale_moves_and_fixed_scale_does_not(tiny_checkpoint, fashion_mnist, tmp_path):
    train(_cfg(tiny_checkpoint, tmp_path / "learn", steps=4, scale=5.0, learn_scale=True), progress=False)
    learned = tether.load(tmp_path / "learn" / "model")
    assert learned.scale("points").item() != pytest.approx(5.0, abs=1e-4)
    log = [json.loads(line) for line in (tmp_path / "learn" / "log.jsonl").read_text().splitlines()]
    assert log[0]["scale"] == pytest.approx(5.0, abs=0.05)  # the pair's own scale is what the trainer logs


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["cosine", "l2", "kl"])
def test_distillation_losses_decrease_on_real_pairs(tiny_checkpoint, fashion_mnist, tmp_path, loss):
    cfg = _cfg(tiny_checkpoint, tmp_path / loss, loss=loss, steps=10, checkpoint_every=100)
    train(cfg, progress=False)
    losses = _losses(tmp_path / loss)
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3]), losses
    before, after = tether.load(tiny_checkpoint).state_dict(), tether.load(tmp_path / loss / "model").state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


@pytest.mark.slow
def test_bind_resumes_after_sigkill_to_the_same_weights(tiny_checkpoint, fashion_mnist, tmp_path):
    """A run killed right after step 8 (checkpoint at 6) and rerun ends where an uninterrupted run ends."""
    def run(out: Path, kill_at: int | None) -> subprocess.CompletedProcess:
        cfg = _cfg(tiny_checkpoint, out, steps=10, checkpoint_every=6, augment=False)
        (tmp_path / f"{out.name}.json").write_text(json.dumps(cfg.to_dict()))
        # one thread, as the in-process run under one_thread: the same kernels, the same rounding
        env = {**os.environ, "TETHER_TEST_SIGKILL_AT_STEP": str(kill_at or -1), "OMP_NUM_THREADS": "1"}
        return subprocess.run([sys.executable, "-m", "tether.cli.main", "train", "--config",
                               str(tmp_path / f"{out.name}.json"), "--no-progress"], env=env, capture_output=True,
                              text=True, timeout=600)
    train(_cfg(tiny_checkpoint, tmp_path / "whole", steps=10, checkpoint_every=6), progress=False)
    killed = run(tmp_path / "killed", 8)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run(tmp_path / "killed", None)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    a = tether.load(tmp_path / "whole" / "model").state_dict()
    b = tether.load(tmp_path / "killed" / "model").state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_bind_config_sets_the_pair_and_the_lock_and_refuses_what_cannot_bind(tiny_checkpoint):
    cfg = bind_config(str(tiny_checkpoint), "points", POINTS, anchor="text")
    assert cfg.modalities == ["points", "text"] and cfg.lock == ["text"] and cfg.bind.tower["kind"] == "pointnet"
    with pytest.raises(ConfigError, match="binding uses InfoNCE"):
        bind_config(str(tiny_checkpoint), "points", POINTS, loss="siglip")
    with pytest.raises(ConfigError, match="distillation loss: it needs train.bind"):
        TrainConfig.from_dict({"loss": "cosine"})
    with pytest.raises(ConfigError, match="binding locks the anchor"):
        bind_config(str(tiny_checkpoint), "points", POINTS, lock=["points"])
    with pytest.raises(ConfigError, match="a different anchor"):
        bind_config(str(tiny_checkpoint), "image", POINTS, anchor="image", tower=None)
    with pytest.raises(ConfigError, match="unknown points tower 'huge'"):
        bind_config(str(tiny_checkpoint), "points", POINTS, tower="huge")


def test_bind_refuses_a_tower_the_model_already_has(tiny_checkpoint, tmp_path):
    cfg = bind_config(str(tiny_checkpoint), "image", POINTS, anchor="text", tower={"kind": "vit"},
                      out_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="has a 'image' tower already"):
        train(cfg, progress=False)


@pytest.mark.slow
def test_tether_bind_and_distill_commands(tiny_checkpoint, tmp_path, capsys):
    from tether.cli.main import main
    rc = main(["bind", "--model", str(tiny_checkpoint), "--modality", "imu", "--anchor", "text",
               "--data", "basic_motions", "--val-data", '{"type": "basic_motions", "split": "test"}',
               "--out", str(tmp_path / "bind"), "--steps", "3", "--batch-size", "20", "--no-progress",
               "--set", "workers=0", "--set", "tensorboard=false", "--set", "device=cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    final = json.loads(out.out[out.out.index("{"):])
    assert final["step"] == 3 and "imu_to_text_recall@1" in final
    assert tether.load(tmp_path / "bind" / "model").modalities == ("image", "text", "imu")
    rc = main(["distill", "--model", str(tiny_checkpoint), "--modality", "points", "--loss", "l2",
               "--data", json.dumps(POINTS), "--out", str(tmp_path / "distill"), "--steps", "2",
               "--batch-size", "16", "--no-progress", "--set", "workers=0", "--set", "tensorboard=false"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "distill" / "config.json").read_text())["loss"] == "l2"
    rc = main(["bind", "--model", str(tiny_checkpoint), "--modality", "depth", "--tower", "{bad",
               "--data", "basic_motions", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip() == "tether bind: error: --tower '{bad': not valid JSON (Expecting property name " \
                                      "enclosed in double quotes)"


SMALL_IMAGE = {"kind": "vit", "image_size": 28, "patch_size": 14, "width": 32, "layers": 1, "heads": 2,
               "act": "gelu", "processor": {"image_size": 28}}


@pytest.mark.slow
def test_a_smaller_image_student_distilled_beside_its_teacher_exports_as_a_model(tiny_checkpoint, fashion_mnist,
                                                                                 tmp_path):
    from tether.bind import distill
    teacher = tether.load(tiny_checkpoint)
    distill(str(tiny_checkpoint), "image@small", {"type": "fashion_mnist", "split": "test"}, tower=SMALL_IMAGE,
            out_dir=str(tmp_path / "run"), steps=8, batch_size=32, lr=3e-3, workers=0, log_every=1,
            tensorboard=False, device="cpu")
    losses = _losses(tmp_path / "run")
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    both = tether.load(tmp_path / "run" / "model")
    assert both.modalities == ("image", "text", "image@small")
    student = tether.load(tmp_path / "run" / "student")
    assert student.modalities == ("image", "text") and student.config.towers["image"].width == 32
    small = sum(p.numel() for p in student.towers["image"].parameters())
    assert small < sum(p.numel() for p in teacher.towers["image"].parameters()) / 4
    for key, value in teacher.state_dict().items():  # the text tower and the shared scale are the teacher's
        if not key.startswith(("towers.image.", "projections.image.")):
            assert torch.equal(student.state_dict()[key], value), key
    from tether.data import build_source
    images = [build_source({"type": "fashion_mnist", "split": "test"}).sample(i).image for i in range(3)]
    torch.testing.assert_close(student.embed_images(images), both.embed("image@small", images), atol=1e-6, rtol=0)
    assert torch.equal(student.embed_texts(["a photo of a shirt"]), teacher.embed_texts(["a photo of a shirt"]))
