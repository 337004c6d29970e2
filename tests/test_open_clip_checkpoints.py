"""OpenCLIP / OpenAI checkpoints: reading open_clip's files, inferring shapes, writing hub directories.

The reference cases under tests/fixtures/open_clip/ were written by real open_clip
(bench/open_clip_fixtures.py): small random models, their inputs and open_clip's outputs.
"""
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import tether
from tether.checkpoints import CheckpointError, detect_format
from tether.checkpoints import open_clip as oc
from tether.checkpoints import open_clip_layout as layout
from tether.config import ModelConfig, TextTowerConfig, ImageTowerConfig
from tether.models import AlignedModel, create_model
from tether.models.vit import resize_pos_embed

FIXTURES = Path(__file__).parent / "fixtures" / "open_clip"
# Every case bench/open_clip_fixtures.py writes, listed so that a deleted or missing folder fails.
CASES = ["openai_jit", "openai_style", "resnet", "vit_attn_pool", "vit_custom_block", "vit_gelu_state_dict",
         "vit_options", "vit_root", "vit_text_layout"]
# open_clip features tether does not implement: loading must fail, naming the feature.
UNSUPPORTED = {"vit_attn_pool": "attentional_pool", "vit_custom_block": "qk_norm"}
TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models (tests/conftest.py)


def test_every_fixture_is_there_and_listed():
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == CASES
    for case in CASES:
        meta = _meta(case)
        assert meta["case"] == case
        for name in ("inputs.safetensors", "expected.safetensors", "keys.txt", meta["weights"]["file"]):
            assert (FIXTURES / case / name).is_file(), (case, name)
        assert set(load_file(FIXTURES / case / "expected.safetensors")) >= \
            {"image_embeds", "text_embeds", "logit_scale", "logits_per_image"}, case


def _meta(case):
    return json.loads((FIXTURES / case / "meta.json").read_text())


def _fixture_kwargs(meta):
    """What shapes cannot tell, for config-less files (the OpenAI-style case infers everything)."""
    if meta["weights"]["config_file"] is not None or meta["case"] == "openai_style":
        return {}
    cfg = meta["model_cfg"]
    return {"quick_gelu": cfg.get("quick_gelu", False),
            "vision_heads": cfg["vision_cfg"]["width"] // cfg["vision_cfg"].get("head_width", 64),
            "text_heads": cfg["text_cfg"]["heads"]}


def _max_diffs(model, case):
    """Largest |tether - open_clip| of the image embeddings, the text embeddings and ``logits_per_image``
    (relative to the logit scale t: the logits are t times cosines), and open_clip's outputs."""
    inputs = load_file(FIXTURES / case / "inputs.safetensors")
    expected = load_file(FIXTURES / case / "expected.safetensors")
    with torch.no_grad():
        image = model.encode_image(inputs["pixel_values"])
        text = model.encode_text(inputs["input_ids"])
        logits = model(inputs["pixel_values"], inputs["input_ids"]).logits_per_image()
    logits_diff = (logits - expected["logits_per_image"]).abs().max().item() / model.scale().item()
    return ((image - expected["image_embeds"]).abs().max().item(),
            (text - expected["text_embeds"]).abs().max().item(), logits_diff, expected)


@pytest.mark.parametrize("case", [c for c in CASES if c not in UNSUPPORTED])
@pytest.mark.parametrize("target", ["dir", "file"])
def test_matches_open_clip_reference(case, target):
    meta = _meta(case)
    path = FIXTURES / case if target == "dir" else FIXTURES / case / meta["weights"]["file"]
    assert detect_format(path) == "open_clip"
    model = tether.load(path, **_fixture_kwargs(meta))
    image_diff, text_diff, logits_diff, expected = _max_diffs(model, case)
    assert image_diff < TOL and text_diff < TOL and logits_diff < TOL, (case, image_diff, text_diff, logits_diff)
    assert model.logit_scale.item() == expected["logit_scale"].item()
    if "logit_bias" in expected:
        assert model.logit_bias.item() == expected["logit_bias"].item()
    else:
        assert model.logit_bias is None
    pre = model.preprocessor.config
    assert pre.image_size == model.config.towers["image"].image_size
    assert list(pre.mean) == pytest.approx(meta["preprocess_cfg"]["mean"])


