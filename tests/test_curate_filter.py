"""tether score and tether filter: scores beside the metadata, DataComp's fraction semantics (hand-computed,
with ties), the basic rules and their reasons, reports, manifest and shards, one-line errors."""
from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from tether.cli.main import main
from tether.curate import clip_scores, fraction_threshold, read_scores, write_part
from tether.curate.layout import metadata_path
from tether.curate.rules import caption_rules, size_rules

pytestmark = pytest.mark.usefixtures("one_thread")

SCORES = [0.9, 0.5, 0.3, 0.3, 0.3, 0.1, 0.2, 0.8, 0.4, 0.6]


@pytest.mark.parametrize("fraction, threshold, kept", [
    # sorted descending: 0.9 0.8 0.6 0.5 0.4 0.3 0.3 0.3 0.2 0.1
    (0.5, 0.3, 8),    # index floor(5.0) = 5 -> 0.3; the three tied 0.3s are all kept (>=)
    (0.3, 0.5, 4),    # index 3 -> 0.5: keeps 0.9 0.8 0.6 0.5 -- one more than 30 % (DataComp's rule)
    (0.35, 0.5, 4),   # index floor(3.5) = 3
    (0.05, 0.9, 1),   # index 0 -> the top score
    (1.0, 0.1, 10),   # index N is past the end: the lowest score, keep all
    (0.99, 0.1, 10),  # index floor(9.9) = 9
])
def test_fraction_threshold_hand_computed(fraction, threshold, kept):
    t = fraction_threshold(SCORES, fraction)
    assert t == threshold
    assert sum(s >= t for s in SCORES) == kept


@pytest.mark.parametrize("fraction", [0, -0.1, 1.01, float("nan")])
def test_fraction_outside_the_interval_is_an_error(fraction):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        fraction_threshold(SCORES, fraction)


def test_fraction_of_an_empty_pool_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        fraction_threshold([], 0.5)
    assert fraction_threshold([np.nan, 0.2, 0.4], 0.5) == 0.2  # rows without a score are not in the pool


def test_caption_and_size_rules_follow_datacomp():
    r = caption_rules(["a red cat", "two words", "a b c", "", None, "abc defgh ij"])
    assert r["caption_words"].tolist() == [True, False, True, False, False, True]   # > 2 words
    assert r["caption_chars"].tolist() == [True, True, False, False, False, True]   # > 5 characters
    w = np.array([200, 199, 600, 601, np.nan, 300])
    h = np.array([200, 400, 200, 200, 100, 0])
    masks, unknown = size_rules(w, h)
    assert masks["image_min_side"].tolist() == [True, False, True, True, True, True]
    assert masks["aspect_ratio"].tolist() == [True, True, True, False, True, True]  # 600/200 = 3 passes
    assert unknown.tolist() == [False, False, False, False, True, True]


def unit_pairs(scores) -> tuple[np.ndarray, np.ndarray]:
    """Image rows e0 and caption rows cos(a) e0 + sin(a) e1: their cosine is the given score."""
    n = len(scores)
    img = np.zeros((n, 8), np.float32)
    img[:, 0] = 1
    txt = np.zeros((n, 8), np.float32)
    txt[:, 0] = scores
    txt[:, 1] = np.sqrt(1 - np.square(scores))
    return img, txt


