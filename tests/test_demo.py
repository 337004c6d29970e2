"""tether demo end to end, shortened: every artefact it promises is written and loadable."""
import json

import pytest
import torch

import tether
from tether.cli.main import main

pytestmark = pytest.mark.usefixtures("fashion_mnist")   # skips without the dataset (tests/conftest.py)


def test_short_demo_writes_model_report_and_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "20", "--batch-size", "64", "--no-progress"]) == 0
    assert "zero-shot top-1" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.1 < metrics["zeroshot_acc1"] <= 1 and metrics["steps"] == 20
    for name in ("report.md", "training_loss.png", "clip_scores.png",
                 "results/fashion_mnist_zeroshot_classification.json", "results/fashion_mnist_linear_probe.json"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "results/fashion_mnist_zeroshot_classification.json").read_text())
    assert record["task"] == "zeroshot_classification" and record["dataset"] == "fashion_mnist"
    model = tether.load(out / "model")
    emb = model.embed_texts(["an image of a sneaker."])
    assert emb.shape == (1, 64) and torch.allclose(emb.norm(), torch.tensor(1.0), atol=1e-5)
