"""tether eval over the scikit-learn digits: one CLIP_benchmark record per task, merged to CSV."""
import csv
import json

import pytest
import torch

import tether
from tether.cli.main import main
from tether.data import DIGIT_CLASSES, DIGIT_TEMPLATES, format_caption
from tether.tokenizer import Tokenizer

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = tether.create_model("tiny-vit-28")
    corpus = [format_caption(t, c) for t in DIGIT_TEMPLATES for c in DIGIT_CLASSES] * 3
    model.tokenizer = Tokenizer.train_bpe(corpus, vocab_size=600, context_length=24)
    return tether.save(model, tmp_path_factory.mktemp("m") / "tiny")


def test_eval_writes_records_and_merge_makes_a_table(checkpoint, tmp_path):
    out = tmp_path / "results"
    assert main(["eval", "--model", str(checkpoint), "--model-name", "tiny", "--dataset", "digits",
                 "--task", "zeroshot", "--task", "retrieval", "--task", "linear_probe", "--task", "captioning",
                 "--out", str(out)]) == 0
    records = {p.stem.split("__")[-1]: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(records) == {"zeroshot", "retrieval", "linear_probe", "captioning"}
    for rec in records.values():
        assert set(rec) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
        assert rec["dataset"] == "digits" and rec["model"] == "tiny"
    zs = records["zeroshot"]["metrics"]
    assert 0 <= zs["acc1"] <= zs["acc5"] <= 1
    assert records["retrieval"]["metrics"]["n_images"] == 332
    assert records["linear_probe"]["metrics"]["lp_acc1"] > 0.5  # even random features separate digits
    assert records["captioning"]["metrics"]["cider_d"] >= 0
    assert (out / "digits__tiny__zeroshot.png").stat().st_size > 0
    table = tmp_path / "table.csv"
    assert main(["eval", "merge", str(out), "--out", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 4 and {r["task"] for r in rows} == {"zeroshot_classification", "zeroshot_retrieval",
                                                            "linear_probe", "captioning"}


def test_eval_rejects_unknown_dataset_and_task(checkpoint, tmp_path, capsys):
    assert main(["eval", "--model", str(checkpoint), "--dataset", "imagenet", "--out", str(tmp_path)]) == 1
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err
    assert main(["eval", "--model", str(checkpoint), "--dataset", "digits", "--task", "vqa",
                 "--out", str(tmp_path)]) == 1
    assert "unknown task 'vqa'" in capsys.readouterr().err


def test_eval_on_a_users_manifest(checkpoint, tmp_path):
    from PIL import Image
    rows = ["image,caption"]
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]):
        Image.new("RGB", (20, 24), colour).save(tmp_path / f"img{i}.png")
        rows.append(f"img{i}.png,a photo of the number {i}")
    rows.append("missing.png,a photo of the number 9")  # skipped and counted, not fatal
    manifest = tmp_path / "val.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "results"
    assert main(["eval", "--model", str(checkpoint), "--model-name", "tiny", "--dataset", f"manifest:{manifest}",
                 "--task", "retrieval", "--out", str(out)]) == 0
    record = json.loads((out / "val__tiny__retrieval.json").read_text())
    assert record["metrics"]["n_images"] == 4 and record["metrics"]["skipped_samples"] == 1
    assert record["metrics"]["image_retrieval_recall@10"] == 1.0
