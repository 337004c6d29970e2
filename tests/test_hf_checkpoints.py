"""Hugging Face CLIP / SigLIP checkpoints: tether.load matches transformers, save round-trips.

Every model is a tiny random one built offline from a transformers config; weights are
perturbed so that LayerNorms and biases are not at their (1, 0) init, which would hide a
swapped or dropped tensor.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

import tether
from tether.checkpoints import CheckpointError, detect_format

transformers = pytest.importorskip("transformers")
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, SiglipConfig, SiglipModel  # noqa: E402

TOL = 1e-5


def perturb(model: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def features(out) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features; 4.x returned the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def tower(hidden, layers, heads, mlp, act, eps=1e-5, **extra):
    return dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=mlp,
                hidden_act=act, layer_norm_eps=eps, **extra)


def text_ids(vocab: int, length: int, eos: int | None, seed: int, rows: int = 5) -> torch.Tensor:
    """Random ids; with ``eos``: one per row at varied positions (first, middle, last), a row with
    two (the first counts), eos-padding after it (transformers' CLIP layout) and a row with none."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, length), generator=g)
    if eos is None:
        return ids
    ids[ids == eos] = 3 if eos != 3 else 4
    ids[0, 0] = eos
    ids[1, length // 2:] = eos
    ids[2, length - 1] = eos
    ids[3, 1] = eos
    ids[3, length - 2] = eos
    return ids  # row 4: no eos at all (both pool position 0)


def compare(name: str, model, hf, pixels: torch.Tensor, ids: torch.Tensor, hf_ids: torch.Tensor | None = None) -> None:
    hf_ids = ids if hf_ids is None else hf_ids
    with torch.no_grad():
        img = (model.encode_image(pixels) - features(hf.get_image_features(pixel_values=pixels))).abs().max()
        txt = (model.encode_text(ids) - features(hf.get_text_features(input_ids=hf_ids))).abs().max()
    assert img < TOL, f"{name}: image embeddings differ by {img:.3g}"
    assert txt < TOL, f"{name}: text embeddings differ by {txt:.3g}"


def load_hf(cls, path):
    model, info = cls.from_pretrained(path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


# --------------------------------------------------------------------------- CLIP
CLIP_CASES = {
    # legacy eos_token_id=2: transformers pools at the highest id (OpenAI's argmax)
    "legacy-argmax": dict(vision=tower(32, 1, 2, 48, "quick_gelu", image_size=28, patch_size=7),
                          text=tower(48, 2, 4, 80, "gelu", vocab_size=64, max_position_embeddings=12, eos_token_id=2),
                          projection_dim=24),
    "eos-7-tanh": dict(vision=tower(64, 3, 4, 100, "gelu_pytorch_tanh", 1e-6, image_size=64, patch_size=16),
                       text=tower(32, 1, 2, 70, "quick_gelu", vocab_size=99, max_position_embeddings=16,
                                  eos_token_id=7, pad_token_id=7), projection_dim=40),
    "gelu-new-relu-uneven": dict(vision=tower(48, 2, 3, 72, "gelu_new", image_size=30, patch_size=4),
                                 text=tower(64, 3, 4, 96, "relu", 1e-6, vocab_size=50, max_position_embeddings=10,
                                            eos_token_id=49), projection_dim=16),
    "eos-max-id": dict(vision=tower(40, 1, 4, 56, "gelu", image_size=32, patch_size=8),
                       text=tower(40, 2, 2, 60, "gelu", vocab_size=80, max_position_embeddings=20,
                                  eos_token_id=79), projection_dim=72),
}


def make_clip(case: dict, seed: int) -> CLIPModel:
    cfg = CLIPConfig(text_config=case["text"], vision_config=case["vision"], projection_dim=case["projection_dim"])
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    perturb(model, seed)
    return model


@pytest.mark.parametrize("name", list(CLIP_CASES))
def test_clip_matches_transformers(name, tmp_path):
    case = CLIP_CASES[name]
    hf = make_clip(case, seed=len(name))
    hf.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf"
    model = tether.load(tmp_path)
    t, v = case["text"], case["vision"]
    assert model.config.towers["text"].pool == ("argmax" if t["eos_token_id"] == 2 else "eot")
    size = v["image_size"]
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    eos = None if t["eos_token_id"] == 2 else t["eos_token_id"]
    ids = text_ids(t["vocab_size"], t["max_position_embeddings"], eos, 2)
    compare(f"clip/{name}", model, hf, pixels, ids)
    assert torch.equal(model.logit_scale.detach(), hf.logit_scale.detach().reshape(()))
    assert model.preprocessor.config.image_size == size and model.preprocessor.config.resize_mode == "shortest"


# --------------------------------------------------------------------------- SigLIP
SIGLIP_CASES = {
    "base-like": dict(vision=tower(32, 1, 2, 50, "gelu_pytorch_tanh", 1e-6, image_size=28, patch_size=7),
                      text=tower(48, 2, 4, 72, "gelu", 1e-6, vocab_size=64, max_position_embeddings=12,
                                 projection_size=32)),
    "quick-gelu-fine-patches": dict(vision=tower(64, 2, 4, 100, "quick_gelu", image_size=32, patch_size=4),
                                    text=tower(32, 1, 2, 40, "gelu_pytorch_tanh", vocab_size=90,
                                               max_position_embeddings=16, projection_size=64)),
    # so400m-patch14-384 style: image_size not a multiple of patch_size (the conv drops the remainder)
    "uneven-grid": dict(vision=tower(48, 3, 3, 64, "gelu", image_size=30, patch_size=7),
                        text=tower(48, 1, 4, 88, "gelu_new", vocab_size=70, max_position_embeddings=8)),
}


def make_siglip(case: dict, seed: int) -> SiglipModel:
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=case["text"], vision_config=case["vision"])).eval()
    perturb(model, seed)
    return model


@pytest.mark.parametrize("name", list(SIGLIP_CASES))
def test_siglip_matches_transformers(name, tmp_path):
    case = SIGLIP_CASES[name]
    hf = make_siglip(case, seed=len(name))
    with torch.no_grad():
        hf.logit_scale.fill_(math.log(10.0) + 0.3)
        hf.logit_bias.fill_(-9.5)
    hf.save_pretrained(tmp_path)
    model = tether.load(tmp_path)
    size, t = case["vision"]["image_size"], case["text"]
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    compare(f"siglip/{name}", model, hf, pixels, text_ids(t["vocab_size"], t["max_position_embeddings"], None, 2))
    assert torch.equal(model.logit_scale.detach(), hf.logit_scale.detach().reshape(()))
    assert torch.equal(model.logit_bias.detach(), hf.logit_bias.detach().reshape(()))
    with torch.no_grad():
        out = model(pixels, text_ids(t["vocab_size"], t["max_position_embeddings"], None, 2))
        ref = hf(pixel_values=pixels, input_ids=text_ids(t["vocab_size"], t["max_position_embeddings"], None, 2))
    assert (out.logits_per_image() - ref.logits_per_image).abs().max() < 1e-4
    assert model.preprocessor.config.image_size == size and model.preprocessor.config.resize_mode == "squash"


def test_logit_scale_above_tether_cap_is_kept(tmp_path):
    hf = make_clip(CLIP_CASES["legacy-argmax"], seed=0)
    with torch.no_grad():
        hf.logit_scale.fill_(math.log(150.0))
    hf.save_pretrained(tmp_path)
    model = tether.load(tmp_path)
    assert torch.allclose(model.scale(), hf.logit_scale.exp(), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- layouts
def test_sharded_bin_and_old_position_ids(tmp_path):
    case = SIGLIP_CASES["base-like"]
    hf = make_siglip(case, seed=3)
    sharded = tmp_path / "sharded"
    hf.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    pixels = torch.randn(2, 3, 28, 28)
    ids = text_ids(64, 12, None, 0)
    compare("siglip/sharded", tether.load(sharded), hf, pixels, ids)

    binary = tmp_path / "bin"
    hf.save_pretrained(binary)
    state = load_file(str(binary / "model.safetensors"))
    state["text_model.embeddings.position_ids"] = torch.arange(12)[None]  # what transformers 4.2x saved
    torch.save(state, binary / "pytorch_model.bin")
    (binary / "model.safetensors").unlink()
    compare("siglip/bin", tether.load(binary), hf, pixels, ids)


def test_preprocessor_config_is_read(tmp_path):
    make_clip(CLIP_CASES["legacy-argmax"], seed=0).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 28}, "crop_size": {"height": 28,
        "width": 28}, "do_center_crop": True, "resample": 2, "image_mean": [0.1, 0.2, 0.3],
        "image_std": [0.4, 0.5, 0.6]}))
    cfg = tether.load(tmp_path).preprocessor.config
    assert (cfg.image_size, cfg.resize_mode, cfg.interpolation) == (28, "shortest", "bilinear")
    assert cfg.mean == (0.1, 0.2, 0.3) and cfg.std == (0.4, 0.5, 0.6)


