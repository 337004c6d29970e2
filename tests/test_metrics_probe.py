"""Linear probe: accuracy on sklearn digits, the sweep, determinism, agreement with sklearn."""
import numpy as np
import pytest
import torch

from tether.metrics import linear_probe
from tether.metrics.linear_probe import COARSE_STEP, L2_GRID, fit_logistic_regression


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(return_X_y=True)                    # 1797 x 64 raw 8x8 pixels
    perm = np.random.default_rng(0).permutation(len(y))
    x, y = x[perm], y[perm]
    return x[:1200], y[:1200], x[1200:], y[1200:]


@pytest.fixture(scope="module")
def digits_result(digits):
    return linear_probe(*digits, seed=0, class_names=[str(i) for i in range(10)])


def test_digits_probe_is_accurate_and_picks_a_reasonable_lambda(digits_result):
    r = digits_result
    assert r["lp_acc1"] > 0.9
    assert r["lp_acc5"] > 0.99
    assert r["lp_mean_per_class_recall"] > 0.9
    # the sweep table: every coarse point plus refinements, sorted, the chosen one the best on validation
    lambdas = [row["l2_lambda"] for row in r["sweep"]]
    assert lambdas == sorted(lambdas)
    assert set(L2_GRID[::COARSE_STEP]).issubset(lambdas)
    best = max(row["val_acc1"] for row in r["sweep"])
    chosen = next(row for row in r["sweep"] if row["l2_lambda"] == r["l2_lambda"])
    assert chosen["val_acc1"] == best
    assert 1e-6 <= r["l2_lambda"] <= 1e-2                          # neither the weakest-fitting nor an extreme
    assert r["sklearn_C"] == pytest.approx(1 / (r["l2_lambda"] * 1200))
    assert r["n_train"] == 1200 and r["n_val"] == 240 and r["n_test"] == 597
    assert len(r["per_class_accuracy"]) == 10 and sum(map(sum, r["confusion_matrix"])) == 597


def test_probe_is_deterministic_given_the_seed(digits, digits_result):
    again = linear_probe(*digits, seed=0, class_names=[str(i) for i in range(10)])
    assert again == digits_result


def test_fixed_lambda_matches_sklearn_logistic_regression(digits):
    lm = pytest.importorskip("sklearn.linear_model")
    x, y = digits[0], digits[1]
    lam = 1e-3
    w, b, info = fit_logistic_regression(torch.tensor(x / 16.0), torch.tensor(y), 10, lam, tol=1e-9, max_iter=3000)
    sk = lm.LogisticRegression(C=1 / (lam * len(y)), tol=1e-10, max_iter=10000).fit(x / 16.0, y)
    assert np.abs(sk.coef_ - w.numpy()).max() < 1e-3 * np.abs(sk.coef_).max()
    # intercepts agree up to the softmax's common shift
    assert np.allclose(sk.intercept_ - sk.intercept_.mean(), b.numpy() - b.numpy().mean(), atol=1e-3)


def test_given_validation_split_and_fixed_lambda(digits):
    xtr, ytr, xte, yte = digits
    r = linear_probe(xtr[:900], ytr[:900], xte, yte, val_features=xtr[900:], val_labels=ytr[900:])
    assert r["val_source"] == "given" and r["n_val"] == 300 and r["n_final_fit"] == 1200
    assert r["lp_acc1"] > 0.9
    fixed = linear_probe(xtr, ytr, xte, yte, l2_lambda=1e-4, normalize=False, num_threads=1)
    assert fixed["sweep"] == [] and fixed["l2_lambda"] == 1e-4 and fixed["normalized"] is False
    assert fixed["lp_acc1"] > 0.9


def test_top5_not_applicable_with_few_classes():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 5, generator=g) * 3
    y = torch.arange(3).repeat(40)
    x = centers[y] + torch.randn(120, 5, generator=g)
    r = linear_probe(x[:90], y[:90], x[90:], y[90:])
    assert r["lp_acc5"] is None and "not applicable" in r["lp_acc5_note"]
    assert r["lp_acc1"] > 0.8


def test_bad_inputs():
    x, y = torch.randn(20, 4), torch.arange(20) % 2
    with pytest.raises(ValueError, match="train_labels has 19 entries but there are 20"):
        linear_probe(x, y[:19], x, y)
    bad = x.clone()
    bad[5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"test_features has NaN.*\[5\]"):
        linear_probe(x, y, bad, y)
    with pytest.raises(ValueError, match="different dimensions"):
        linear_probe(x, y, torch.randn(20, 3), y)
    with pytest.raises(ValueError, match="both val_features and val_labels"):
        linear_probe(x, y, x, y, val_features=x)
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe(x, torch.zeros(20, dtype=torch.long), x, torch.zeros(20, dtype=torch.long))
