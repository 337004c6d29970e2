"""The tether command line, run in-process through tether.cli.main.main."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import tether
from tether.cli.main import main


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint                                  # tests/conftest.py


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
    from tether.curate import read_embeddings, read_metadata

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (30, 20 + i), (50 * i, 90, 10)).save(folder / "sub" / f"ok{i}.png")
    (folder / "bad.jpg").write_bytes(b"definitely not an image")
    out = tmp_path / "out"
    assert main(["embed", "--model", str(checkpoint), "--images", str(folder), "--out", str(out), "--quiet",
                 "--query", "a red cat"]) == 0
    printed = capsys.readouterr().out
    assert "embedded 3 of 4 inputs" in printed and "skipped bad.jpg: corrupt_image" in printed
    assert read_metadata(out).column("key").to_pylist() == ["sub/ok0.png", "sub/ok1.png", "sub/ok2.png"]
    emb = read_embeddings(out, "image")
    assert emb.shape == (3, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=2e-3)  # float16 files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"][0]["key"] == "bad.jpg" and summary["skips"] == {"corrupt_image": 1}


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "no such file" in capsys.readouterr().err
