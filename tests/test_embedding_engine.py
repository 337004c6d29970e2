"""The embedding engine (tether.embedding.embed) and the evaluation driver built on it."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import tether
from tether.data import (DIGIT_CLASSES, DIGIT_TEMPLATES, ListSource, Sample, SkipStats, digits_source,
                         format_caption)
from tether.data.sample import SampleRandom, mix_seed
from tether.embedding import embed
from tether.preprocess import ImageDecodeError
from tether.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tether.create_model("tiny-vit-28")
    corpus = [format_caption(t, c) for t in DIGIT_TEMPLATES for c in DIGIT_CLASSES] * 3 + ["a red cat", "a dog"] * 5
    m.tokenizer = Tokenizer.train_bpe(corpus, vocab_size=600, context_length=24)
    return m.eval()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    paths = []
    for i in range(7):
        p = folder / f"img{i}.png"
        Image.new("RGB", (30 + i, 26), (30 * i, 200 - 20 * i, 90)).save(p)
        paths.append(p)
    return paths


def _unit(v):
    return torch.allclose(v.norm(dim=1), torch.ones(len(v)), atol=1e-5)


def test_paths_pil_arrays_and_strings_give_rows_and_ids(model, image_files):
    by_path = embed(model, "image", image_files, batch_size=3)
    assert by_path.vectors.shape == (7, 64) and by_path.vectors.dtype == torch.float32 and _unit(by_path.vectors)
    assert by_path.ids == [str(p) for p in image_files] and by_path.samples is None
    pil = [Image.open(p).convert("RGB") for p in image_files]
    by_pil = embed(model, "image", pil)
    assert by_pil.ids == [str(i) for i in range(7)]
    assert torch.allclose(by_pil.vectors, by_path.vectors, atol=1e-5)
    arrays = [np.asarray(img) for img in pil]
    assert torch.allclose(embed(model, "image", arrays).vectors, by_path.vectors, atol=1e-5)
    by_bytes = embed(model, "image", [p.read_bytes() for p in image_files])
    assert torch.allclose(by_bytes.vectors, by_path.vectors, atol=1e-5)
    texts = embed(model, "text", ["a red cat", "a dog"])
    assert texts.vectors.shape == (2, 64) and texts.ids == ["a red cat", "a dog"] and _unit(texts.vectors)
    assert torch.allclose(embed(model, "text", "a dog").vectors, texts.vectors[1:], atol=1e-6)


def test_engine_matches_encoding_the_preprocessed_pixels(model, image_files):
    pixels = torch.stack([model.preprocessor(p) for p in image_files])
    with torch.no_grad():
        direct = model.encode_image(pixels, normalize=True)
    assert torch.allclose(embed(model, "image", image_files, batch_size=4).vectors, direct, atol=1e-5)
    tensors = embed(model, "image", pixels, batch_size=3)  # already processed: encoded as they are
    assert tensors.ids == [str(i) for i in range(7)] and torch.allclose(tensors.vectors, direct, atol=1e-5)
    ids = model.tokenizer(["a red cat", "a dog"])
    with torch.no_grad():
        want = model.encode_text(ids, normalize=True)
    assert torch.allclose(embed(model, "text", ids).vectors, want, atol=1e-5)


def test_bad_inputs_are_skipped_and_counted_by_reason(model, image_files, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image at all")
    inputs = [image_files[0], corrupt, image_files[1], tmp_path / "missing.png"]
    result = embed(model, "image", inputs, batch_size=2)
    assert result.ids == [str(image_files[0]), str(image_files[1])] and result.vectors.shape == (2, 64)
    assert result.skips.counts == {"corrupt_image": 1, "missing_image": 1}
    assert result.skips.kept == 2 and result.skips.positions == 4
    assert result.skips.examples["corrupt_image"][0][0] == str(corrupt)
    texts = embed(model, "text", ["a red cat", "", "a dog", "   "])
    assert texts.ids == ["a red cat", "a dog"] and texts.skips.counts == {"invalid_input": 2}
    assert "empty text" in texts.skips.summary()
    everything_bad = embed(model, "image", [corrupt])
    assert everything_bad.vectors.shape == (0, 64) and everything_bad.skips.skipped == 1
    with pytest.raises(ImageDecodeError, match="corrupt.jpg"):  # strict: what embed_images uses
        embed(model, "image", inputs, strict=True)


def test_sources_give_sample_keys_captions_and_skips(model):
    images = [Image.new("RGB", (28, 28), (40 * i, 10, 200)) for i in range(4)]
    samples = [Sample(f"k{i}", img, f"a red cat {i}", i % 2) for i, img in enumerate(images)]
    samples.append(Sample("broken", b"garbage", "a dog", 1))
    source = ListSource(samples, name="toy")
    result = embed(model, "image", source, batch_size=2)
    assert result.ids == ["k0", "k1", "k2", "k3"] and result.skips.counts == {"corrupt_image": 1}
    assert [s.caption for s in result.samples] == [f"a red cat {i}" for i in range(4)]
    assert all(s.image is None for s in result.samples)
    assert torch.allclose(result.vectors, embed(model, "image", images).vectors, atol=1e-5)
    captions = embed(model, "text", source)
    assert captions.ids == ["k0", "k1", "k2", "k3", "broken"]
    assert torch.allclose(captions.vectors[-1], embed(model, "text", ["a dog"]).vectors[0], atol=1e-5)


def test_array_source_uses_the_vectorised_pixel_path(model):
    source = digits_source("test")
    result = embed(model, "image", source, batch_size=100)
    assert len(result) == len(source) and result.ids[:2] == [source.key(0), source.key(1)]
    cfg = model.preprocessor.config
    with torch.no_grad():
        want = model.encode_image(source.pixel_batch(np.arange(100), cfg.image_size, cfg.mean, cfg.std), True)
    assert torch.equal(result.vectors[:100], want)  # the same batch, the same ops: the same bits
    assert result.samples[0].caption == source.caption(0, SampleRandom(mix_seed(0, 0, 0)))


def test_workers_give_the_same_vectors_as_in_process(model, image_files):
    files = list(image_files) * 3
    a = embed(model, "image", files, batch_size=4, workers=0)
    b = embed(model, "image", files, batch_size=5, workers=2)
    assert a.ids == b.ids and torch.allclose(a.vectors, b.vectors, atol=1e-5)
    source = digits_source("test")
    c = embed(model, "image", source, batch_size=64, workers=0)
    d = embed(model, "image", source, batch_size=50, workers=2)
    assert c.ids == d.ids and torch.allclose(c.vectors, d.vectors, atol=1e-5)


def test_precision_bf16_agrees_and_fp16_needs_cuda(model, image_files):
    fp32 = embed(model, "image", image_files).vectors
    bf16 = embed(model, "image", image_files, precision="bf16").vectors
    assert bf16.dtype == torch.float32 and _unit(bf16)
    assert (F.cosine_similarity(fp32, bf16) > 0.99).all()
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device") as err:
        embed(model, "image", image_files, precision="fp16")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="precision must be one of"):
        embed(model, "image", image_files, precision="int8")


def test_model_mode_is_restored_and_missing_processor_is_one_line(model, image_files):
    model.train()
    try:
        embed(model, "image", image_files[:2])
        assert model.training
    finally:
        model.eval()
    tokenizer, model.tokenizer = model.tokenizer, None
    try:
        with pytest.raises(RuntimeError, match="no text processor"):
            embed(model, "text", ["a dog"])
    finally:
        model.tokenizer = tokenizer


def test_skip_stats_can_be_kept_across_calls(model, image_files, tmp_path):
    stats = SkipStats(max_examples=100)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    for _ in range(2):
        embed(model, "image", [image_files[0], bad], skips=stats)
    assert stats.kept == 2 and stats.counts["corrupt_image"] == 2 and len(stats.examples["corrupt_image"]) == 2


@pytest.mark.slow
def test_evaluation_driver_matches_a_direct_computation_on_digits(model):
    from tether.metrics.evaluate import BUILTIN, evaluate
    from tether.metrics.linear_probe import linear_probe
    from tether.metrics.retrieval import retrieval_recall
    from tether.metrics.zeroshot import ZeroShotClassifier
    from tether.train.evaluation import make_evaluator

    run = evaluate(model, BUILTIN["digits"], ["zeroshot", "retrieval", "linear_probe"], batch_size=128)
    test, train = digits_source("test"), digits_source("train")
    cfg = model.preprocessor.config

    def direct(source):
        with torch.no_grad():
            pixels = source.pixel_batch(np.arange(len(source)), cfg.image_size, cfg.mean, cfg.std)
            return model.encode_image(pixels, normalize=True), torch.as_tensor(source.labels)

    x_test, y_test = direct(test)
    x_train, y_train = direct(train)
    assert torch.allclose(run.test.images, x_test, atol=1e-5) and torch.equal(run.test.labels, y_test)
    zs = ZeroShotClassifier.build(model, DIGIT_CLASSES, "digits").evaluate(x_test, y_test)
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert run.metrics["zeroshot"][key] == pytest.approx(zs[key])
    captions = [test.caption(i, SampleRandom(mix_seed(0, 0, i))) for i in range(len(test))]
    with torch.no_grad():  # in the driver's batches of 256: equal captions must embed to equal bits (ties)
        text = torch.cat([model.encode_text(model.tokenizer(captions[i:i + 256]), normalize=True)
                          for i in range(0, len(captions), 256)])
    recall = retrieval_recall(x_test, text, torch.arange(len(test)), ks=(1, 5, 10))
    for key, value in recall.items():
        if "recall@" in key:
            assert run.metrics["retrieval"][key] == pytest.approx(value), key
    probe = linear_probe(x_train, y_train, x_test, y_test, class_names=DIGIT_CLASSES)
    assert run.metrics["linear_probe"]["lp_acc1"] == pytest.approx(probe["lp_acc1"])

    class Loader:  # what make_evaluator reads from a validation PairLoader
        num_workers = 0

        class dataset:
            source, batch_size = test, 256

    metrics = make_evaluator(Loader, DIGIT_CLASSES, "digits")(model)
    assert metrics["val_samples"] == len(test)
    assert metrics["zeroshot_acc1"] == pytest.approx(zs["acc1"])
    assert metrics["image_retrieval_recall@5"] == pytest.approx(recall["image_retrieval_recall@5"])
    assert {k for k in metrics if "recall@" in k} == {k for k in recall if "recall@" in k}
