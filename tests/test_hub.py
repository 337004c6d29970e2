"""Published models by name (tether.hub), offline, through huggingface_hub's own download code.

Tiny random models are written in transformers' layout (save_pretrained) and OpenCLIP's hub layout
(tether.save(format="open_clip"), proven equal to OpenCLIP's in test_open_clip_checkpoints), placed in
a Hugging Face cache laid out as huggingface_hub lays it out (tests/hf_cache.py), and loaded by name
with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import json
import os
import subprocess

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image

import tether
from tether.checkpoints import CheckpointError
from tether.hub import download, fetch, names, verify
from tether.preprocess import ImagePreprocessor, PreprocessConfig

from hf_cache import blob_of, put_in_cache, repo_dir

transformers = pytest.importorskip("transformers")
from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-5  # fp32 features of the same weights through two implementations (as test_hf_checkpoints)
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache under HF_HOME, downloads off, tether's digest records in tmp."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TETHER_CACHE", str(tmp_path / "tether-cache"))
    monkeypatch.setattr(names, "_ADDED", {})
    return tmp_path / "hf" / "hub"


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _tower(hidden, layers, heads, mlp, act, **extra):
    return dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=mlp,
                hidden_act=act, **extra)


def _clip(seed: int) -> CLIPModel:
    cfg = CLIPConfig(vision_config=_tower(32, 1, 2, 48, "quick_gelu", image_size=28, patch_size=7),
                     text_config=_tower(40, 2, 2, 60, "gelu", vocab_size=80, max_position_embeddings=12,
                                        eos_token_id=79), projection_dim=24)
    torch.manual_seed(seed)
    return _perturb(CLIPModel(cfg), seed)


def _siglip(seed: int) -> SiglipModel:
    cfg = SiglipConfig(vision_config=_tower(32, 1, 2, 50, "gelu_pytorch_tanh", image_size=28, patch_size=7),
                       text_config=_tower(48, 2, 4, 72, "gelu", vocab_size=64, max_position_embeddings=12,
                                          projection_size=32))
    torch.manual_seed(seed)
    return _perturb(SiglipModel(cfg), seed)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """transformers' save_pretrained directories: CLIP (two versions) and SigLIP, with the models."""
    root = tmp_path_factory.mktemp("hf_models")
    out = {}
    for key, model in (("clip", _clip(1)), ("clip-v2", _clip(2)), ("siglip", _siglip(3))):
        model.save_pretrained(root / key)
        out[key] = (root / key, model)
    return out


@pytest.fixture(scope="module")
def oc_dir(tiny_model, tmp_path_factory):
    """The tiny tether model (with its tokenizer) in OpenCLIP's hub layout."""
    return tether.save(tiny_model, tmp_path_factory.mktemp("oc") / "tiny", format="open_clip")


def _pixels(size=28, seed=0):
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _ids(vocab, length, eos, seed=0):
    ids = torch.randint(3, vocab - 1, (3, length), generator=torch.Generator().manual_seed(seed))
    if eos is not None:
        ids[:, -1] = eos
    return ids


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _assert_matches_hf(model, hf, eos):
    cfg = hf.config.text_config
    pixels, ids = _pixels(), _ids(cfg.vocab_size, cfg.max_position_embeddings, eos)
    with torch.no_grad():
        img = (model.encode_image(pixels) - _features(hf.get_image_features(pixel_values=pixels))).abs().max()
        txt = (model.encode_text(ids) - _features(hf.get_text_features(input_ids=ids))).abs().max()
    assert img < TOL and txt < TOL, (float(img), float(txt))


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# ----------------------------------------------------------------------------- the cache layout
def test_cache_layout_is_what_huggingface_hub_reads(hf_cache, hf_dirs):
    snapshot = put_in_cache(hf_cache, "acme/tiny-clip", hf_dirs["clip"][0], COMMIT_A)
    info = huggingface_hub.scan_cache_dir(hf_cache)
    assert not info.warnings
    (repo,) = info.repos
    (rev,) = repo.revisions
    assert (repo.repo_id, rev.commit_hash, set(rev.refs)) == ("acme/tiny-clip", COMMIT_A, {"main"})
    assert {f.file_name for f in rev.files} == {"config.json", "model.safetensors"}
    found = huggingface_hub.try_to_load_from_cache("acme/tiny-clip", "model.safetensors", cache_dir=hf_cache)
    assert found == str(snapshot / "model.safetensors")