@pytest.mark.parametrize("case", [c for c in CASES if c in UNSUPPORTED])
def test_unsupported_open_clip_features_fail_clearly(case, tmp_path):
    with pytest.raises(CheckpointError, match=UNSUPPORTED[case]):
        tether.load(FIXTURES / case)
    # Without the config, the weights' keys give it away.
    shutil.copy(FIXTURES / case / "model.safetensors", tmp_path / "weights.safetensors")
    with pytest.raises(CheckpointError, match="not supported by tether"):
        tether.load(tmp_path / "weights.safetensors")


def test_config_given_explicitly_for_a_bare_state_dict():
    meta = _meta("vit_gelu_state_dict")
    model = tether.load(FIXTURES / "vit_gelu_state_dict" / "model.pt", config={"model_cfg": meta["model_cfg"]})
    image_diff, text_diff, logits_diff, _ = _max_diffs(model, "vit_gelu_state_dict")
    assert image_diff < TOL and text_diff < TOL and logits_diff < TOL
    assert model.config.towers["image"].heads == 3 and model.config.towers["text"].act == "gelu"


def test_eos_pooled_custom_text_tower_matches_reference():
    """vit_attn_pool's image tower is unsupported; its text tower ('eos' pooling, text.* keys) is checked alone."""
    case = FIXTURES / "vit_attn_pool"
    raw = {k: v for k, v in load_file(case / "model.safetensors").items() if ".attn_pool." not in k}
    state, found = layout.canonical(raw, "x")
    assert found == "text" and state["logit_scale"].shape == ()
    meta = _meta("vit_attn_pool")["model_cfg"]["text_cfg"]
    cfg = TextTowerConfig(vocab_size=meta["vocab_size"], context_length=meta["context_length"], width=meta["width"],
                     heads=meta["heads"], layers=meta["layers"], act="gelu", pool="eot", eot_token_id=meta["eos_id"])
    from tether.models.text import TextTransformer
    tower = TextTransformer(cfg)
    weights = {}
    for key, value in state.items():
        hit = layout.to_tether_key(key, "vit")
        if hit and hit[0].startswith("towers.text."):
            weights[hit[0][len("towers.text."):]] = value
    tower.load_state_dict(weights, strict=True)
    ids = load_file(case / "inputs.safetensors")["input_ids"]
    with torch.no_grad():
        out = tower(ids) @ state["text_projection"]
    assert (out - load_file(case / "expected.safetensors")["text_embeds"]).abs().max() < TOL


