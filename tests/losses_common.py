"""Helpers shared by the tests/test_losses_*.py files: fp64 unit embeddings, fresh leaves,
loss + gradients of a loss function, and a relative comparison of those. (Their one-thread
fixture is ``one_thread`` in tests/conftest.py.)"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def unit(n, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).to(dtype)


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def loss_and_grads(fn, *inputs):
    """Loss value and the gradients of every input (fresh leaves each call)."""
    leaves = [leaf(t) for t in inputs]
    loss = fn(*leaves)
    loss.backward()
    return [loss.detach()] + [t.grad for t in leaves]


def assert_grads_close(got, want, tol, scalar_scale=None, names=("loss", "d_image", "d_text", "d_scale", "d_bias")):
    """Relative error per tensor (against its largest entry). Scalar gradients (the scale/bias
    derivatives) are sums with cancellation; ``scalar_scale`` gives the sum of their absolute
    terms, the natural yardstick of their rounding error. Quantities that are exactly 0 in
    exact arithmetic (N = 1) are compared absolutely (the loss against 1, gradients 1e-3)."""
    for k, (a, b) in enumerate(zip(got, want)):
        a, b = a.double(), b.double()
        ref = b.abs().max().item()
        if k >= 3 and scalar_scale is not None:
            ref = max(ref, scalar_scale[k - 3])
        err = (a - b).abs().max().item() / max(ref, 1.0 if k == 0 else 1e-3)
        assert err <= tol, f"{names[k]}: relative error {err:.2e} > {tol:.0e} (|ref| {ref:.3e})"
