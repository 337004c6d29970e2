"""Ordinary mistakes end in one line naming the file, key or value, what was expected and what was found.

Each case runs the command line in-process (tether.cli.main.main) and checks: exit code 1, exactly
one line on stderr starting ``tether CMD: error:``, no traceback, and the names and values that
line must carry. A bug (any other exception) keeps its traceback.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import tether
from tether.cli.main import main
from tether.errors import (CheckpointError, ConfigError, DataError, ImageDecodeError, InputError,
                           MissingProcessorError, TetherError, TokenizerError, UnknownNameError, WriteError)
from tether.tokenizer import Tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def fails(capsys, argv: list[str], *needles: str) -> str:
    """Run ``tether argv``; it must exit 1 with one error line holding every needle."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tether {argv[0]}: error: "), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path):
    """A private copy of the tiny checkpoint (tests/conftest.py), free to damage."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "ck")


@pytest.fixture
def texts(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("a red cat\na blue shoe\n")
    return path


# ---------------------------------------------------------------- the hierarchy
def test_every_error_is_a_tether_error_and_keeps_its_builtin_base():
    for cls, builtin in [(ConfigError, ValueError), (UnknownNameError, KeyError), (CheckpointError, ValueError),
                         (TokenizerError, ValueError), (InputError, ValueError), (DataError, ValueError),
                         (MissingProcessorError, RuntimeError), (WriteError, OSError)]:
        assert issubclass(cls, TetherError) and issubclass(cls, builtin), cls
    assert str(UnknownNameError("no model config named 'x'")) == "no model config named 'x'"  # not repr'd
    err = ImageDecodeError("a.png", "truncated")
    assert isinstance(err, InputError) and err.source == "a.png" and "a.png" in str(err)
    assert tether.TetherError is TetherError


def test_a_bug_keeps_its_traceback(monkeypatch):
    import tether.cli.models as models_cmd

    def buggy(args):
        return {}["rng"]

    monkeypatch.setattr(models_cmd, "run_models", buggy)
    with pytest.raises(KeyError, match="rng"):     # not flattened to "error: 'rng'"
        main(["models"])


def test_tether_debug_reraises_with_the_traceback(checkpoint, monkeypatch):
    (checkpoint / "config.json").write_text("{")
    monkeypatch.setenv("TETHER_DEBUG", "1")
    with pytest.raises(CheckpointError, match="config.json"):
        main(["info", str(checkpoint)])


# ---------------------------------------------------------------- checkpoints
def test_truncated_safetensors_names_the_file(checkpoint, capsys):
    weights = checkpoint / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])      # a half-finished download
    line = fails(capsys, ["info", str(checkpoint)], str(weights), "truncated", str(size), str(size // 2))
    assert line == fails(capsys, ["info", str(weights)])        # the file itself: the same words
    with pytest.raises(CheckpointError):
        tether.load(checkpoint)


def test_garbage_safetensors_names_the_file(tmp_path, capsys):
    junk = tmp_path / "weights.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"not json at all!" + bytes(100))
    fails(capsys, ["info", str(junk)], str(junk), "not a .safetensors file", "JSON header")
    junk.write_bytes(b"garbage")                                # shorter than the header length
    fails(capsys, ["info", str(junk)], str(junk), "8-byte header length", "7 bytes")


def test_corrupt_tether_config_says_it_is_an_invalid_tether_config(checkpoint, capsys):
    config = checkpoint / "config.json"
    text = config.read_text()
    config.write_text(text[: len(text) // 2])                   # cut mid-way: not JSON any more
    fails(capsys, ["info", str(checkpoint)], str(config), "tether config", "not valid JSON", "line")
    config.write_text(text[:5])                                 # too little left to tell the format
    fails(capsys, ["info", str(checkpoint)], "not a checkpoint layout tether knows", str(config), "not valid JSON")
    data = json.loads(text)
    data["towers"]["text"]["widht"] = 3
    config.write_text(json.dumps(data))
    fails(capsys, ["info", str(checkpoint)], str(config), "invalid tether config", "'widht'", "known:")


# ---------------------------------------------------------------- tokenizers
def _tiny_with_text_vocab(vocab_size: int):
    config = tether.get_model_config("tiny-vit-28")
    config.towers["text"].vocab_size = vocab_size
    return tether.create_model(config)


def test_a_tokenizer_larger_than_the_text_tower_is_refused_before_use(tmp_path, texts, capsys):
    model = _tiny_with_text_vocab(520)
    tether.save(model, tmp_path / "small-vocab")
    tokenizer = Tokenizer.train_bpe(["a red cat", "a blue shoe", "a green dog"] * 20, vocab_size=600,
                                    context_length=24, min_frequency=1)
    assert tokenizer.vocab_size > 520
    tokenizer.save(tmp_path / "small-vocab" / "tokenizer")      # the checkpoint now ships a bigger vocabulary
    for command in (["embed", "--texts", str(texts)], ["eval", "--dataset", "digits", "--task", "zeroshot"]):
        fails(capsys, [*command, "--model", str(tmp_path / "small-vocab"), "--out", str(tmp_path / "out")],
              str(tmp_path / "small-vocab"), f"{tokenizer.vocab_size} ids", "towers.text.vocab_size", "520")
    assert not (tmp_path / "out").exists()
    loaded = tether.load(tmp_path / "small-vocab")               # loading, converting, `tether info` still work
    with pytest.raises(TokenizerError, match="at most 520 ids"):
        loaded.embed_texts(["a red cat"])
    with pytest.raises(TokenizerError, match="at most 520 ids"):
        model.tokenizer = tokenizer                              # attaching in Python: the same check


def test_a_tokenizer_context_longer_than_the_text_tower_is_refused(tiny_model):
    long = Tokenizer.train_bpe(["a red cat"] * 5, vocab_size=600, context_length=40, min_frequency=1)
    with pytest.raises(TokenizerError, match=r"context_length is 40.*towers.text.context_length.*24"):
        tiny_model.tokenizer = long


def test_the_engine_and_the_trainer_check_a_tokenizer_set_behind_their_back(tiny_checkpoint):
    from tether.models.processors import clip_bpe_tokenizer
    from tether.train.config import TrainConfig
    from tether.train.trainer import Trainer

    model = tether.load(tiny_checkpoint)
    model.processors["text"] = clip_bpe_tokenizer(24)           # 49,408 ids for a 2,048-row table
    with pytest.raises(TokenizerError, match="49408 ids"):
        model.embed_texts(["a red cat"])
    with pytest.raises(TokenizerError, match="49408 ids"):
        Trainer(TrainConfig(device="cpu", tensorboard=False), model, data=None, progress=False)


def test_training_with_a_tokenizer_the_model_cannot_take_stops_before_step_one(tmp_path, capsys):
    from tether.models.processors import clip_bpe_tokenizer
    clip_bpe_tokenizer(24).save(tmp_path / "clip-tokenizer")
    out = tmp_path / "run"
    fails(capsys, ["train", "--no-progress", *_digits_run(out), "--set", f"tokenizer.path={tmp_path / 'clip-tokenizer'}"],
          "train.tokenizer.path", "49408 ids", "2048")
    assert not (out / "checkpoints").exists() and not (out / "model").exists()


def test_corrupt_tokenizer_json_names_the_file(checkpoint, texts, tmp_path, capsys):
    tok = checkpoint / "tokenizer" / "tokenizer.json"
    tok.write_text(tok.read_text()[:100])
    fails(capsys, ["embed", "--model", str(checkpoint), "--texts", str(texts), "--out", str(tmp_path / "o")],
          str(tok), "not a readable tokenizer.json")
    (checkpoint / "tokenizer" / "tokenizer_config.json").write_text("{'format':")
    fails(capsys, ["info", str(checkpoint)], "tokenizer_config.json", "not valid JSON")


def test_embedding_texts_without_a_tokenizer_says_so_before_any_work(tiny_checkpoint, texts, tmp_path, capsys):
    export = tmp_path / "oc"
    tether.save(tether.load(tiny_checkpoint), export, format="open_clip")
    shutil.rmtree(export / "tokenizer")                          # an OpenCLIP export of a model with no tokenizer
    images = tmp_path / "imgs"
    images.mkdir()
    fails(capsys, ["embed", "--model", str(export), "--images", str(images), "--texts", str(texts), "--out",
                   str(tmp_path / "out")], str(export), "no text processor (tokenizer)", "attach one")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- training configs
def _digits_run(out) -> list[str]:
    return ["--set", "model=tiny-vit-28", "--set", "steps=2", "--set", "batch_size=8", "--set", "workers=0",
            "--set", "tensorboard=false", "--set", 'train_data={"type": "digits", "split": "train"}',
            "--set", f"out_dir={out}"]


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny-vit-28\nsteps: 2\noptim:\n  lr: 1e-3\n   warmup_steps: 3\n")
    fails(capsys, ["train", "--config", str(bad)], str(bad), "YAML syntax error", "line 5")
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": 2,\n "loss": clip}\n')
    fails(capsys, ["train", "--config", str(bad)], str(bad), "JSON syntax error", "line 2")


@pytest.mark.parametrize("override, needles", [
    ("tokenizer.train_vocab_sise=700", ["train.tokenizer", "'train_vocab_sise'", "train_vocab_size"]),
    ('tokenizer={"path": "x", "train_vocab_size": 600}', ["train.tokenizer", "not both"]),
    ("train_data.splt=test", ["train.train_data", "['splt']", "allowed"]),
    ('val_data={"type": "digits", "spilt": "test"}', ["train.val_data", "['spilt']"]),
    ("log_every=0", ["train.log_every", "must be positive", "got 0"]),
    ("device=gpu", ["train.device='gpu'", "not a device", "'cuda:N'"]),
])
def test_bad_training_settings_fail_before_training(tmp_path, capsys, override, needles):
    out = tmp_path / "run"
    fails(capsys, ["train", "--no-progress", *_digits_run(out), "--set", override], *needles)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a CUDA device this machine must not have")
def test_a_cuda_device_on_a_machine_without_one_is_refused(tmp_path, texts, tiny_checkpoint, capsys):
    fails(capsys, ["embed", "--model", str(tiny_checkpoint), "--texts", str(texts), "--out", str(tmp_path / "o"),
                   "--device", "cuda"], "--device='cuda'", "no CUDA device")


# ---------------------------------------------------------------- options parsed then ignored
def test_embed_query_without_images_is_refused(tiny_checkpoint, texts, tmp_path, capsys):
    fails(capsys, ["embed", "--model", str(tiny_checkpoint), "--texts", str(texts), "--query", "a cat", "--out",
                   str(tmp_path / "o")], "--query", "--images")
    fails(capsys, ["embed", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--device", "gpu",
                   "--texts", str(texts)], "--device='gpu'", "not a device")
    assert not (tmp_path / "o").exists()


def test_eval_refuses_what_it_would_ignore(tiny_checkpoint, tmp_path, capsys):
    base = ["--model", str(tiny_checkpoint), "--dataset", "digits", "--out", str(tmp_path / "r")]
    fails(capsys, ["eval", *base, "--train-data", "manifest:train.csv"], "--train-data", "digits")
    fails(capsys, ["eval", "results/", *base], "unexpected argument(s) results/", "tether eval merge")
    fails(capsys, ["eval", "merge", str(tmp_path), "--model", "x", "--out", str(tmp_path / "t.csv")],
          "merge", "--model")
    assert not (tmp_path / "r").exists()


def test_the_installed_command_exits_1_with_one_line(checkpoint):
    """The real process: exit status 1, one line on stderr, no traceback."""
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    proc = subprocess.run([sys.executable, "-m", "tether.cli.main", "info", str(checkpoint)], capture_output=True,
                          text=True, env={**os.environ, "TETHER_DEBUG": ""}, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert str(weights) in proc.stderr and "truncated" in proc.stderr
