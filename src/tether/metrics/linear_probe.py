"""Linear probe: multinomial logistic regression on frozen features.

The model is ``logits = W x + b`` trained by full-batch L-BFGS (torch, float64) on::

    loss(W, b) = (1/n) * sum_i CE(W x_i + b, y_i) + (lambda / 2) * ||W||_F^2      (b not penalised)

which is scikit-learn's ``LogisticRegression(penalty="l2", solver="lbfgs")`` objective with
``C = 1 / (lambda * n)``; both are reported.  (CLIP's paper used that sklearn model; CLIP_benchmark
trains a ``torch.nn.Linear`` with AdamW and sweeps its weight decay over the same grid.)

``lambda`` is chosen on a validation split as CLIP_benchmark chooses its weight decay:
the grid is ``logspace(-6, 2, 97)``; first the 7 coarse points ``1e-6, 1e-5 ... 1e2``, then a
binary refinement around the best point with steps of 8, 4, 2, 1 grid positions (each step
tries the neighbours on either side).  The best point has the highest validation top-1 accuracy;
ties go to the lower validation cross-entropy, then to the larger lambda.  The final probe is fit
on train + validation with the chosen lambda and scored on the test features.

Fits are warm-started from the nearest lambda already fitted (the coarse pass runs from strong
to weak penalty); the objective is strictly convex, so this changes only the iteration count.
Features are centred inside the fit (exact: the bias is not penalised), which makes L-BFGS
converge on raw, uncentred features too.  Results are deterministic for a given seed, data and
thread count (different BLAS thread counts may change the last bits).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .retrieval import as_embeddings
from .zeroshot import as_labels, classification_metrics

__all__ = ["LogisticProbe", "fit_logistic_regression", "linear_probe", "L2_GRID", "COARSE_STEP"]

L2_GRID = np.logspace(-6, 2, num=97)     # CLIP_benchmark's weight-decay grid (12 points per decade)
COARSE_STEP = 16                          # 1e-6, 1e-5, ..., 1e2
REFINE_STEPS = (8, 4, 2, 1)


@dataclass
class LogisticProbe:
    """A fitted linear classifier: ``logits = W @ features + b`` (features L2-normalised if ``normalize``)."""
    weight: torch.Tensor            # (C, D) float64
    bias: torch.Tensor              # (C,)
    l2_lambda: float
    normalize: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: Any) -> torch.Tensor:
        x = _features(features, "features", self.normalize)
        if x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"features have dimension {x.shape[1]}, the probe {self.weight.shape[1]}")
        return x @ self.weight.T + self.bias

    def predict(self, features: Any) -> torch.Tensor:
        return self.logits(features).argmax(dim=1)

    def predict_proba(self, features: Any) -> torch.Tensor:
        return torch.softmax(self.logits(features), dim=1)


def _features(x: Any, name: str, normalize: bool) -> torch.Tensor:
    """Checked float64 CPU features, L2-normalised per row when ``normalize``."""
    if normalize:
        t, norms = as_embeddings(x, name, device="cpu", dtype=torch.float64)
        return t / norms[:, None]
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (rows, dim) matrix, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    bad = ~torch.isfinite(t).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()
        raise ValueError(f"{name} has NaN or infinite values in {rows.numel()} row(s): {rows[:10].tolist()}")
    return t


_SINGLE_THREAD_BELOW = 1 << 26


@contextmanager
def _torch_threads(n: int | None):
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2_lambda: float, *,
                            max_iter: int = 1000, tol: float = 1e-6,
                            init: tuple[torch.Tensor, torch.Tensor] | None = None,
                            num_threads: int | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Minimise mean cross-entropy + lambda/2 ||W||^2 by L-BFGS; returns (W, b, info).

    ``x`` (n, D) float64 features as they are (no normalisation here), ``y`` (n,) int64.  Starts
    from zeros, or from ``init = (W, b)`` (a warm start; the objective is strictly convex for
    lambda > 0, so the optimum does not depend on it).  Stops when the largest gradient entry is
    below ``tol`` or after ``max_iter`` iterations.  ``num_threads``: see :func:`linear_probe`.
    """
    n, d = x.shape
    if num_threads is None and n * (d + 1) * num_classes < _SINGLE_THREAD_BELOW:
        num_threads = 1
    with _torch_threads(num_threads):
        return _fit(x, y, num_classes, l2_lambda, max_iter, tol, init)


