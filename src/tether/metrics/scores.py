"""CLIP-score distributions of paired image and caption embeddings.

The score of pair i is the cosine similarity of its image and caption embeddings::

    score_i = <x_i, t_i> / (||x_i|| ||t_i||)

(the quantity LAION filtered on: LAION-400M kept pairs scoring >= 0.3 with OpenAI ViT-B/32,
LAION-5B's English part >= 0.28.  Hessel et al.'s "CLIPScore" is 2.5 * max(score, 0); it is
not what is computed here.)

``summarize_scores`` gives count, mean, std (population, ddof=0), min, max, the percentiles
1/5/10/25/50/75/90/95/99 (numpy's linear interpolation) and, for every threshold t, the fraction
of pairs with ``score >= t`` (the fraction a ``score >= t`` filter keeps).  ``summarize_by_group``
does the same per class or source label; ``plot_score_histograms`` draws PNG histograms with
the thresholds marked (matplotlib, imported only there).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..io import atomic_file
from .retrieval import as_embeddings

__all__ = ["pair_scores", "summarize_scores", "summarize_by_group", "plot_score_histograms",
           "DEFAULT_THRESHOLDS", "PERCENTILES"]

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.2, 0.25, 0.28, 0.3, 0.35)
PERCENTILES: tuple[int, ...] = (1, 5, 10, 25, 50, 75, 90, 95, 99)


def pair_scores(image_embeds: Any, text_embeds: Any) -> np.ndarray:
    """Row-wise cosine similarity of paired embeddings: (N, D) x (N, D) -> (N,) float64."""
    img, img_norm = as_embeddings(image_embeds, "image_embeds", dtype=torch.float64)
    txt, txt_norm = as_embeddings(text_embeds, "text_embeds", device=img.device, dtype=torch.float64)
    if img.shape != txt.shape:
        raise ValueError(f"paired embeddings must have the same shape: image_embeds {tuple(img.shape)}, "
                         f"text_embeds {tuple(txt.shape)}")
    return ((img * txt).sum(dim=1) / (img_norm * txt_norm)).clamp_(-1.0, 1.0).cpu().numpy()


def threshold_key(t: float) -> str:
    """Column name of a threshold fraction, e.g. ``frac_ge_0.28``."""
    return f"frac_ge_{t:g}"


def _as_scores(scores: Any) -> np.ndarray:
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s):
        raise ValueError(f"scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"scores has NaN or infinite values at {len(rows)} position(s): {rows[:10].tolist()}")
    return s


def summarize_scores(scores: Any, thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
                     percentiles: Iterable[float] = PERCENTILES) -> dict[str, float | int | None]:
    """Summary statistics of a 1-D array of scores (see the module docstring).

    Keys: ``count``, ``mean``, ``std``, ``min``, ``max``, ``p1`` ... ``p99``, ``frac_ge_<t>``.
    An empty array gives ``count`` 0 and None for everything else.
    """
    s = _as_scores(scores)
    thresholds = [float(t) for t in thresholds]
    percentiles = [float(p) for p in percentiles]
    for p in percentiles:
        if not 0 <= p <= 100:
            raise ValueError(f"percentiles must lie in [0, 100], got {p}")
    out: dict[str, float | int | None] = {"count": int(s.size)}
    empty = s.size == 0
    out["mean"] = None if empty else float(s.mean())
    out["std"] = None if empty else float(s.std())
    out["min"] = None if empty else float(s.min())
    out["max"] = None if empty else float(s.max())
    values = np.percentile(s, percentiles) if not empty and percentiles else [None] * len(percentiles)
    for p, v in zip(percentiles, values):
        out[f"p{p:g}"] = None if v is None else float(v)
    for t in thresholds:
        out[threshold_key(t)] = None if empty else float((s >= t).mean())
    return out


def _groups(groups: Any, n: int) -> np.ndarray:
    g = groups.detach().cpu().numpy() if isinstance(groups, torch.Tensor) else np.asarray(groups, dtype=object)
    if g.ndim != 1 or g.shape[0] != n:
        raise ValueError(f"groups must be a 1-D sequence with one label per score ({n}), got shape {g.shape}")
    return g


def _group_order(labels: np.ndarray) -> list[Any]:
    uniq = list(dict.fromkeys(labels.tolist()))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def summarize_by_group(scores: Any, groups: Any, thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
                       percentiles: Iterable[float] = PERCENTILES) -> dict[str, dict[str, Any]]:
    """``{str(group): summarize_scores(scores of that group)}``, groups sorted by label."""
    s = _as_scores(scores)
    g = _groups(groups, s.size)
    thresholds, percentiles = list(thresholds), list(percentiles)
    out: dict[str, dict[str, Any]] = {}
    for label in _group_order(g):
        key = str(label)
        if key in out:
            raise ValueError(f"two different group labels print as {key!r}")
        out[key] = summarize_scores(s[g == label], thresholds, percentiles)
    return out


def _import_matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting CLIP-score histograms needs matplotlib: pip install matplotlib") from e
    return matplotlib, Figure, FigureCanvasAgg


def plot_score_histograms(scores: Any, path: str | Path, groups: Any = None, *,
                          thresholds: Sequence[float] = DEFAULT_THRESHOLDS, bins: int = 50,
                          value_range: tuple[float, float] | None = None, layout: str = "grid",
                          title: str | None = None, max_groups: int = 24, dpi: int = 100) -> Path:
    """Write a PNG of the score histogram(s) with vertical lines at ``thresholds``.

    Without ``groups``: one histogram.  With ``groups`` and ``layout="grid"``: small multiples,
    the first panel all scores, then one panel per group (the ``max_groups`` largest), sharing
    the x axis.  ``layout="overlay"``: one axis with a density-normalised step histogram per
    group.  Uses matplotlib's Agg canvas directly (no pyplot, no global backend change).
    """
    _, Figure, FigureCanvasAgg = _import_matplotlib()
    s = _as_scores(scores)
    if s.size == 0:
        raise ValueError("no scores to plot")
    if layout not in ("grid", "overlay"):
        raise ValueError(f"layout must be 'grid' or 'overlay', got {layout!r}")
    thresholds = [float(t) for t in thresholds]
    if value_range is None:
        lo, hi = float(s.min()), float(s.max())
        lo, hi = min([lo] + thresholds), max([hi] + thresholds)
        pad = 0.02 * (hi - lo) or 0.01
        value_range = (lo - pad, hi + pad)
    edges = np.linspace(value_range[0], value_range[1], int(bins) + 1)
    panels, dropped = _histogram_panels(s, groups, max_groups)

    def mark(ax) -> None:
        for t in thresholds:
            ax.axvline(t, color="crimson" if t in (0.28, 0.3) else "gray", linestyle="--", linewidth=1)
        ax.set_xlim(*value_range)

    if layout == "overlay" or len(panels) == 1:
        fig = _overlay_figure(Figure, panels, edges, mark, dpi)
    else:
        fig = _grid_figure(Figure, panels, edges, mark, dpi)
    subtitle = "dashed: thresholds " + ", ".join(f"{t:g}" for t in thresholds)
    if any(t in (0.28, 0.3) for t in thresholds):
        subtitle += " (red: LAION's 0.28 / 0.3)"
    if dropped:
        subtitle += f"; {dropped} smaller group(s) not shown"
    fig.suptitle((title + "\n" if title else "") + subtitle, fontsize="medium")
    fig.tight_layout()
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _histogram_panels(s: np.ndarray, groups: Any, max_groups: int) -> tuple[list[tuple[str, np.ndarray]], int]:
    """(title, scores) per panel: all scores, then the ``max_groups`` largest groups in label order;
    and the number of groups left out."""
    panels: list[tuple[str, np.ndarray]] = [(f"all (n={s.size})", s)]
    if groups is None:
        return panels, 0
    g = _groups(groups, s.size)
    labels = _group_order(g)
    counts = {label: int((g == label).sum()) for label in labels}
    kept = sorted(labels, key=lambda label: -counts[label])[:max_groups]
    kept = [label for label in labels if label in kept]
    panels += [(f"{label} (n={counts[label]})", s[g == label]) for label in kept]
    return panels, len(labels) - len(kept)


def _overlay_figure(Figure, panels: list[tuple[str, np.ndarray]], edges: np.ndarray, mark, dpi: int):
    """One axis: a plain histogram of all scores, or a density step histogram per panel."""
    fig = Figure(figsize=(8, 4.5), dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    if len(panels) == 1:
        ax.hist(panels[0][1], bins=edges, color="steelblue")  # one panel: all scores
        ax.set_ylabel("pairs")
    else:
        for k, (name, values) in enumerate(panels):
            ax.hist(values, bins=edges, histtype="step", density=True, linewidth=1.5 if k == 0 else 1,
                    color="black" if k == 0 else None, label=name)
        ax.set_ylabel("density")
        ax.legend(fontsize="small", ncol=2)
    mark(ax)
    ax.set_xlabel("cosine similarity (image, caption)")
    return fig


def _grid_figure(Figure, panels: list[tuple[str, np.ndarray]], edges: np.ndarray, mark, dpi: int):
    """Small multiples (up to 4 columns) sharing the x axis, one panel each."""
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows + 0.6), dpi=dpi)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.set_visible(False)
            continue
        name, values = panels[k]
        ax.hist(values, bins=edges, color="black" if k == 0 else "steelblue")
        ax.set_title(name, fontsize="small")
        mark(ax)
    for ax in axes[-1]:
        ax.set_xlabel("cosine similarity")
    return fig