def synthetic_folder(root, scores, captions, sizes=None):
    img, txt = unit_pairs(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    meta = {"key": [f"s{i}" for i in range(n)], "caption": captions, "source": ["a", "b"] * (n // 2)}
    if sizes is not None:
        meta["width"], meta["height"] = [s[0] for s in sizes], [s[1] for s in sizes]
    half = n // 2
    for part, rows in enumerate((slice(0, half), slice(half, n))):
        write_part(root, part, {"image": img[rows], "text": txt[rows]},
                   {k: v[rows] for k, v in meta.items()}, dtype="float32")
    return root


def test_score_writes_row_aligned_parts_and_summary(tmp_path, capsys):
    folder = synthetic_folder(tmp_path / "emb", SCORES, ["a photo of a cat"] * 10)
    before = metadata_path(folder, 0).read_bytes()
    assert main(["score", str(folder), "--group-by", "source", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 part(s) computed now" in out and "0.28: 0.800" in out  # 8 of the 10 scores are >= 0.28
    np.testing.assert_allclose(read_scores(folder), SCORES, atol=1e-6)  # float32 column
    np.testing.assert_allclose(clip_scores(folder), SCORES, atol=1e-6)
    part = pq.read_table(folder / "scores" / "scores_0001.parquet").to_pydict()
    assert part["key"] == [f"s{i}" for i in range(5, 10)]
    assert metadata_path(folder, 0).read_bytes() == before  # clip-retrieval's metadata untouched
    for f in ("summary.json", "hist.png", "hist_by_source.png"):
        assert (folder / "scores" / f).stat().st_size > 0
    assert main(["score", str(folder), "--no-progress"]) == 0
    assert "0 part(s) computed now" in capsys.readouterr().out  # finished parts are kept


def test_filter_reasons_threshold_and_outputs(tmp_path, capsys):
    captions = ["a photo of a cat"] * 10
    captions[0] = "cat"                      # fails caption_words and caption_chars (score 0.9)
    captions[7] = "a b c"                    # fails caption_chars only
    sizes = [(640, 480)] * 10
    sizes[1] = (150, 400)                    # fails image_min_side
    sizes[9] = (1000, 300)                   # fails aspect_ratio (3.33)
    folder = synthetic_folder(tmp_path / "emb", SCORES, captions, sizes)
    out = tmp_path / "f"
    assert main(["filter", str(folder), "--top-fraction", "0.5", "--out", str(out), "--write-manifest",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "threshold 0.3000" in printed
    keep = pq.read_table(out / "keep.parquet").to_pydict()
    # scores >= 0.3 pass the score rule; then the basic rules take rows 0, 1, 7, 9
    assert keep["kept"] == [False, False, True, True, True, False, False, False, True, False]
    assert keep["reason"] == ["caption_words", "image_min_side", None, None, None, "clip_score", "clip_score",
                              "caption_chars", None, "aspect_ratio"]
    assert keep["reasons"][0] == "caption_words,caption_chars"
    manifest = pq.read_table(out / "manifest.parquet").to_pydict()
    assert manifest["key"] == ["s2", "s3", "s4", "s8"]
    report = (out / "report.md").read_text()
    assert "| clip_score | 2 | 2 |" in report and "threshold **0.3000**" in report
    for f in ("histogram.png", "lowest_rejected.png", "lowest_kept.png", "summary.json"):
        assert (out / f).stat().st_size > 0
    # rules switch off one by one
    assert main(["filter", str(folder), "--min-score", "0.3", "--out", str(out), "--no-rule", "caption_words",
                 "--no-rule", "caption_chars", "--no-rule", "aspect_ratio", "--no-progress"]) == 0
    keep = pq.read_table(out / "keep.parquet").to_pydict()
    assert keep["kept"] == [True, False, True, True, True, False, False, True, True, True]


@pytest.mark.parametrize("args, message", [
    (["--min-score", "1.5"], "[-1, 1]"), (["--top-fraction", "0"], "(0, 1]"),
    (["--top-fraction", "1.2"], "(0, 1]")])
def test_filter_bad_numbers_are_one_line_errors(tmp_path, capsys, args, message):
    folder = synthetic_folder(tmp_path / "emb", SCORES, ["a photo of a cat"] * 10)
    assert main(["filter", str(folder), *args, "--out", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_folder_without_text_or_rows_is_a_one_line_error(tmp_path, capsys):
    write_part(tmp_path / "img_only", 0, {"image": np.eye(3, dtype=np.float32)}, {"key": ["a", "b", "c"]})
    assert main(["filter", str(tmp_path / "img_only"), "--min-score", "0.2", "--out", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "text_emb" in err
    (tmp_path / "empty").mkdir()
    assert main(["score", str(tmp_path / "empty")]) == 1
    assert "no finished parts" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tux_folder(tiny_model, tuxpaint_stamps, tmp_path_factory):
    """40 Tux Paint stamps embedded by the tiny model (real images and captions, meaningless weights)."""
    from tether.data import TuxPaintSource
    from tether.embedding import embed
    stamps = [s for s in TuxPaintSource(tuxpaint_stamps).stamps if s.path.suffix == ".png"][:40]
    img = embed(tiny_model, "image", [s.path for s in stamps]).vectors.numpy()
    txt = embed(tiny_model, "text", [s.caption for s in stamps]).vectors.numpy()
    root = tmp_path_factory.mktemp("tux") / "emb"
    for part, rows in enumerate((slice(0, 25), slice(25, 40))):
        write_part(root, part, {"image": img[rows], "text": txt[rows]},
                   {"key": [s.key for s in stamps[rows]], "image_path": [str(s.path) for s in stamps[rows]],
                    "caption": [s.caption for s in stamps[rows]], "category": [s.category for s in stamps[rows]]})
    return root, img, txt


def test_scores_of_real_embeddings_match_row_cosines(tux_folder):
    root, img, txt = tux_folder
    stored_i = np.load(root / "img_emb" / "img_emb_0000.npy").astype(np.float64)
    stored_t = np.load(root / "text_emb" / "text_emb_0000.npy").astype(np.float64)
    expected = (stored_i * stored_t).sum(1) / np.linalg.norm(stored_i, axis=1) / np.linalg.norm(stored_t, axis=1)
    np.testing.assert_allclose(clip_scores(root)[:25], expected, rtol=0, atol=1e-12)
    # float16 storage moves a score by at most a few float16 steps of the unit rows
    direct = (img * txt).sum(1)
    assert np.abs(clip_scores(root) - direct).max() < 2e-3


def test_filter_writes_shards_and_contact_sheets_of_real_images(tux_folder, tmp_path, capsys):
    from tether.data import WebDatasetSource
    root, _, _ = tux_folder
    out = tmp_path / "f"
    assert main(["filter", str(root), "--top-fraction", "0.8", "--no-basic-rules", "--out", str(out),
                 "--write-shards", "--shard-size", "10", "--no-progress"]) == 0
    keep = pq.read_table(out / "keep.parquet").to_pydict()
    kept = [k for k, ok in zip(keep["key"], keep["kept"]) if ok]
    scores = np.asarray(keep["clip_score"], dtype=np.float64)
    assert len(kept) == 33 and scores[keep["kept"]].min() == np.sort(scores)[::-1][32]  # index floor(40 * 0.8)
    shards = WebDatasetSource(str(out / "shards" / "kept-*.tar"))
    assert sorted(s.key for s in shards) == sorted(kept)
    from PIL import Image
    with Image.open(out / "lowest_kept.png") as sheet:
        assert sheet.width >= 6 * 160 and sheet.height > 160


def test_language_rule_with_lingua():
    pytest.importorskip("lingua")
    from tether.curate.rules import language_rule
    mask = language_rule(["a photograph of a red cat sleeping on the sofa",
                          "une photographie d'un chat roux qui dort sur le canapé"], "en")
    assert mask.tolist() == [True, False]
    with pytest.raises(ValueError, match="ISO 639-1"):
        language_rule(["x"], "xx")