def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2_lambda: float, max_iter: int, tol: float,
         init: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    n, d = x.shape
    # Centre the features: W x + b = W (x - mu) + (b + W mu) and b is not penalised, so the optimum
    # in W is unchanged while L-BFGS converges far faster on uncentred features (raw pixels).
    mu = x.mean(dim=0)
    xa = torch.cat([x - mu, torch.ones(n, 1, dtype=x.dtype)], dim=1)       # (n, D+1)
    xat = xa.T.contiguous()                                                # (D+1, n): logits as (C, n)
    w = torch.zeros(num_classes, d + 1, dtype=x.dtype)
    if init is not None:
        w[:, :d] = init[0]
        w[:, d] = init[1] + init[0] @ mu
    w.requires_grad_(True)
    lam = float(l2_lambda)
    cols = torch.arange(n)

    def objective(wt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (C, n) layout: the softmax over classes runs along contiguous memory, much faster
        # than along a short inner dimension of an (n, C) matrix.
        logp = torch.log_softmax(wt @ xat, dim=0)
        wd = wt[:, :d]
        loss = -logp[y, cols].mean() + 0.5 * lam * (wd * wd).sum()
        p = logp.exp_()
        p[y, cols] -= 1.0
        grad = (p @ xa).div_(n)
        grad[:, :d] += lam * wd
        return loss, grad

    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, max_eval=int(max_iter * 1.25),
                            tolerance_grad=tol, tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        with torch.no_grad():
            loss, grad = objective(w)
        w.grad = grad
        return loss

    opt.step(closure)
    state = opt.state[w]
    with torch.no_grad():
        loss, grad = objective(w)
    info = {"iterations": int(state.get("n_iter", 0)), "evaluations": int(state.get("func_evals", 0)),
            "objective": float(loss), "max_grad": float(grad.abs().max())}
    w = w.detach()
    weight = w[:, :d].clone()
    return weight, w[:, d] - weight @ mu, info


def _stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yn = y.numpy()
    train, val = [], []
    for c in np.unique(yn):
        idx = np.flatnonzero(yn == c)
        idx = idx[rng.permutation(len(idx))]
        k = min(len(idx) - 1, int(round(fraction * len(idx))))
        val.append(idx[:k])
        train.append(idx[k:])
    train_idx, val_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    if len(val_idx) == 0:
        raise ValueError("too few training examples to carve a validation split; pass val_features/val_labels "
                         "or a fixed l2_lambda")
    return train_idx, val_idx


def linear_probe(train_features: Any, train_labels: Any, test_features: Any, test_labels: Any,
                 val_features: Any = None, val_labels: Any = None, *, l2_lambda: float | None = None,
                 val_fraction: float = 0.2, seed: int = 0, normalize: bool = True,
                 num_classes: int | None = None, class_names: Sequence[str] | None = None,
                 max_iter: int = 1000, num_threads: int | None = None, return_probe: bool = False
                 ) -> dict[str, Any] | tuple[dict[str, Any], LogisticProbe]:
    """Fit a linear probe with lambda chosen on validation data; report test metrics.

    Parameters
    ----------
    train_features, train_labels : (n, D) features and (n,) integer labels.
    test_features, test_labels : the held-out evaluation set.
    val_features, val_labels : optional validation set; without it a stratified ``val_fraction``
        of train is carved off with ``seed`` (the final fit still uses all of train).
    l2_lambda : skip the sweep and use this lambda (the fit then uses train + validation if given).
    normalize : L2-normalise every feature row first (CLIP_benchmark's default for probes).
    num_classes : defaults to 1 + the largest label seen; ``class_names`` fixes it too.
    max_iter : L-BFGS iterations per fit.
    num_threads : torch CPU threads during the fits (restored afterwards).  None: one thread for
        problems below ``2**26`` multiply-adds per product (n * (D + 1) * C; e.g. 10k x 512 features
        with 10 classes), torch's current setting above.  Small fits are thousands of small matrix
        products; several threads gain little there and, on a machine whose cores are busy with
        other work, spend most of their time waiting for each other (10x slower measured).

    Returns
    -------
    dict with ``lp_acc1``, ``lp_acc5`` (None and ``lp_acc5_note`` under 5 classes),
    ``lp_mean_per_class_recall``, ``l2_lambda`` (chosen), ``sklearn_C`` (the same penalty as
    scikit-learn's C for the final fit), ``sweep`` (one row per lambda tried: ``l2_lambda``,
    ``val_acc1``, ``val_loss``, ``iterations``, sorted by lambda), the split sizes, ``seed``,
    ``normalized``, and the per-class accuracy / confusion matrix of
    :func:`~tether.metrics.zeroshot.classification_metrics`.  With ``return_probe`` also the
    fitted :class:`LogisticProbe`.
    """
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                    or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    d = _probe_data(train_features, train_labels, test_features, test_labels, val_features, val_labels,
                    normalize, num_classes, class_names)
    sweep: dict[int, dict[str, Any]] = {}
    init = None
    if l2_lambda is None:
        chosen, init, val_source, n_val, n_fit = _choose_lambda(d, sweep, val_fraction, seed, max_iter, num_threads)
    else:
        chosen = float(l2_lambda)
        if not (np.isfinite(chosen) and chosen >= 0):
            raise ValueError(f"l2_lambda must be a non-negative number, got {l2_lambda!r}")
        val_source = "given" if d.have_val else "none (fixed l2_lambda)"
        n_val = int(d.x_va.shape[0]) if d.have_val else 0
        n_fit = int(d.x_tr.shape[0])

    # Final fit on train + validation (the carved validation rows are part of train already).
    if d.have_val:
        fx, fy = torch.cat([d.x_tr, d.x_va]), torch.cat([d.y_tr, d.y_va])
    else:
        fx, fy = d.x_tr, d.y_tr
    w, b, info = fit_logistic_regression(fx, fy, d.num_classes, chosen, max_iter=max_iter, init=init,
                                         num_threads=num_threads)
    probe = LogisticProbe(w, b, chosen, normalize, info)
    logits = d.x_te @ w.T + b
    metrics = classification_metrics(logits, d.y_te, class_names=class_names, prefix="lp_")
    n_final = int(fx.shape[0])
    result: dict[str, Any] = {k: metrics.pop(k) for k in list(metrics) if k.startswith("lp_")}
    result.update({
        "l2_lambda": chosen,
        "sklearn_C": (1.0 / (chosen * n_final)) if chosen > 0 else None,
        "seed": seed,
        "normalized": bool(normalize),
        "val_source": val_source,
        "n_train": int(d.x_tr.shape[0]),
        "n_sweep_fit": n_fit,
        "n_val": n_val,
        "n_final_fit": n_final,
        "n_test": int(d.x_te.shape[0]),
        "final_fit_iterations": info["iterations"],
        "sweep": [sweep[i] for i in sorted(sweep)],
    })
    result.update(metrics)
    return (result, probe) if return_probe else result


@dataclass
class _ProbeData:
    """Checked features (float64, normalised if asked) and labels of a probe; no validation set: None."""
    x_tr: torch.Tensor
    y_tr: torch.Tensor
    x_te: torch.Tensor
    y_te: torch.Tensor
    x_va: torch.Tensor | None
    y_va: torch.Tensor | None
    num_classes: int

    @property
    def have_val(self) -> bool:
        return self.x_va is not None


def _probe_data(train_features: Any, train_labels: Any, test_features: Any, test_labels: Any,
                val_features: Any, val_labels: Any, normalize: bool, num_classes: int | None,
                class_names: Sequence[str] | None) -> _ProbeData:
    x_tr = _features(train_features, "train_features", normalize)
    x_te = _features(test_features, "test_features", normalize)
    have_val = val_features is not None or val_labels is not None
    if have_val and (val_features is None or val_labels is None):
        raise ValueError("give both val_features and val_labels, or neither")
    x_va = _features(val_features, "val_features", normalize) if have_val else None
    dims = {x.shape[1] for x in (x_tr, x_te, x_va) if x is not None}
    if len(dims) != 1:
        raise ValueError(f"train/val/test features have different dimensions: {sorted(dims)}")

    def raw_max(labels: Any) -> int:
        arr = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
        return int(np.max(arr)) if arr.size and np.issubdtype(arr.dtype, np.number) else 0

    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else \
            1 + max(raw_max(train_labels), raw_max(test_labels), raw_max(val_labels) if have_val else 0)
    elif class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for num_classes={num_classes}")
    if num_classes < 2:
        raise ValueError(f"a probe needs at least 2 classes, got {num_classes}")
    y_tr = as_labels(train_labels, x_tr.shape[0], num_classes, "train_labels")
    y_te = as_labels(test_labels, x_te.shape[0], num_classes, "test_labels")
    y_va = as_labels(val_labels, x_va.shape[0], num_classes, "val_labels") if have_val else None
    return _ProbeData(x_tr, y_tr, x_te, y_te, x_va, y_va, num_classes)


def _choose_lambda(d: _ProbeData, sweep: dict[int, dict[str, Any]], val_fraction: float, seed: int,
                   max_iter: int, num_threads: int | None
                   ) -> tuple[float, tuple[torch.Tensor, torch.Tensor], str, int, int]:
    """The coarse-then-binary sweep over ``L2_GRID`` (rows added to ``sweep``); -> (chosen lambda,
    its fit as the final fit's warm start, validation source, validation rows, sweep-fit rows)."""
    if d.have_val:
        fx, fy, vx, vy, val_source = d.x_tr, d.y_tr, d.x_va, d.y_va, "given"
    else:
        tr_idx, va_idx = _stratified_split(d.y_tr, val_fraction, seed)
        fx, fy, vx, vy = d.x_tr[tr_idx], d.y_tr[tr_idx], d.x_tr[va_idx], d.y_tr[va_idx]
        val_source = f"carved {val_fraction:g} of train (stratified, seed {seed})"

    fits: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def evaluate(i: int) -> tuple[float, float]:
        if i not in sweep:
            lam = float(L2_GRID[i])
            # warm start from the nearest lambda fitted so far (ties: the larger one)
            near = min(fits, key=lambda j: (abs(j - i), -j)) if fits else None
            w, b, info = fit_logistic_regression(fx, fy, d.num_classes, lam, max_iter=max_iter,
                                                 init=fits.get(near), num_threads=num_threads)
            fits[i] = (w, b)
            logits = vx @ w.T + b
            acc = float((logits.argmax(dim=1) == vy).double().mean())
            loss = float(F.cross_entropy(logits, vy))
            sweep[i] = {"l2_lambda": lam, "val_acc1": acc, "val_loss": loss, "iterations": info["iterations"]}
        return sweep[i]["val_acc1"], -sweep[i]["val_loss"]

    coarse = list(range(0, len(L2_GRID), COARSE_STEP))
    for i in reversed(coarse):          # strong to weak penalty: each fit warm-starts the next
        evaluate(i)
    peak = max(coarse, key=lambda i: (evaluate(i), i))
    for step in REFINE_STEPS:
        candidates = sorted({max(peak - step, 0), peak, min(peak + step, len(L2_GRID) - 1)})
        peak = max(candidates, key=lambda i: (evaluate(i), i))
    return float(L2_GRID[peak]), fits.get(peak), val_source, int(vx.shape[0]), int(fx.shape[0])
