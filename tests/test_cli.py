"""The tether command line, run in-process through tether.cli.main.main."""
import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import tether
from tether.cli.main import main
from tether.tokenizer import Tokenizer

CAPTIONS = [f"a {c} {t}" for c in ("red", "blue", "small") for t in ("cat", "dog", "shoe", "bag")] * 5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = tether.create_model("tiny-vit-28")
    model.tokenizer = Tokenizer.train_bpe(CAPTIONS, vocab_size=600, context_length=24)
    return tether.save(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.mark.parametrize("command", ["models", "info", "convert", "embed"])
def test_every_command_has_teaching_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "Example" in capsys.readouterr().out


def test_models_lists_named_configs(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ViT-B-32" in out and "SigLIP-B-16" in out and "tiny-vit-28" in out


def test_info_and_convert_roundtrip(checkpoint, tmp_path, capsys):
    assert main(["info", str(checkpoint), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "tether" and info["config"]["embed_dim"] == 64
    assert main(["convert", str(checkpoint), str(tmp_path / "oc"), "--to", "open_clip"]) == 0
    assert main(["convert", str(tmp_path / "oc"), str(tmp_path / "back"), "--to", "tether"]) == 0
    original, back = tether.load(checkpoint), tether.load(tmp_path / "back")
    pixels = torch.randn(2, 3, 28, 28)
    assert torch.allclose(original.encode_image(pixels), back.encode_image(pixels), atol=1e-5)


def test_embed_skips_and_reports_bad_images(checkpoint, tmp_path, capsys):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (30, 20 + i), (50 * i, 90, 10)).save(folder / "sub" / f"ok{i}.png")
    (folder / "bad.jpg").write_bytes(b"definitely not an image")
    texts = tmp_path / "texts.txt"
    texts.write_text("a red cat\n\na blue shoe\n")
    out = tmp_path / "out"
    assert main(["embed", "--model", str(checkpoint), "--images", str(folder), "--texts", str(texts),
                 "--out", str(out), "--query", "a red cat"]) == 0
    printed = capsys.readouterr()
    assert "3 embedded, 1 skipped" in printed.out and "bad.jpg" in printed.err
    index = json.loads((out / "images.json").read_text())
    assert index["count"] == 3 and index["failures"][0]["item"].endswith("bad.jpg")
    emb = load_file(out / "images.safetensors")["embeddings"]
    assert emb.shape == (3, 64) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert json.loads((out / "texts.json").read_text())["failures"] == [{"item": "", "reason": "empty text"}]


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "no such file" in capsys.readouterr().err