# ----------------------------------------------------------------------------- loading by name
def test_transformers_layout_by_hub_id(hf_cache, hf_dirs, monkeypatch):
    for key, repo in (("clip", "acme/tiny-clip"), ("siglip", "acme/tiny-siglip")):
        put_in_cache(hf_cache, repo, hf_dirs[key][0], COMMIT_A)
    calls = []
    real = huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        calls.append((args[1], kwargs["local_files_only"], kwargs["cache_dir"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    _assert_matches_hf(tether.load("acme/tiny-clip"), hf_dirs["clip"][1], eos=79)
    _assert_matches_hf(tether.load("acme/tiny-siglip"), hf_dirs["siglip"][1], eos=None)
    assert ("model.safetensors", True, str(hf_cache)) in calls  # HF_HOME read at call time, downloads off


def test_open_clip_layout_with_hf_hub_prefix(hf_cache, oc_dir, tiny_model):
    put_in_cache(hf_cache, "acme/tiny-oc", oc_dir, COMMIT_A)
    model = tether.load("hf-hub:acme/tiny-oc")
    texts = ["a red cat", "a photo of a blue shoe"]
    assert (model.embed_texts(texts) - tiny_model.embed_texts(texts)).abs().max() < TOL
    with torch.no_grad():
        assert (model.encode_image(_pixels()) - tiny_model.encode_image(_pixels())).abs().max() < TOL


def test_revisions_branches_tags_and_commits(hf_cache, hf_dirs):
    put_in_cache(hf_cache, "acme/tiny-clip", hf_dirs["clip"][0], COMMIT_A, refs=("main",))
    put_in_cache(hf_cache, "acme/tiny-clip", hf_dirs["clip-v2"][0], COMMIT_B, refs=("v2",))
    v1, v2 = hf_dirs["clip"][1], hf_dirs["clip-v2"][1]
    _assert_matches_hf(tether.load("acme/tiny-clip"), v1, eos=79)
    _assert_matches_hf(tether.load("acme/tiny-clip@main"), v1, eos=79)
    _assert_matches_hf(tether.load("acme/tiny-clip@v2"), v2, eos=79)
    _assert_matches_hf(tether.load(f"acme/tiny-clip@{COMMIT_B}"), v2, eos=79)
    with pytest.raises(CheckpointError) as err:
        tether.load("acme/tiny-clip@v3")
    assert "acme/tiny-clip@v3" in _one_line(err) and "not in the Hugging Face cache" in str(err.value)


def test_registry_name_applies_the_registry_preprocessing(hf_cache, oc_dir, tiny_model):
    snapshot = put_in_cache(hf_cache, "acme/tiny-oc", oc_dir, COMMIT_A)
    weights_sha = blob_of(snapshot, "open_clip_model.safetensors").name
    pre = dict(image_size=28, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], resize_mode="squash",
               interpolation="bilinear")
    saved = json.loads((oc_dir / "open_clip_config.json").read_text())["preprocess_cfg"]
    assert saved["mean"] != pre["mean"] and saved["resize_mode"] != pre["resize_mode"]  # the files say otherwise
    context = tiny_model.config.towers["text"].context_length
    names.register_pretrained("tiny-vit-28/acme", dict(
        hub_id="acme/tiny-oc", format="open_clip", files=["open_clip_model.safetensors"],
        sha256={"open_clip_model.safetensors": weights_sha}, preprocess=pre,
        tokenizer={"kind": "clip", "context_length": context}, license="MIT"))
    model = tether.load("tiny-vit-28/acme")
    assert model.preprocessor.config == PreprocessConfig(**pre)
    assert model.config.towers["image"].processor["mean"] == pre["mean"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    with torch.no_grad():
        want = tiny_model.encode_image(ImagePreprocessor(PreprocessConfig(**pre))(image)[None], normalize=True)
    assert (model.embed_images([image]) - want).abs().max() < TOL


def test_wrong_registry_checksum_is_one_line_naming_file_expected_found(hf_cache, oc_dir):
    snapshot = put_in_cache(hf_cache, "acme/tiny-oc", oc_dir, COMMIT_A)
    real = blob_of(snapshot, "open_clip_model.safetensors").name
    names.register_pretrained("tiny-vit-28/acme", dict(
        hub_id="acme/tiny-oc", format="open_clip", files=["open_clip_model.safetensors"],
        sha256={"open_clip_model.safetensors": "0" * 64}))
    with pytest.raises(CheckpointError) as err:
        tether.load("tiny-vit-28/acme")
    text = _one_line(err)
    assert "open_clip_model.safetensors" in text and f"expected sha256 {'0' * 64}" in text and f"found {real}" in text


def test_corrupted_blob_fails_its_hub_checksum(hf_cache, hf_dirs):
    snapshot = put_in_cache(hf_cache, "acme/tiny-clip", hf_dirs["clip"][0], COMMIT_A)
    blob = blob_of(snapshot, "model.safetensors")
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # the last weight byte: still a readable safetensors file, silently wrong weights
    blob.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        tether.load("acme/tiny-clip")
    text = _one_line(err)
    assert "model.safetensors" in text and f"expected sha256 {blob.name}" in text
    assert f"found {verify.hash_file(blob, 'sha256')}" in text


def test_verified_digest_is_remembered_until_the_file_changes(hf_cache, hf_dirs, monkeypatch):
    snapshot = put_in_cache(hf_cache, "acme/tiny-clip", hf_dirs["clip"][0], COMMIT_A)
    hashed = []
    real = verify.hash_file
    monkeypatch.setattr(verify, "hash_file", lambda path, algo: hashed.append(path.name) or real(path, algo))
    blob = blob_of(snapshot, "model.safetensors")
    fetch("acme/tiny-clip")
    assert blob.name in hashed
    hashed.clear()
    fetch("acme/tiny-clip")
    assert hashed == []
    os.utime(blob, ns=(blob.stat().st_atime_ns, blob.stat().st_mtime_ns + 10**9))
    fetch("acme/tiny-clip")
    assert hashed == [blob.name]


def test_git_blob_ids_match_git(tmp_path):
    file = tmp_path / "config.json"
    file.write_text('{"model_type": "clip"}\n')
    git = subprocess.run(["git", "hash-object", str(file)], capture_output=True, text=True)
    if git.returncode != 0:
        pytest.skip("git not available")
    assert verify.hash_file(file, "git-sha1") == git.stdout.strip()


def test_safetensors_preferred_over_pickles(hf_cache, hf_dirs):
    directory, hf = hf_dirs["clip"]
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    import io
    buffer = io.BytesIO()
    torch.save(hf.state_dict(), buffer)
    put_in_cache(hf_cache, "acme/both", {**files, "pytorch_model.bin": buffer.getvalue()}, COMMIT_A)
    assert [p.name for p in fetch("acme/both").weights] == ["model.safetensors"]
    del files["model.safetensors"]
    put_in_cache(hf_cache, "acme/pickle", {**files, "pytorch_model.bin": buffer.getvalue()}, COMMIT_A)
    assert [p.name for p in fetch("acme/pickle").weights] == ["pytorch_model.bin"]
    _assert_matches_hf(tether.load("acme/pickle"), hf, eos=79)


def test_hf_hub_prefix_picks_open_clip_in_a_repository_with_both_layouts(hf_cache, oc_dir, tiny_model, tmp_path):
    hf_files = tether.save(tiny_model, tmp_path / "hf", format="hf")
    both = {p.relative_to(d).as_posix(): p.read_bytes() for d in (hf_files, oc_dir)
            for p in d.rglob("*") if p.is_file()}
    put_in_cache(hf_cache, "acme/both-layouts", both, COMMIT_A)
    assert fetch("acme/both-layouts").format == "hf"
    oc = tether.hub.fetch_name("hf-hub:acme/both-layouts")
    assert oc.format == "open_clip" and oc.target.name == "open_clip_model.safetensors"


# ----------------------------------------------------------------------------- errors
def test_missing_weights_file_is_named(hf_cache, oc_dir):
    files = {p.relative_to(oc_dir).as_posix(): p.read_bytes() for p in oc_dir.rglob("*") if p.is_file()}
    del files["open_clip_model.safetensors"]
    put_in_cache(hf_cache, "acme/no-weights", files, COMMIT_A)
    with pytest.raises(CheckpointError) as err:
        tether.load("hf-hub:acme/no-weights")
    text = _one_line(err)
    assert "missing weights" in text and "open_clip_model.safetensors" in text and "open_clip_config.json" in text


@pytest.mark.parametrize("name, suggestion", [
    ("ViT-B-32/opena", "ViT-B-32/openai"),
    ("vit-b-32/laion2b", "ViT-B-32/laion2b_s34b_b79k"),
    ("ViT-B32", "did you mean ViT-B-32"),
    ("SigLIP-B16", "SigLIP-B-16"),
])
def test_unknown_names_suggest_close_matches(hf_cache, name, suggestion):
    with pytest.raises(CheckpointError) as err:
        tether.load(name)
    assert suggestion in _one_line(err)


def test_offline_without_cache_says_how_to_prefetch(hf_cache):
    with pytest.raises(CheckpointError) as err:
        tether.load("acme/absent")
    text = _one_line(err)
    assert "HF_HUB_OFFLINE=1" in text and "tether fetch acme/absent" in text
    assert "huggingface-cli download acme/absent" in text and str(hf_cache) in text


def test_no_network_falls_back_to_the_cache(hf_cache, hf_dirs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def unreachable(self, *args, **kwargs):
        raise ConnectionError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    with pytest.raises(CheckpointError) as err:
        tether.load("acme/tiny-clip")
    text = _one_line(err)
    assert "cannot be reached (ConnectionError: [Errno 101] Network is unreachable)" in text
    assert "tether fetch acme/tiny-clip" in text
    put_in_cache(hf_cache, "acme/tiny-clip", hf_dirs["clip"][0], COMMIT_A)
    _assert_matches_hf(tether.load("acme/tiny-clip"), hf_dirs["clip"][1], eos=79)


def test_environment_is_read_at_call_time(hf_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert download.hf_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("HF_HUB_CACHE")
    assert download.hf_cache_dir() == hf_cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert download.offline_mode() is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download.offline_mode() is True


# ----------------------------------------------------------------------------- everywhere a model is taken
def test_random_weights_only_when_asked(hf_cache):
    with pytest.raises(CheckpointError) as err:
        tether.load("ViT-B-32")
    text = _one_line(err)
    assert "random weights" in text and "ViT-B-32/openai" in text and "--random-weights" in text
    model = tether.checkpoints.resolve_model("tiny-vit-28", random_weights=True)
    assert model.config.towers["image"].image_size == 28


def test_cli_embed_refuses_an_architecture_and_takes_random_weights_or_a_name(hf_cache, oc_dir, tiny_model,
                                                                             tmp_path, capsys):
    from tether.cli.main import main
    texts = tmp_path / "texts.txt"
    texts.write_text("a red cat\na blue shoe\n")
    assert main(["embed", "--model", "ViT-B-32", "--texts", str(texts), "--out", str(tmp_path / "e0")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ViT-B-32/openai" in err and "--random-weights" in err
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((30, 30, 3), dtype=np.uint8)).save(image)
    assert main(["embed", "--model", "tiny-vit-28", "--random-weights", "--images", str(image),
                 "--out", str(tmp_path / "e1")]) == 0
    assert (tmp_path / "e1" / "images.safetensors").is_file()
    put_in_cache(hf_cache, "acme/tiny-oc", oc_dir, COMMIT_A)
    assert main(["embed", "--model", "hf-hub:acme/tiny-oc", "--texts", str(texts), "--out", str(tmp_path / "e2")]) == 0
    from safetensors.torch import load_file
    got = load_file(tmp_path / "e2" / "texts.safetensors")["embeddings"]
    assert (got - tiny_model.embed_texts(["a red cat", "a blue shoe"])).abs().max() < TOL


def test_cli_eval_refuses_an_architecture(hf_cache, tmp_path, capsys):
    from tether.cli.main import main
    assert main(["eval", "--model", "ViT-B-32", "--dataset", "digits", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "ViT-B-32/openai" in err and "--random-weights" in err


def test_train_starts_from_a_published_name_or_an_architecture(hf_cache, oc_dir, tiny_model):
    from tether.train.config import TrainConfig
    from tether.train.run import prepare_model
    put_in_cache(hf_cache, "acme/tiny-oc", oc_dir, COMMIT_A)
    model = prepare_model(TrainConfig(model="hf-hub:acme/tiny-oc"))
    own = tiny_model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in model.state_dict().items())
    assert prepare_model(TrainConfig(model="tiny-vit-28")).config.towers["image"].image_size == 28
    with pytest.raises(ValueError, match="architecture names only"):
        prepare_model(TrainConfig(model="hf-hub:acme/tiny-oc", model_overrides={"embed_dim": 8}))


def test_cli_models_pretrained_and_fetch(hf_cache, oc_dir, capsys):
    from tether.cli.main import main
    assert main(["models", "--pretrained", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ViT-B-32/openai"]["hub_id"] == "openai/clip-vit-base-patch32"
    assert rows["ViT-B-32/laion2b_s34b_b79k"]["imagenet_zeroshot_top1"] == pytest.approx(0.6656)
    assert main(["models", "--pretrained"]) == 0
    assert "google/siglip-base-patch16-224" in capsys.readouterr().out
    snapshot = put_in_cache(hf_cache, "acme/tiny-oc", oc_dir, COMMIT_A)
    assert main(["fetch", "hf-hub:acme/tiny-oc"]) == 0
    out = capsys.readouterr().out
    assert f"commit {COMMIT_A}" in out and "open_clip_model.safetensors" in out
    blob_of(snapshot, "open_clip_model.safetensors").write_bytes(b"truncated")
    assert main(["fetch", "hf-hub:acme/tiny-oc"]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert repo_dir(hf_cache, "acme/tiny-oc").is_dir()
