"""tether's own checkpoint format and the file/string embedding API."""
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import tether
from tether.checkpoints import CheckpointError, detect_format
from tether.preprocess import ImageDecodeError
from tolerances import assert_within_rounding


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model                                       # tests/conftest.py


def _images(tmp_path, n=3):
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (40 + 7 * i, 30), (40 * i, 100, 200 - 30 * i)).save(p)
        paths.append(p)
    return paths


def test_save_load_roundtrip_gives_equal_outputs(model, tmp_path):
    path = tether.save(model, tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "tokenizer"]
    assert detect_format(path) == "tether"
    loaded = tether.load(path)
    images = _images(tmp_path)
    texts = ["a photo of a red cat", "a large blue coat"]
    assert torch.equal(loaded.tokenizer(texts), model.tokenizer(texts))
    assert torch.allclose(loaded.embed_images(images), model.embed_images(images), atol=1e-6)
    assert torch.allclose(loaded.embed_texts(texts), model.embed_texts(texts), atol=1e-6)
    assert loaded.preprocessor.config == model.preprocessor.config
    assert loaded.scale().item() == pytest.approx(model.scale().item())


def test_embed_apis_accept_files_pil_and_strings(model, tmp_path):
    paths = _images(tmp_path)
    from_paths = model.embed_images(paths, batch_size=2)
    from_pil = model.embed_images([Image.open(p) for p in paths])
    assert from_paths.dtype == torch.float32 and from_paths.shape == (3, 64)
    assert torch.allclose(from_paths, from_pil, atol=1e-6)
    assert torch.allclose(from_paths.norm(dim=1), torch.ones(3), atol=1e-5)
    pixels = model.preprocessor.batch(paths)
    assert torch.allclose(from_paths, model.encode_image(pixels, normalize=True), atol=1e-6)
    one = model.embed_texts("a red cat")
    assert one.shape == (1, 64)
    long_text = " ".join(["cat"] * 500)
    ids = model.tokenizer([long_text])
    assert ids.shape == (1, 24) and int(ids[0, -1]) == model.tokenizer.eos_id


def test_bad_image_error_names_the_file(model, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        model.embed_images([bad])


def test_overwrite_is_atomic_and_complete(model, tmp_path):
    path = tmp_path / "ckpt"
    tether.save(model, path)
    tether.save(model, path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    tether.load(path)


def test_load_errors_are_specific(model, tmp_path):
    path = tether.save(model, tmp_path / "ckpt")
    from safetensors.torch import load_file, save_file
    weights = load_file(path / "model.safetensors")
    weights["projections.text.weight"] = torch.zeros(3, 3)
    save_file(weights, path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"projections.text.weight.*\(64, 96\).*\(3, 3\)"):
        tether.load(path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="expected a tether directory"):
        tether.load(tmp_path / "junk")
    with pytest.raises(FileNotFoundError):
        tether.load(tmp_path / "nowhere")
    cfg = json.loads((path / "config.json").read_text())
    cfg["towers"]["image"]["widht"] = 3
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="widht"):
        tether.load(path)


FIXTURES = Path(__file__).parent / "fixtures"


def test_version_1_checkpoint_loads_with_the_same_embeddings(tmp_path):
    """tests/fixtures/tether_v1 was written by the tether_format 1 code (tests/fixtures/make_tether_v1.py)."""
    from safetensors.torch import load_file

    v1 = FIXTURES / "tether_v1"
    assert json.loads((v1 / "config.json").read_text())["tether_format"] == 1
    expected = load_file(FIXTURES / "tether_v1_expected.safetensors")
    model = tether.load(v1)
    image, text = model.config.towers["image"], model.config.towers["text"]
    assert (image.projection, text.projection, text.projection_bias) == ("linear", "linear", True)
    assert model.preprocessor.config.std == (0.25, 0.25, 0.25) and model.tokenizer.context_length == 16
    assert torch.equal(model.tokenizer(["a photo of a red cat", "a blue shoe", "green"]), expected["input_ids"])
    # The fixture's embeddings were computed on the machine that wrote it; another CPU's BLAS sums in
    # another order, so they agree within float32 rounding (the longest sum: the MLP width).
    terms = max(t.mlp_dim or 4 * t.width for t in (image, text))
    with torch.no_grad():
        assert_within_rounding(model.encode_image(expected["pixels"], normalize=True), expected["image_embeds"],
                               terms, "image embeddings")
        assert_within_rounding(model.encode_text(expected["input_ids"], normalize=True), expected["text_embeds"],
                               terms, "text embeddings")
    again = tether.load(tether.save(model, tmp_path / "v2"))  # written as version 2, read back the same
    assert json.loads((tmp_path / "v2" / "config.json").read_text())["tether_format"] == 2
    with torch.no_grad():  # same machine, same shapes: the reloaded model gives the same bits as the loaded one
        assert torch.equal(again.encode_text(expected["input_ids"], normalize=True),
                           model.encode_text(expected["input_ids"], normalize=True))


def test_newer_format_version_is_refused(model, tmp_path):
    path = tether.save(model, tmp_path / "ckpt")
    cfg = json.loads((path / "config.json").read_text())
    cfg["tether_format"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="tether_format 99"):
        tether.load(path)
