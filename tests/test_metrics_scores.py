"""CLIP-score distributions: per-pair cosine, summaries, groups, histogram PNGs."""
import sys

import numpy as np
import pytest
import torch

from tether.metrics import (DEFAULT_THRESHOLDS, pair_scores, plot_score_histograms, summarize_by_group,
                            summarize_scores)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_pair_scores_are_rowwise_cosines():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 12)), rng.normal(size=(50, 12))
    want = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert np.allclose(pair_scores(a, b), want, atol=1e-12)
    assert np.allclose(pair_scores(torch.tensor(a, dtype=torch.float32), torch.tensor(b)), want, atol=1e-6)
    assert pair_scores([[1.0, 0.0]], [[3.0, 0.0]]).tolist() == [1.0]


def test_pair_scores_bad_input():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match="same shape"):
        pair_scores(a, np.ones((2, 4)))
    b = np.ones((3, 4))
    b[1] = 0
    with pytest.raises(ValueError, match=r"text_embeds has zero-norm rows.*\[1\]"):
        pair_scores(a, b)


def test_summary_matches_numpy_and_thresholds_are_at_or_above():
    rng = np.random.default_rng(1)
    s = np.concatenate([rng.normal(0.27, 0.05, size=997), [0.28, 0.3, 0.3]])
    m = summarize_scores(s)
    assert m["count"] == 1000
    assert m["mean"] == pytest.approx(s.mean()) and m["std"] == pytest.approx(s.std())
    assert m["min"] == s.min() and m["max"] == s.max()
    for p in (1, 5, 10, 25, 50, 75, 90, 95, 99):
        assert m[f"p{p}"] == pytest.approx(np.percentile(s, p))
    assert set(DEFAULT_THRESHOLDS) >= {0.28, 0.3}
    for t in DEFAULT_THRESHOLDS:
        assert m[f"frac_ge_{t:g}"] == pytest.approx((s >= t).mean())
    exact = summarize_scores([0.1, 0.28, 0.3, 0.5], thresholds=(0.28, 0.3))
    assert exact["frac_ge_0.28"] == 0.75 and exact["frac_ge_0.3"] == 0.5
    empty = summarize_scores([])
    assert empty["count"] == 0 and empty["mean"] is None and empty["frac_ge_0.3"] is None
    with pytest.raises(ValueError, match=r"NaN.*\[1\]"):
        summarize_scores([0.1, float("nan")])


def test_grouped_summaries():
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    groups = ["photo", "drawing", "photo", "drawing", "photo", "photo"]
    out = summarize_by_group(s, groups, thresholds=(0.3,))
    assert list(out) == ["drawing", "photo"]
    assert out["drawing"]["count"] == 2 and out["drawing"]["mean"] == pytest.approx(0.3)
    assert out["photo"]["frac_ge_0.3"] == 0.75
    numeric = summarize_by_group(s, np.array([2, 1, 2, 1, 2, 10]))
    assert list(numeric) == ["1", "2", "10"]
    with pytest.raises(ValueError, match="one label per score"):
        summarize_by_group(s, groups[:3])


@pytest.mark.parametrize("layout", ["grid", "overlay"])
def test_histogram_png_written(tmp_path, layout):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(2)
    s = rng.normal(0.28, 0.04, size=300)
    groups = np.array(["a", "b", "c"])[rng.integers(0, 3, size=300)]
    one = plot_score_histograms(s, tmp_path / "all.png", title="stamps")
    many = plot_score_histograms(s, tmp_path / "sub" / f"groups_{layout}.png", groups, layout=layout)
    for path in (one, many):
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)
    assert not list(tmp_path.glob("**/*.tmp"))


def test_plotting_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_score_histograms([0.1, 0.2], tmp_path / "x.png")
    assert summarize_scores([0.1, 0.2])["count"] == 2         # the rest works without it