# --------------------------------------------------------------------------- export
def tiny(name: str, **text) -> tether.AlignedModel:
    cfg = tether.get_model_config(name)
    for key, value in text.items():
        setattr(cfg.towers["text"], key, value)
    return tether.create_model(cfg).eval()


EXPORTS = {
    # tiny-vit-28 pools at tether BPE's end token, id 2: exported with ids 2 and V-1 swapped
    "clip-eot-2": ("tiny-vit-28", {}, CLIPModel),
    "clip-eot-5": ("tiny-vit-28", {"eot_token_id": 5}, CLIPModel),
    "clip-argmax": ("tiny-vit-28", {"pool": "argmax", "eot_token_id": None}, CLIPModel),
    "siglip": ("tiny-siglip-28", {}, SiglipModel),
}


@pytest.mark.parametrize("case", list(EXPORTS))
def test_export_round_trip(case, tmp_path):
    name, text, cls = EXPORTS[case]
    model = tiny(name, **text)
    perturb(model, seed=5)
    cfg = model.config
    swapped = cfg.towers["text"].pool == "eot" and cfg.towers["text"].eot_token_id == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tether.save(model, tmp_path, format="hf")
    assert any("swapped" in str(w.message) for w in caught) == swapped
    hf = load_hf(cls, tmp_path)
    vocab = cfg.towers["text"].vocab_size
    sigma = torch.arange(vocab)  # tether id -> exported id
    if swapped:
        sigma[2], sigma[vocab - 1] = vocab - 1, 2
        assert hf.config.text_config.eos_token_id == vocab - 1
    pixels = torch.randn(3, 3, cfg.towers["image"].image_size, cfg.towers["image"].image_size)
    ids = text_ids(vocab, cfg.towers["text"].context_length, cfg.towers["text"].eot_token_id, 4)
    if swapped:
        ids[0, 3] = vocab - 1  # the token that moved to id 2 must still embed the same
    compare(f"export/{case}", model, hf, pixels, ids, hf_ids=sigma[ids])
    with torch.no_grad():
        out, ref = model(pixels, ids), hf(pixel_values=pixels, input_ids=sigma[ids])
    assert (out.logits_per_image() - ref.logits_per_image).abs().max() < 1e-4

    again = tether.load(tmp_path)
    for mine, theirs in ((cfg.towers["image"], again.config.towers["image"]), (cfg.towers["text"], again.config.towers["text"])):
        explicit = dataclasses.replace(mine, mlp_dim=mine.mlp_dim or 4 * mine.width)  # HF always names it
        if swapped and mine is cfg.towers["text"]:
            explicit.eot_token_id = vocab - 1
        assert theirs == explicit
    own, back = model.state_dict(), again.state_dict()
    for key, value in own.items():
        if key == "towers.text.token_embedding.weight":
            value = value[sigma.argsort()]
        assert torch.equal(value, back[key]), key
    assert again.preprocessor.config == model.preprocessor.config if model.preprocessor else True
    pre = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert pre["image_mean"] == list(cfg.towers["image"].processor["mean"])