# ---------------------------------------------------------------- without fixtures
def _outputs(model, size=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    size = size or cfg.towers["image"].image_size
    pixels = torch.randn(2, 3, size, size, generator=g)
    ids = torch.randint(1, cfg.towers["text"].vocab_size, (2, cfg.towers["text"].context_length), generator=g)
    with torch.no_grad():
        return model.encode_image(pixels), model.encode_text(ids)


def _towers(model):
    """The tower configs without their processor settings (compared separately, through the processors)."""
    return {m: dataclasses.replace(t, processor={}) for m, t in model.config.towers.items()}


def _assert_same(a, b):
    for x, y in zip(_outputs(a), _outputs(b)):
        assert torch.equal(x, y)
    assert torch.equal(a.logit_scale, b.logit_scale)


def _options_model():
    """A ViT with every option OpenCLIP can express (CLIPA / SigLIP-text / LayerScale style)."""
    cfg = ModelConfig(
        embed_dim=24, towers={
            "image": ImageTowerConfig(image_size=16, patch_size=4, width=32, layers=2, heads=2, mlp_dim=64,
                                      act="gelu_tanh", ln_eps=1e-6, ln_pre=False, pool="mean",
                                      final_ln_after_pool=True, ls_init=0.3),
            "text": TextTowerConfig(vocab_size=300, context_length=12, width=32, layers=1, heads=4, act="gelu_tanh",
                                    causal=False, pool="eot", eot_token_id=2, pad_token_id=1, ls_init=0.2,
                                    projection_bias=True)},
        logit_bias_init=-10.0)
    torch.manual_seed(0)
    return AlignedModel(cfg).eval()


@pytest.mark.parametrize("name", ["tiny-vit-28", "tiny-rn-64", "options"])
@pytest.mark.parametrize("custom_text", [False, True])
def test_export_and_reload_round_trip(name, custom_text, tmp_path):
    torch.manual_seed(0)
    model = _options_model() if name == "options" else create_model(name).eval()
    oc.save(model, tmp_path / "oc", custom_text=custom_text)
    files = sorted(p.name for p in (tmp_path / "oc").iterdir())
    assert files == ["open_clip_config.json", "open_clip_model.safetensors"]
    cfg = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())
    assert set(cfg) == {"model_cfg", "preprocess_cfg"} and cfg["model_cfg"].get("custom_text", False) == custom_text
    keys = load_file(tmp_path / "oc" / "open_clip_model.safetensors").keys()
    assert ("text.token_embedding.weight" in keys) == custom_text and ("token_embedding.weight" in keys) != custom_text
    assert all(k.startswith(("visual.", "text.", "logit_")) for k in keys) or not custom_text
    if name == "options":  # text projection with bias: an nn.Linear in OpenCLIP too
        prefix = "text." if custom_text else ""
        assert {f"{prefix}text_projection.weight", f"{prefix}text_projection.bias", "logit_bias"} <= set(keys)
        assert f"{prefix}text_projection" not in keys
    reloaded = tether.load(tmp_path / "oc")
    _assert_same(model, reloaded)
    assert _towers(reloaded) == _towers(model)


def test_save_goes_through_the_model_and_keeps_the_tokenizer(tmp_path, tiny_model):
    model = tiny_model
    tether.save(model, tmp_path / "oc", format="open_clip")
    reloaded = tether.load(tmp_path / "oc")
    assert torch.equal(reloaded.tokenizer(["a cat"]), model.tokenizer(["a cat"]))
    _assert_same(model, reloaded)


def test_save_refuses_what_open_clip_cannot_express(tmp_path):
    with pytest.raises(CheckpointError, match="cannot save as OpenCLIP"):
        oc.save(create_model("tiny-siglip-28"), tmp_path / "oc")  # attention-pool (MAP) head
    assert not (tmp_path / "oc").exists()


def _openai_rename(key):
    """tether -> OpenAI names, written out independently of the module under test."""
    for old, new in ((".blocks.", ".resblocks."), ("attn.in_proj.weight", "attn.in_proj_weight"),
                     ("attn.in_proj.bias", "attn.in_proj_bias"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
                     ("towers.image.patch_embed", "visual.conv1"), ("towers.image.", "visual.")):
        key = key.replace(old, new)
    return key[len("towers.text."):] if key.startswith("towers.text.") else key


def _openai_state(model):
    state = {}
    for key, value in model.state_dict().items():
        if key == "projections.image.weight":
            state["visual.proj"] = value.T.contiguous()
        elif key == "projections.text.weight":
            state["text_projection"] = value.T.contiguous()
        else:
            state[_openai_rename(key)] = value
    return state


def _openai_model():
    cfg = ModelConfig(embed_dim=32, towers={
        "image": ImageTowerConfig(image_size=24, patch_size=8, width=64, layers=2, heads=1),
        "text": TextTowerConfig(vocab_size=400, context_length=10, width=128, layers=1, heads=2)})
    torch.manual_seed(1)
    return AlignedModel(cfg).eval()  # quick_gelu, heads = width // 64: what OpenAI-style inference assumes


def test_openai_style_state_dict_is_inferred_from_shapes(tmp_path):
    model = _openai_model()
    state = {**_openai_state(model), "input_resolution": torch.tensor(24), "context_length": torch.tensor(10),
             "vocab_size": torch.tensor(400)}  # extras OpenAI's archives carry
    torch.save(state, tmp_path / "ViT-tiny.pt")
    assert detect_format(tmp_path / "ViT-tiny.pt") == "open_clip"
    loaded = tether.load(tmp_path / "ViT-tiny.pt")
    assert _towers(loaded) == _towers(model)
    _assert_same(model, loaded)
    assert loaded.tokenizer is None and loaded.preprocessor.config.image_size == 24
    gelu = tether.load(tmp_path / "ViT-tiny.pt", quick_gelu=False)
    assert gelu.config.towers["image"].act == gelu.config.towers["text"].act == "gelu"


def test_ddp_prefix_and_training_checkpoint_wrapper(tmp_path):
    model = _openai_model()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in _openai_state(model).items()}}
    torch.save(wrapped, tmp_path / "epoch_3.pt")
    _assert_same(model, tether.load(tmp_path / "epoch_3.pt"))
    # the same file under OpenCLIP's hub name, in a directory
    (tmp_path / "hub").mkdir()
    torch.save(wrapped, tmp_path / "hub" / "open_clip_pytorch_model.bin")
    _assert_same(model, tether.load(tmp_path / "hub"))


