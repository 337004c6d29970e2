"""The trainer: config checking, LiT locking, exact resume after SIGKILL, and what resume checks."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tether.cli.main import main
from tether.config import ConfigError
from tether.train.config import load_train_config
from tether.train.resume import ResumeMismatchError
from tether.train.run import prepare_model, train
from tether.train.schedule import lr_at

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


def _config(tmp_path, out, steps=20, extra=None):
    cfg = {"model": "tiny-vit-28", "steps": steps, "batch_size": 32, "workers": 0, "out_dir": str(out),
           "checkpoint_every": 5, "keep_checkpoints": 2, "log_every": 5, "tensorboard": False,
           "patch_dropout": 0.25, "optim": {"lr": 1e-3, "warmup_steps": 5},
           "train_data": {"type": "digits", "split": "train"}, "tokenizer": {"train_vocab_size": 600}}
    cfg.update(extra or {})
    path = tmp_path / f"{out.name}.json"
    path.write_text(json.dumps(cfg))
    return path


def _train_command(config):
    return [sys.executable, "-m", "tether.cli.main", "train", "--config", str(config), "--no-progress"]


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count in every run: bitwise-equal math
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_train_command(_config(tmp_path, straight)), check=True, env=env, capture_output=True)

    cmd = _train_command(_config(tmp_path, killed))
    # killed right after step 12: the newest checkpoint is step 10, so steps 11-12 are lost and redone
    crash = subprocess.run(cmd, env={**env, "TETHER_TEST_SIGKILL_AT_STEP": "12"}, capture_output=True)
    assert crash.returncode == -signal.SIGKILL, crash.stderr.decode()[-2000:]
    assert (killed / "checkpoints" / "latest").read_text().strip() == "step_00000010"
    assert not (killed / "model").exists()
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "resumed from" in resumed.stdout and "at step 10" in resumed.stdout

    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 20


# ------------------------------------------------------------------ what resume checks
def _short_run(out, **changes):
    """A 2-step run on scikit-learn's digits, checkpointed at every step; ``changes`` as --set pairs."""
    base = {"steps": 2, "batch_size": 16, "workers": 0, "out_dir": str(out), "checkpoint_every": 1,
            "log_every": 1, "tensorboard": False, "optim.warmup_steps": 1, "optim.lr": 1e-3,
            "train_data": {"type": "digits", "split": "train"}, "tokenizer": {"train_vocab_size": 600}}
    base.update(changes)
    return load_train_config(None, [f"{k}={json.dumps(v)}" for k, v in base.items()])


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    """A finished 2-step run; each test copies it (a resume appends to the run)."""
    out = tmp_path_factory.mktemp("resume") / "run"
    train(_short_run(out), progress=False)
    return out


@pytest.fixture
def run_dir(two_step_run, tmp_path):
    import shutil
    return shutil.copytree(two_step_run, tmp_path / "run")


def _latest(out):
    return (out / "checkpoints" / "latest").read_text().strip()


def test_resume_refuses_changed_settings_with_a_diff(run_dir, capsys):
    cfg = _short_run(run_dir, **{"optim.lr": 2e-3, "batch_size": 8, "steps": 3})
    with pytest.raises(ResumeMismatchError) as err:
        train(cfg, progress=False)
    message = str(err.value)
    assert "optim.lr: 0.001 -> 0.002\n" in message and "batch_size: 16 -> 8\n" in message
    assert "steps: 2 -> 3 (may change)" in message
    assert "--allow-changed batch_size --allow-changed optim.lr" in message
    assert _latest(run_dir) == "step_00000002"  # nothing was trained
    # the same from the command line: one error, the diff, exit status 1
    config = run_dir.parent / "changed.json"
    config.write_text(json.dumps({**cfg.to_dict(), "batch_size": 16}))
    assert main(["train", "--config", str(config), "--no-progress"]) == 1
    printed = capsys.readouterr().err
    assert "optim.lr: 0.001 -> 0.002" in printed and "batch_size" not in printed
    # an architecture change under the same model name (e.g. a named config edited since) is refused too
    state = torch.load(run_dir / "checkpoints" / "step_00000002" / "train_state.pt", weights_only=False)
    state["model_config"]["towers"]["text"]["act"] = "quick_gelu"
    torch.save(state, run_dir / "checkpoints" / "step_00000002" / "train_state.pt")
    with pytest.raises(ResumeMismatchError, match=r"model_config.towers.text.act: quick_gelu -> gelu\n.*"
                                                   r"--allow-changed model "):
        train(_short_run(run_dir), progress=False)


def test_resume_allows_more_steps_and_other_bookkeeping(run_dir, capsys):
    capsys.readouterr()
    train(_short_run(run_dir, steps=4, log_every=2, checkpoint_every=3, device="cpu"), progress=False)
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 2" in out
    assert "resume: log_every changed: 1 -> 2 (allowed)" in out
    assert "schedule now ends at step 4 instead of 2" in out
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 4]
    assert _latest(run_dir) == "step_00000004"


def test_allow_changed_lets_a_refused_key_change(run_dir, capsys):
    config = run_dir.parent / "lower-lr.json"
    config.write_text(json.dumps(_short_run(run_dir, steps=3, **{"optim.lr": 5e-4}).to_dict()))
    assert main(["train", "--config", str(config), "--no-progress", "--allow-changed", "optim.lr"]) == 0
    assert "resume: optim.lr changed: 0.001 -> 0.0005 (allowed)" in capsys.readouterr().out
    assert _latest(run_dir) == "step_00000003"
    # the config key: a whole section at once
    train(_short_run(run_dir, steps=4, resume_allow=["optim"], **{"optim.lr": 1e-4, "optim.eps": 1e-8}),
          progress=False)
    assert _latest(run_dir) == "step_00000004"
    with pytest.raises(ConfigError, match="train.resume_allow: unknown key 'optim.lrr'"):
        _short_run(run_dir, resume_allow=["optim.lrr"])
    assert main(["train", "--config", str(config), "--allow-changed", "lr"]) == 1
    assert "unknown key 'lr'" in capsys.readouterr().err


def test_a_checkpoint_without_a_stored_config_resumes_with_a_warning(run_dir):
    state_file = run_dir / "checkpoints" / "step_00000002" / "train_state.pt"
    state = torch.load(state_file, weights_only=False)
    del state["config"], state["model_config"]  # as an older tether wrote it
    torch.save(state, state_file)
    with pytest.warns(UserWarning, match="stores no training config"):
        train(_short_run(run_dir, steps=3, **{"optim.lr": 2e-3}), progress=False)
    assert _latest(run_dir) == "step_00000003"
    assert "config" in torch.load(run_dir / "checkpoints" / "step_00000003" / "train_state.pt", weights_only=False)
