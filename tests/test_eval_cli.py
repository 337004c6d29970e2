"""tether eval over the scikit-learn digits: one CLIP_benchmark record per task, merged to CSV."""
import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tether.cli.main import main
from tether.data import DIGIT_CLASSES, DIGIT_TEMPLATES, digits_source, format_caption
from tether.embedding import embed
from tether.metrics.captioning import cider_d
from tether.metrics.templates import fill_template, get_templates



@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint                                  # tests/conftest.py: its BPE knows the digits' prompts


@pytest.mark.slow
def test_eval_writes_records_and_merge_makes_a_table(checkpoint, tiny_model, tmp_path):
    out = tmp_path / "results"
    assert main(["eval", "--model", str(checkpoint), "--model-name", "tiny", "--dataset", "digits",
                 "--task", "zeroshot", "--task", "retrieval", "--task", "linear_probe", "--task", "captioning",
                 "--out", str(out)]) == 0
    records = {p.stem.split("__")[-1]: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(records) == {"zeroshot", "retrieval", "linear_probe", "captioning"}
    for rec in records.values():
        assert set(rec) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
        assert rec["dataset"] == "digits" and rec["model"] == "tiny"
    # by hand, from the test images' embeddings: zero-shot weights are the normalised means of the
    # "digits" template set's prompt embeddings; the caption pool is the ten training captions
    # ("a photo of the number N."), so captioning by retrieval picks the nearest of those
    images = embed(tiny_model, "image", digits_source("test"))
    labels = np.array([s.label for s in images.samples])
    ensembles = [F.normalize(tiny_model.embed_texts([fill_template(t, c) for t in get_templates("digits")]).mean(0),
                             dim=0) for c in DIGIT_CLASSES]
    captions = [format_caption(DIGIT_TEMPLATES[0], c) for c in DIGIT_CLASSES]
    predictions = []
    for weights in (torch.stack(ensembles), tiny_model.embed_texts(captions)):
        sims = images.vectors @ weights.T
        top2 = sims.topk(2, dim=1).values
        assert (top2[:, 0] - top2[:, 1]).min() > 1e-5  # no near-ties that rounding could flip
        predictions.append(sims.argmax(1).numpy())
    zs = records["zeroshot"]["metrics"]
    assert zs["acc1"] == pytest.approx((predictions[0] == labels).mean())
    assert records["retrieval"]["metrics"]["n_images"] == 332
    assert records["linear_probe"]["metrics"]["lp_acc1"] > 0.5  # even random features separate digits
    cider, _ = cider_d({i: captions[p] for i, p in enumerate(predictions[1])},
                       {i: [captions[y]] for i, y in enumerate(labels)})
    assert records["captioning"]["metrics"]["cider_d"] == pytest.approx(cider)
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


def test_eval_on_a_users_manifest(checkpoint, tiny_model, tmp_path):
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
    # by hand: with 4 images Recall@10 is 1 whatever the model; Recall@1 and the mean ranks are not
    sims = tiny_model.embed_images([tmp_path / f"img{i}.png" for i in range(4)]) @ \
        tiny_model.embed_texts([f"a photo of the number {i}" for i in range(4)]).T
    # rank of the right image for each caption (text -> image) and of the right caption for each image
    t2i = (sims.T > sims.diagonal()[:, None]).sum(1) + 1
    i2t = (sims > sims.diagonal()[:, None]).sum(1) + 1  # (no near-ties that rounding could flip:)
    off, diagonal = ~torch.eye(4, dtype=torch.bool), sims.diagonal()
    assert min((sims - diagonal[None, :])[off].abs().min(), (sims - diagonal[:, None])[off].abs().min()) > 1e-5
    metrics = record["metrics"]
    assert metrics["image_retrieval_recall@1"] == pytest.approx((t2i == 1).float().mean().item())
    assert metrics["text_retrieval_recall@1"] == pytest.approx((i2t == 1).float().mean().item())
    assert metrics["image_retrieval_mean_rank"] == pytest.approx(t2i.float().mean().item())
    assert metrics["text_retrieval_mean_rank"] == pytest.approx(i2t.float().mean().item())