@pytest.mark.parametrize("name, new_size", [("tiny-vit-28", 56), ("tiny-rn-64", 96)])
def test_position_table_resized_for_another_image_size(name, new_size, tmp_path):
    torch.manual_seed(0)
    model = create_model(name).eval()
    oc.save(model, tmp_path / "oc")
    same = tether.load(tmp_path / "oc", image_size=model.config.towers["image"].image_size)
    _assert_same(model, same)
    big = tether.load(tmp_path / "oc", image_size=new_size)
    assert big.config.towers["image"].image_size == new_size and big.preprocessor.config.image_size == new_size
    key = "towers.image.positional_embedding" if name.startswith("tiny-vit") else \
        "towers.image.attnpool.positional_embedding"
    grid = new_size // (model.config.towers["image"].patch_size if name.startswith("tiny-vit") else 32)
    assert torch.equal(big.state_dict()[key], resize_pos_embed(model.state_dict()[key], grid, 1))
    image, _ = _outputs(big, size=new_size)
    assert image.shape == (2, model.config.embed_dim)
    # the original model interpolates the same table on the fly at the new size
    original, _ = _outputs(model, size=new_size)
    assert torch.allclose(image, original, atol=1e-6)
    if name.startswith("tiny-vit"):
        with pytest.raises(CheckpointError, match="multiple of the patch size"):
            tether.load(tmp_path / "oc", image_size=30)


@pytest.mark.parametrize("key, bad, message", [
    ("visual.transformer.resblocks.1.mlp.c_fc.weight", (380, 96),
     r"'visual\.transformer\.resblocks\.1\.mlp\.c_fc\.weight' expected shape \(384, 96\), found \(380, 96\)"),
    ("text_projection", (96, 60), r"'text_projection' expected shape \(96, 64\), found \(96, 60\)"),
])
def test_wrong_shape_names_the_key_and_both_shapes(key, bad, message, tmp_path):
    oc.save(create_model("tiny-vit-28"), tmp_path / "oc")
    weights = tmp_path / "oc" / "open_clip_model.safetensors"
    state = load_file(weights)
    state[key] = torch.zeros(bad)
    save_file(state, weights)
    with pytest.raises(CheckpointError, match=message):
        tether.load(tmp_path / "oc")


def test_unrelated_state_dict_says_what_layout_was_expected(tmp_path):
    torch.save({"encoder.layer.0.weight": torch.zeros(3, 3), "head.bias": torch.zeros(3)}, tmp_path / "other.pt")
    assert not oc.detect(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="OpenAI/OpenCLIP state-dict file"):
        tether.load(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"expected image tower: 'visual\.class_embedding'.*'token_embedding\.weight'"):
        tether.load(tmp_path / "other.pt", format="open_clip")
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "open_clip_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no OpenCLIP weights; looked for open_clip_model.safetensors"):
        tether.load(tmp_path / "hub", format="open_clip")
