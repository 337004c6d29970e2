"""tether label / tether audit end to end on a small coloured-squares dataset, and the review page in Chromium."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tether.cli.main import main
from tether.curate import find_label_issues
from tether.curate.audit import audit
from tether.curate.label_data import load_folder, parse_classes
from tether.curate.label_inputs import LabelInputError

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
FLIPPED = {3: "blue", 17: "red"}     # row -> wrong label given (true colours: red, green)
PER_CLASS = 10
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def squares(tmp_path_factory, tiny_checkpoint) -> Path:
    """30 shaded squares of three colours in a manifest with two wrong labels, embedded by the tiny model."""
    from tether.curate import embed_dataset

    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    rows = []
    for n, (name, rgb) in enumerate([c for c in COLOURS.items() for _ in range(PER_CLASS)]):
        shade = np.clip(np.array(rgb) + rng.integers(-25, 25, 3), 0, 255).astype(np.uint8)
        img = np.full((28, 28, 3), 255, np.uint8)
        s = int(rng.integers(0, 8))
        img[s:s + 20, s:s + 20] = shade
        Image.fromarray(img).save(root / f"sq{n:02d}.png")
        rows.append({"image": f"sq{n:02d}.png", "caption": f"a {name} square", "label": FLIPPED.get(n, name)})
    with open(root / "rows.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "caption", "label"])
        writer.writeheader()
        writer.writerows(rows)
    emb = root / "emb"
    embed_dataset(tiny_checkpoint, {"type": "manifest", "path": str(root / "rows.csv"),
                                    "class_names": ["red", "green", "blue"]}, emb,
                  modalities=("image",), progress=False)
    return emb


def test_audit_cli_ranks_the_flipped_labels_first(squares, tmp_path, capsys):
    out = tmp_path / "audit"
    assert main(["audit", str(squares), "--probs", "neighbours", "--neighbours", "5", "--out", str(out)]) == 0
    assert "30 labelled rows, 3 classes" in capsys.readouterr().out
    import pyarrow.parquet as pq
    review = pq.read_table(out / "review.parquet").to_pydict()
    assert len(review["row"]) == 30 and sorted(review["row"]) == list(range(30))
    assert set(review["row"][:2]) == set(FLIPPED)                 # the two wrong labels are the top suspects
    assert review["quality"] == sorted(review["quality"])
    with open(out / "review.csv", newline="") as f:
        assert [int(r["row"]) for r in csv.DictReader(f)] == review["row"]
    health = json.loads((out / "health.json").read_text())
    assert {c["class"] for c in health["per_class"]} == set(COLOURS)
    assert health["issues"] == sum(review["is_issue"])
    for name in ("health.md", "suspects.png", "review.html"):
        assert (out / name).is_file()
    assert len(list((out / "images").glob("*.png"))) == 30


def test_audit_api_matches_find_label_issues_and_checks_labels(squares):
    data = load_folder(squares)
    y = np.array(data.columns["label"])      # indices into the manifest's class_names
    a = audit(data.x, y, ["red", "green", "blue"], probs="probe", folds=3, filter_by="both")
    np.testing.assert_array_equal(a.issues, find_label_issues(y, a.pred_probs, filter_by="both"))
    np.testing.assert_allclose(a.pred_probs.sum(axis=1), 1.0)
    with pytest.raises(LabelInputError, match=r"class 3 \('white'\) has no examples"):
        audit(data.x, y, ["red", "green", "blue", "white"])
    with pytest.raises(LabelInputError, match=r"labels\[0\] = 7 is outside"):
        audit(data.x, np.r_[7, y[1:]], ["red", "green", "blue"])


def test_label_cli_fits_the_scale_and_writes_candidates(squares, tmp_path, capsys, tiny_checkpoint):
    out = tmp_path / "label"
    argv = ["label", str(squares), "--model", str(tiny_checkpoint), "--classes", "red,green,blue",
            "--labelled", str(squares), "--target-precision", "0.9", "--templates", "photo", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "30 images, 3 classes" in printed and "(fitted)" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["scale"]["source"] == "fitted"
    assert report["scale"]["nll_after"] <= report["scale"]["nll_before"] + 1e-12
    import pyarrow.parquet as pq
    table = pq.read_table(out / "candidates.parquet").to_pydict()
    assert len(table["key"]) == 30
    decisions = table["decision"]
    assert decisions == sorted(decisions, key=lambda d: d != "review")     # review rows first
    p = np.array([table["probability_1"], table["probability_2"], table["probability_3"]]).T
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)             # 3 classes: all candidates
    assert (np.diff(p, axis=1) <= 0).all()
    # without a labelled set the model's own scale is used, and the report says so
    assert main(["label", str(squares), "--model", str(tiny_checkpoint), "--classes", "red,green,blue",
                 "--out", str(tmp_path / "plain")]) == 0
    assert json.loads((tmp_path / "plain" / "report.json").read_text())["scale"]["source"] == "model"


def test_label_cli_errors_are_one_line(squares, tmp_path, capsys, tiny_checkpoint):
    assert main(["label", str(squares), "--model", str(tiny_checkpoint), "--classes", "red",
                 "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "at least 2 are needed" in err
    assert main(["audit", str(squares), "--classes", "red,green", "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "row 3 (sq03.png) has label 2, outside the 2 classes" in err


def test_parse_classes_file_with_prompts(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("# classes\ncat: a photo of a cat | a cat\ndog\n\n")
    assert parse_classes(str(f)) == (["cat", "dog"], {"cat": ["a photo of a cat", "a cat"]})
    j = tmp_path / "classes.json"
    j.write_text(json.dumps({"cat": ["a cat"], "dog": []}))
    assert parse_classes(str(j)) == (["cat", "dog"], {"cat": ["a cat"]})
    with pytest.raises(Exception, match="'cat' is listed twice"):
        parse_classes("cat,dog,cat")


def test_review_page_renders_in_chromium(squares, tmp_path, tiny_checkpoint):
    """The static page opens from disk in headless Chromium and shows every card's image and candidates."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), "Debian's chromium package (scripts/install-test-deps.sh)"
    out = tmp_path / "label"
    assert main(["label", str(squares), "--model", str(tiny_checkpoint), "--classes", "red,green,blue",
                 "--out", str(out)]) == 0
    audit_out = tmp_path / "audit"
    assert main(["audit", str(squares), "--probs", "neighbours", "--neighbours", "5", "--out", str(audit_out)]) == 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--headless", "--no-sandbox", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.goto((out / "review.html").resolve().as_uri())
            page.wait_for_load_state("load")
            cards = page.locator(".card")
            assert cards.count() == 30
            loaded = page.eval_on_selector_all(".card img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
            assert len(loaded) == 30 and all(loaded)
            assert page.locator(".card").first.locator(".candidate").count() == 3
            names = page.eval_on_selector_all(".candidate .name", "els => els.map(e => e.textContent)")
            assert set(names) == set(COLOURS)
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
            page.goto((audit_out / "review.html").resolve().as_uri())      # the audit's page: given labels too
            page.wait_for_load_state("load")
            assert page.locator(".card").count() == 30
            first = page.locator(".card").first
            assert first.get_attribute("data-key") in {f"sq{r:02d}.png" for r in FLIPPED}
            assert first.locator(".given").inner_text() in {"given: blue", "given: red"}
            assert page.eval_on_selector(".card img", "i => i.complete && i.naturalWidth > 0")
        finally:
            browser.close()
    assert (tmp_path / "review.png").stat().st_size > 0


def test_label_few_shot_and_per_class_thresholds(squares, tmp_path, tiny_checkpoint):
    """Few-shot refinement measures its gain on the labelled rows it did not use; per-class thresholds."""
    from tether.curate.label_data import build_text_classifier
    from tether.curate.label_job import weak_labels
    from tether.checkpoints import resolve_model

    data = load_folder(squares)
    y = np.array(data.columns["label"])
    clf = build_text_classifier(resolve_model(str(tiny_checkpoint)), ["red", "green", "blue"], {}, "photo")
    r = weak_labels(data.x, clf, val_x=data.x, val_y=y, few_shot=3, per_class=True, target_precision=0.9)
    f = r.report["few_shot"]
    assert f["support_rows"] == 9 and f["measured_on"] == 21 and r.report["validation"]["rows"] == 21
    assert f["gain"] == pytest.approx(f["blend_acc1"] - f["text_acc1"])
    # colour prototypes from 3 images per class beat a random model's text weights on coloured squares
    assert f["blend_acc1"] > f["text_acc1"]
    assert len(r.report["threshold_rule"]["class_thresholds"]) == 3
    with pytest.raises(LabelInputError, match="has 10 labelled row"):
        weak_labels(data.x, clf, val_x=data.x, val_y=y, few_shot=10)


def test_audit_from_a_dataset_spec_embeds_once(squares, tmp_path, tiny_checkpoint, capsys):
    """--data embeds into OUT/embeddings (the embedding job's layout), then audits; a rerun reuses the parts."""
    rows = squares.parent / "rows.csv"
    argv = ["audit", "--data", f"manifest:{rows}", "--model", str(tiny_checkpoint), "--probs", "neighbours",
            "--neighbours", "3", "--no-text", "--quiet", "--out", str(tmp_path / "a")]
    assert main(argv) == 0
    assert (tmp_path / "a" / "embeddings" / "metadata" / "metadata_0000.parquet").is_file()
    first = (tmp_path / "a" / "review.csv").read_text()
    assert main(argv) == 0
    assert (tmp_path / "a" / "review.csv").read_text() == first
    assert "30 labelled rows" in capsys.readouterr().out
