"""tether demo end to end, shortened: every artefact it promises is written and loadable."""
import json

import pytest
import torch
import torch.nn.functional as F

import tether
from tether.cli.main import main
from tether.data import FASHION_MNIST_CLASSES, HELDOUT_TEMPLATES, build_source
from tether.embedding import embed
from tether.metrics.evaluate import BUILTIN
from tether.metrics.templates import fill_template

pytestmark = [pytest.mark.usefixtures("fashion_mnist"), pytest.mark.slow]   # needs Debian's dataset-fashion-mnist


def test_short_demo_writes_model_report_and_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "20", "--batch-size", "64", "--no-progress"]) == 0
    assert "zero-shot top-1" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 20
    for name in ("report.md", "training_loss.png", "clip_scores.png",
                 "results/fashion_mnist_zeroshot_classification.json", "results/fashion_mnist_linear_probe.json"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "results/fashion_mnist_zeroshot_classification.json").read_text())
    assert record["task"] == "zeroshot_classification" and record["dataset"] == "fashion_mnist"
    model = tether.load(out / "model")
    emb = model.embed_texts(["an image of a sneaker."])
    assert emb.shape == (1, 64) and torch.allclose(emb.norm(), torch.tensor(1.0), atol=1e-5)
    assert record["metrics"]["acc1"] == metrics["zeroshot_acc1"]
    assert f"{metrics['zeroshot_acc1']:.4f}" in (out / "report.md").read_text()
    index = json.loads((out / "index" / "index_info.json").read_text())      # `tether serve --index demo/index`
    assert index["rows"] == [10000] and index["indexes"]["image"]["recall_at_10"] >= 0.95

    # the reported zero-shot accuracy, recomputed by hand from the saved model: each class's weight is
    # the normalised mean of its held-out prompts' embeddings, each test image goes to its nearest class
    test = embed(model, "image", build_source(BUILTIN["fashion_mnist"].test), batch_size=1000)
    labels = torch.tensor([s.label for s in test.samples])
    weights = torch.stack([F.normalize(model.embed_texts([fill_template(t, c) for t in HELDOUT_TEMPLATES]).mean(0),
                                       dim=0) for c in FASHION_MNIST_CLASSES])
    sims = test.vectors @ weights.T
    top2 = sims.topk(2, dim=1).values
    near_ties = int((top2[:, 0] - top2[:, 1] < 1e-5).sum())  # predictions that rounding could flip
    correct = int((sims.argmax(1) == labels).sum())
    assert len(labels) == 10000 and abs(metrics["zeroshot_acc1"] * 10000 - correct) <= near_ties
    # 20 steps already learn: well above chance (0.1); 0.33 on the project's CPU, the full demo about 0.88
    assert metrics["zeroshot_acc1"] > 0.25, metrics
