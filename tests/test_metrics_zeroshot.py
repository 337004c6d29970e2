"""Zero-shot classification: prompt ensembling, metrics, probabilities, files, templates."""
import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tether.metrics import ZeroShotClassifier, classification_metrics, zero_shot_eval
from tether.metrics.templates import (TEMPLATE_SETS, get_templates, load_templates, resolve_templates)

DIM = 16


def fake_text_embedding(text: str) -> torch.Tensor:
    """A fixed, unnormalised pseudo-random vector per string."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    return torch.randn(DIM, generator=torch.Generator().manual_seed(seed)) * (1 + len(text) % 3)


def fake_embedder(texts):
    return torch.stack([fake_text_embedding(t) for t in texts])


def test_ensemble_equals_hand_computation():
    classes = ["cat", "dog", "shoe"]
    templates = ["a photo of a {}.", "a drawing of a {}.", "{}"]
    clf = ZeroShotClassifier.build(fake_embedder, classes, templates, batch_size=2)
    for c, name in enumerate(classes):
        vecs = [fake_text_embedding(t.replace("{}", name)) for t in templates]
        mean = torch.stack([v / v.norm() for v in vecs]).mean(0)
        assert torch.allclose(clf.weights[c], mean / mean.norm(), atol=1e-6)
    assert clf.scale == 100.0 and clf.scale_source == "default"
    # logits are cosines with the normalised image embeddings
    x = torch.randn(5, DIM)
    assert torch.allclose(clf.logits(x), F.normalize(x, dim=-1) @ clf.weights.T, atol=1e-6)


def test_class_specific_prompts_are_used_verbatim():
    prompts = {"cat": ["a small furry pet", "a cat sleeping"], "dog": ["a loyal pet that barks"]}
    clf = ZeroShotClassifier.build(fake_embedder, ["cat", "dog"], prompts)
    v = F.normalize(fake_embedder(prompts["cat"]), dim=-1).mean(0)
    assert torch.allclose(clf.weights[0], v / v.norm(), atol=1e-6)
    with pytest.raises(ValueError, match="missing for 1 class"):
        ZeroShotClassifier.build(fake_embedder, ["cat", "dog", "bird"], prompts)


def test_build_with_an_aligned_model_uses_embed_texts_and_its_scale(tiny_model):
    model = tiny_model
    classes = ["cat", "dog", "car"]
    clf = ZeroShotClassifier.build(model, classes, ["a photo of a {}.", "a {}"])
    want = F.normalize(F.normalize(model.embed_texts(["a photo of a cat.", "a cat"]), dim=-1).mean(0), dim=0)
    assert torch.allclose(clf.weights[0], want, atol=1e-5)
    assert clf.scale == pytest.approx(model.scale().item())
    assert clf.scale_source == "model"
    images = torch.rand(12, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(12) % 3
    metrics = zero_shot_eval(model, images, labels, classes, ["a photo of a {}."])
    # by hand: one prompt per class, so each class's weight is its prompt's unit embedding
    with torch.no_grad():
        sims = model.encode_image(images, normalize=True) @ model.embed_texts([f"a photo of a {c}." for c in classes]).T
    top2 = sims.topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1]).min() > 1e-4  # no near-ties: batch shapes cannot flip a prediction
    assert metrics["acc1"] == pytest.approx((sims.argmax(1) == labels).float().mean().item())


def test_predict_proba_is_softmax_of_scaled_logits():
    clf = ZeroShotClassifier.build(fake_embedder, ["a", "b", "c", "d"], ["{} thing"], scale=50.0)
    x = torch.randn(7, DIM)
    p = clf.predict_proba(x)
    assert torch.allclose(p.sum(1), torch.ones(7), atol=1e-6)
    assert torch.allclose(p, torch.softmax(50.0 * clf.logits(x), dim=1), atol=1e-6)
    p2 = clf.predict_proba(x, scale=3.0)
    assert torch.allclose(p2, torch.softmax(3.0 * clf.logits(x), dim=1), atol=1e-6)
    assert torch.allclose(p2.sum(1), torch.ones(7), atol=1e-6)
    assert torch.equal(clf.predict(x), clf.logits(x).argmax(1))
    with pytest.raises(ValueError, match="scale"):
        clf.predict_proba(x, scale=0)


def test_top5_not_applicable_with_fewer_than_five_classes():
    clf = ZeroShotClassifier.build(fake_embedder, ["a", "b", "c"], ["{}"])
    m = clf.evaluate(torch.randn(6, DIM), [0, 1, 2, 0, 1, 2])
    assert "acc5" in m and m["acc5"] is None
    assert "not applicable" in m["acc5_note"]
    clf5 = ZeroShotClassifier.build(fake_embedder, list("abcde"), ["{}"])
    m5 = clf5.evaluate(torch.randn(6, DIM), [0, 1, 2, 3, 4, 0])
    assert m5["acc5"] == 1.0 and "acc5_note" not in m5


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metrics_match_hand_and_sklearn():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 7, generator=g)
    labels = torch.randint(0, 6, (200,), generator=g)              # class 6 never occurs
    m = classification_metrics(logits, labels)
    pred = logits.argmax(1)
    assert m["acc1"] == pytest.approx((pred == labels).double().mean().item())
    top5 = logits.topk(5, dim=1).indices
    assert m["acc5"] == pytest.approx((top5 == labels[:, None]).any(1).double().mean().item())
    cm = np.zeros((7, 7), dtype=int)
    for t, p in zip(labels.tolist(), pred.tolist()):
        cm[t, p] += 1
    assert m["confusion_matrix"] == cm.tolist()
    recalls = [cm[c, c] / cm[c].sum() for c in range(6)]
    assert m["mean_per_class_recall"] == pytest.approx(np.mean(recalls))
    assert m["per_class_accuracy"][:6] == pytest.approx(recalls) and m["per_class_accuracy"][6] is None
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert m["mean_per_class_recall"] == pytest.approx(sklearn_metrics.balanced_accuracy_score(labels, pred))


def test_ties_go_to_the_lower_class_index():
    logits = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    m = classification_metrics(logits, [0, 1])
    assert m["acc1"] == 0.5                                          # argmax picks class 0 for both
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_save_load_round_trip(tmp_path):
    clf = ZeroShotClassifier.build(fake_embedder, ["cat", "dog", "bird"], "clipart", scale=42.5)
    out = clf.save(tmp_path / "clf")
    assert (out / "classifier.safetensors").is_file()
    cfg = json.loads((out / "classifier.json").read_text())
    assert cfg["class_names"] == ["cat", "dog", "bird"] and cfg["templates"] == TEMPLATE_SETS["clipart"]
    back = ZeroShotClassifier.load(out)
    assert torch.equal(back.weights, clf.weights)
    assert back.class_names == clf.class_names and back.templates == clf.templates
    assert back.scale == 42.5
    x = torch.randn(5, DIM)
    assert torch.equal(back.predict_proba(x), clf.predict_proba(x))
    with pytest.raises(FileNotFoundError, match="classifier.json"):
        ZeroShotClassifier.load(tmp_path)


def test_evaluate_checks_inputs():
    clf = ZeroShotClassifier.build(fake_embedder, ["a", "b"], ["{}"])
    with pytest.raises(ValueError, match=r"labels\[1\] = 2 is out of range for 2 classes"):
        clf.evaluate(torch.randn(3, DIM), [0, 2, 1])
    with pytest.raises(ValueError, match="3 entries but there are 2"):
        clf.evaluate(torch.randn(2, DIM), [0, 1, 1])
    with pytest.raises(ValueError, match="dimension 8"):
        clf.evaluate(torch.randn(2, 8), [0, 1])
    x = torch.randn(3, DIM)
    x[2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN.*\[2\]"):
        clf.evaluate(x, [0, 1, 1])


def test_zero_shot_eval_on_embeddings_finds_the_classes():
    classes = ["cat", "dog", "shoe", "bag", "tree", "car"]
    clf = ZeroShotClassifier.build(fake_embedder, classes, "general")
    labels = torch.arange(6).repeat(5)
    images = clf.weights[labels] + 0.05 * torch.randn(30, DIM, generator=torch.Generator().manual_seed(0))
    metrics, clf2 = zero_shot_eval(fake_embedder, images.numpy(), labels, classes, "general", return_classifier=True)
    assert metrics["acc1"] == 1.0 and metrics["acc5"] == 1.0 and metrics["mean_per_class_recall"] == 1.0
    assert torch.equal(clf2.weights, clf.weights)


def test_template_sets_and_files(tmp_path):
    assert len(get_templates("general")) == 18
    for name in ("general", "clothing", "digits", "clipart", "photo", "name"):
        assert all("{}" in t for t in get_templates(name))
    txt = tmp_path / "mine.txt"
    txt.write_text("# my prompts\na sketch of a {}.\n\n{c}, drawn badly\n")
    assert load_templates(txt) == ["a sketch of a {}.", "{}, drawn badly"]
    assert resolve_templates(str(txt)) == load_templates(txt)
    js = tmp_path / "mine.json"
    js.write_text(json.dumps({"cifar10": ["a photo of a {c}."], "mnist": ["the digit {c}"]}))
    assert load_templates(js, key="mnist") == ["the digit {}"]
    js.write_text(json.dumps(["x {}", "y {}"]))
    assert load_templates(js) == ["x {}", "y {}"]
    bad = tmp_path / "bad.txt"
    bad.write_text("a photo of a {}.\na photo without a slot\n")
    with pytest.raises(ValueError, match=r"bad.txt line 2: template 'a photo without a slot' has no '\{\}'"):
        load_templates(bad)
    with pytest.raises(ValueError, match="no '{}' slot"):
        resolve_templates(["{} ok", "not ok"])
    with pytest.raises(ValueError, match="not a template set"):
        resolve_templates("no-such-set")
    assert resolve_templates("a {} here") == ["a {} here"]
    assert "{" in ZeroShotClassifier.build(fake_embedder, ["x{y}"], "photo").class_names[0]