@pytest.mark.filterwarnings("ignore:text pooling at id 2")
@pytest.mark.parametrize("name", ["tiny-vit-28", "tiny-siglip-28"])
def test_exported_preprocessor_config_matches_transformers(name, tmp_path):
    from PIL import Image
    from transformers import AutoImageProcessor

    model = tether.load(tether.save(tether.create_model(name), tmp_path / "tether"))  # with its preprocessor
    tether.save(model, tmp_path / "hf", format="hf")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "hf")
    g = torch.Generator().manual_seed(0)
    img = Image.fromarray(torch.randint(0, 256, (40, 61, 3), generator=g, dtype=torch.uint8).numpy())
    ref = processor(images=img, return_tensors="pt").pixel_values
    assert (model.preprocessor.batch([img]) - ref).abs().max() < 1e-5


TEXTS = ["A photo of a CAT.", "  two   dogs\n\trunning!!  ", "Don't stop, it's fine; we'll", "tree " * 40, ""]


def toy_tokenizer(context_length: int):
    from tether.tokenizer import Tokenizer

    words = "a an the photo picture of cat dog man woman red blue on in park sitting near".split()
    g = torch.Generator().manual_seed(0)
    caps = [" ".join(words[i] for i in torch.randint(0, len(words), (8,), generator=g)) for _ in range(150)]
    return Tokenizer.train_bpe(caps, vocab_size=600, context_length=context_length)


