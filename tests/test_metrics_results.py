"""Result records in CLIP_benchmark's JSON layout, merged into one CSV."""
import csv
import json

import numpy as np
import pytest
import torch

from tether.metrics import merge_results, read_result, result_record, write_csv, write_result


def test_record_layout_and_json_safety(tmp_path):
    rec = result_record("cifar10", "ViT-B-32", "zeroshot_classification",
                        {"acc1": np.float32(0.5), "acc5": float("nan"), "n": torch.tensor(3),
                         "per_class_accuracy": np.array([0.25, 0.75])}, pretrained="openai")
    assert list(rec) == ["dataset", "model", "pretrained", "task", "metrics", "language"]
    assert rec["language"] == "en"
    assert rec["metrics"] == {"acc1": 0.5, "acc5": None, "n": 3, "per_class_accuracy": [0.25, 0.75]}
    path = write_result(tmp_path / "r" / "cifar10.json", rec)
    assert json.loads(path.read_text()) == rec
    assert read_result(path) == rec
    assert not list(tmp_path.glob("**/.*"))                     # no temporary left behind
    with pytest.raises(ValueError, match="dataset"):
        result_record("", "m", "t", {})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        result_record("d", "m", "t", {"x": object()})


def test_merge_and_csv(tmp_path):
    write_result(tmp_path / "a.json", result_record("cifar10", "tiny", "zeroshot_classification",
                                                    {"acc1": 0.5, "acc5": 0.9, "confusion_matrix": [[1]]}))
    write_result(tmp_path / "b.json", result_record("flickr30k", "tiny", "zeroshot_retrieval",
                                                    {"image_retrieval_recall@5": 0.7}))
    (tmp_path / "more").mkdir()
    write_result(tmp_path / "more" / "c.json", result_record("cifar10", "tiny", "linear_probe",
                                                             {"lp_acc1": 0.8, "acc1": None}, pretrained="x"))
    rows = merge_results([tmp_path / "a.json", tmp_path / "b.json", tmp_path / "more"])
    assert len(rows) == 3
    assert rows[0]["acc1"] == 0.5 and "confusion_matrix" not in rows[0]
    assert rows[2]["model_fullname"] == "tiny x" and rows[0]["model_fullname"] == "tiny"
    out = write_csv(rows, tmp_path / "table.csv")
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    header = list(table[0])
    assert header[:6] == ["dataset", "model", "pretrained", "task", "language", "model_fullname"]
    assert set(header[6:]) == {"acc1", "acc5", "image_retrieval_recall@5", "lp_acc1"}
    assert table[1]["acc1"] == "" and table[1]["image_retrieval_recall@5"] == "0.7"
    assert table[2]["lp_acc1"] == "0.8" and table[2]["acc1"] == ""
    # the same (dataset, model, pretrained, task, language) twice is an error naming both files
    write_result(tmp_path / "dup.json", result_record("cifar10", "tiny", "zeroshot_classification", {"acc1": 0.6}))
    with pytest.raises(ValueError, match=r"dup.json and .*a.json|a.json and .*dup.json"):
        merge_results([tmp_path])
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="junk.json: not valid JSON"):
        merge_results([tmp_path / "junk.json"])
    with pytest.raises(FileNotFoundError):
        merge_results([tmp_path / "missing.json"])


def test_metrics_package_exports_the_caption_metrics():
    import tether.metrics
    from tether.metrics import caption_by_retrieval, cider, cider_d
    from tether.metrics import captioning
    assert (cider_d, cider, caption_by_retrieval) == (captioning.cider_d, captioning.cider,
                                                      captioning.caption_by_retrieval)
    assert {"cider_d", "cider", "caption_by_retrieval"} <= set(tether.metrics.__all__)
    _, per_image = cider_d(["a red bus", "a cat"], [["a red bus on a road"], ["a dog on a sofa"]])
    assert per_image.shape == (2,) and per_image[0] > per_image[1]
