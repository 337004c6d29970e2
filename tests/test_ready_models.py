"""tether.create_model gives a ready model: processors attached, CLIP's BPE shipped for the OpenAI configs."""
import json

import pytest
import torch
from PIL import Image

import tether
from tether.models.processors import _clip_vocab_and_merges, clip_bpe_tokenizer

SENTENCES = ["a photo of a cat", "A DOG, running on the beach!!", "  two   spaces\tand a tab ",
             "numbers 1234 and émojis 🙂", "it's what they'll do", "<|endoftext|> inside text",
             " ".join(["long"] * 100)]


def test_clip_bpe_matches_transformers_clip_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    vocab, merges = _clip_vocab_and_merges()
    assert len(vocab) == 49408 and vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    hf = transformers.CLIPTokenizerFast(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    ours = clip_bpe_tokenizer(77)(SENTENCES)
    for row, ids in zip(ours, hf(SENTENCES, max_length=77, truncation=True).input_ids):
        assert row[:len(ids)].tolist() == ids and not row[len(ids):].any()  # then padded with 0, as OpenAI pads
    assert ours[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]  # OpenAI CLIP's ids


@pytest.mark.parametrize("name", ["ViT-B-32", "RN50"])
def test_openai_sized_configs_come_with_preprocessor_and_tokenizer(name):
    cfg = tether.get_model_config(name)
    assert cfg.towers["text"].processor["tokenizer"] == "clip"
    if name == "ViT-B-32":
        model = tether.create_model(name)
        assert model.preprocessor.config.image_size == 224 and model.preprocessor.config.resize_mode == "shortest"
        assert model.tokenizer.vocab_size == cfg.towers["text"].vocab_size and model.tokenizer.context_length == 77


def test_create_model_embeds_images_and_says_how_to_get_a_tokenizer(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 20, 20)).save(path)
    model = tether.create_model("tiny-vit-28")
    emb = model.embed_images([path, Image.open(path)])
    assert emb.shape == (2, 64) and torch.allclose(emb[0], emb[1], atol=1e-6)
    assert model.tokenizer is None
    with pytest.raises(RuntimeError, match="train one .*tether train.* or attach one"):
        model.embed_texts(["a red square"])


def test_registry_names_and_overrides():
    assert {"ViT-B-32", "tiny-vit-28", "align-effnet-minilm"} <= set(tether.list_models())
    model = tether.create_model("tiny-vit-28", embed_dim=32)
    assert model.config.embed_dim == 32 and model.encode_image(torch.randn(1, 3, 28, 28)).shape == (1, 32)
    with pytest.raises(KeyError, match="no model config named"):
        tether.create_model("ViT-Z-99")
