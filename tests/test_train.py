"""The trainer: config checking, LiT locking, and exact resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tether.config import ConfigError
from tether.train.config import load_train_config
from tether.train.run import prepare_model
from tether.train.schedule import lr_at

pytestmark = pytest.mark.usefixtures("fashion_mnist")   # skips without the dataset (tests/conftest.py)


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 10\noptim:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: .*optim.lr: expected a number"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="unknown key 'stpes'"):
        load_train_config(None, ["stpes=3"])
    with pytest.raises(ConfigError, match="train.loss"):
        load_train_config(None, ["loss=triplet"])


def test_schedule_warms_up_then_decays_to_floor():
    lrs = [lr_at(s, 1.0, 10, 110, min_lr=0.1) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(110, 1.0, 10, 110, min_lr=0.1) == pytest.approx(0.1)


def test_lit_locks_the_image_tower():
    cfg = load_train_config(None, ['lock=["image"]'])
    model = prepare_model(cfg)
    assert not any(p.requires_grad for p in model.towers["image"].parameters())
    assert all(p.requires_grad for p in model.projections["image"].parameters())
    model.train()
    assert not model.towers["image"].training and model.towers["text"].training


def _config(tmp_path, out, steps=60, extra=None):
    cfg = {"model": "tiny-vit-28", "steps": steps, "batch_size": 32, "workers": 0, "out_dir": str(out),
           "checkpoint_every": 5, "keep_checkpoints": 2, "log_every": 5, "tensorboard": False,
           "patch_dropout": 0.25, "optim": {"lr": 1e-3, "warmup_steps": 5},
           "train_data": {"type": "fashion_mnist", "split": "train"}, "tokenizer": {"train_vocab_size": 600}}
    cfg.update(extra or {})
    path = tmp_path / f"{out.name}.json"
    path.write_text(json.dumps(cfg))
    return path


def _train_command(config):
    return [sys.executable, "-m", "tether.cli.main", "train", "--config", str(config), "--no-progress"]


def test_sigkill_and_resume_gives_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count in every run: bitwise-equal math
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_train_command(_config(tmp_path, straight)), check=True, env=env, capture_output=True)

    cmd = _train_command(_config(tmp_path, killed))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step_00000010":
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists()
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "resumed from" in resumed.stdout + resumed.stderr

    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 60