def test_transformers_tokenizer_files_are_attached(tmp_path):
    from transformers import CLIPTokenizer

    model = json.loads(toy_tokenizer(12).backend.to_str())["model"]
    hf_tok = CLIPTokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]])
    make_clip(CLIP_CASES["legacy-argmax"], seed=0).save_pretrained(tmp_path)
    hf_tok.save_pretrained(tmp_path)
    ref = hf_tok(TEXTS, padding="max_length", max_length=12, truncation=True, return_tensors="pt").input_ids
    assert torch.equal(tether.load(tmp_path).tokenizer(TEXTS), ref)


def test_export_tokenizer_matches_transformers(tmp_path):
    from tether.tokenizer import Tokenizer

    texts = TEXTS
    clip_tok = toy_tokenizer(24)
    siglip_tok = Tokenizer(clip_tok.backend, 24, bos_id=None, eos_id=clip_tok.eos_id, pad_id=0,
                           padding="max_length", lowercase=True, clean="canonicalize")
    for name, tok, cls in (("tiny-vit-28", clip_tok, CLIPModel), ("tiny-siglip-28", siglip_tok, SiglipModel)):
        model = tether.create_model(name).eval()
        model.tokenizer = tok
        out = tmp_path / name
        tether.save(model, out, format="hf")
        hf_tok = AutoTokenizer.from_pretrained(out)
        ref = hf_tok(texts, padding="max_length", max_length=24, truncation=True, return_tensors="pt").input_ids
        mine = tok(texts)
        if name == "tiny-vit-28":  # eot id 2: the export swapped it with the tokenizer's last id
            last = tok.vocab_size - 1
            sigma = torch.arange(model.config.towers["text"].vocab_size)
            sigma[2], sigma[last] = last, 2
            assert torch.equal(sigma[mine], ref)
        else:
            assert torch.equal(mine, ref), name
        again = tether.load(out)
        assert torch.equal(again.tokenizer(texts), ref), name
        hf = load_hf(cls, out)
        with torch.no_grad():  # text -> embedding is what must not change
            diff = (model.encode_text(mine) - features(hf.get_text_features(input_ids=ref))).abs().max()
            assert diff < TOL and (again.encode_text(ref) - model.encode_text(mine)).abs().max() < TOL, name


@pytest.mark.parametrize("name,changes,match", [
    ("tiny-rn-64", {}, "towers.image.kind='resnet'"),
    ("tiny-vit-28", {"image": {"projection": "mlp"}}, "towers.image.projection='mlp'"),
    ("tiny-vit-28", {"text": {"pool": "mean"}}, "towers.text.pool='mean'"),
    ("tiny-siglip-28", {"text": {"projection_bias": False}}, "without bias"),
    ("tiny-vit-28", {"image": {"ls_init": 0.1}}, "LayerScale"),
])
def test_export_refuses_what_transformers_cannot_represent(name, changes, match, tmp_path):
    cfg = tether.get_model_config(name)
    for modality, values in changes.items():
        for key, value in values.items():
            setattr(cfg.towers[modality], key, value)
    model = tether.create_model(cfg)
    with pytest.raises(CheckpointError, match=match):
        tether.save(model, tmp_path / "out", format="hf")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- errors
def test_wrong_shape_names_key_and_shapes(tmp_path):
    make_clip(CLIP_CASES["legacy-argmax"], seed=0).save_pretrained(tmp_path)
    file = tmp_path / "model.safetensors"
    state = load_file(str(file))
    key = "text_model.encoder.layers.1.mlp.fc1.weight"
    state[key] = state[key][:70]
    save_file(state, str(file), metadata={"format": "pt"})
    shapes = r"text_model\.encoder\.layers\.1\.mlp\.fc1\.weight.*\(80, 48\).*\(70, 48\)"
    with pytest.raises(CheckpointError, match=shapes):
        tether.load(tmp_path)


def test_missing_key_and_missing_weights(tmp_path):
    make_siglip(SIGLIP_CASES["base-like"], seed=0).save_pretrained(tmp_path)
    file = tmp_path / "model.safetensors"
    state = load_file(str(file))
    del state["vision_model.head.probe"]
    save_file(state, str(file), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing 1 key.*vision_model\.head\.probe"):
        tether.load(tmp_path)
    file.unlink()
    with pytest.raises(CheckpointError, match="no weights file.*model.safetensors"):
        tether.load(tmp_path)


def test_detect(tmp_path):
    from tether.checkpoints import hf

    tether.save(tether.create_model("tiny-vit-28"), tmp_path / "tether")
    assert not hf.detect(tmp_path / "tether")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    assert not hf.detect(tmp_path / "bert")
    assert not hf.detect(tmp_path / "nothing")
