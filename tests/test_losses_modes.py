"""tether.losses modes: no_grad, partial requires_grad, Python-number scales and auto chunk,
half-precision inputs, and the tiled paths never allocating an N x N tensor."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tether.losses import DEFAULT_CHUNK_SIZE, clip_loss, infonce_rows, siglip_loss
from losses_common import leaf, unit

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


def test_no_grad_and_partial_requires_grad():
    x, y = unit(20, 8, seed=51), unit(20, 8, seed=52)
    t, b = torch.tensor(5.0, dtype=torch.float64), torch.tensor(-3.0, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(siglip_loss(x, y, t, b, chunk_size=6), siglip_loss(x, y, t, b))
        torch.testing.assert_close(clip_loss(x, y, t, chunk_size=6), clip_loss(x, y, t))
    pairs = ((lambda a, c, s, k=None: siglip_loss(a, c, s, b, chunk_size=k)),
             (lambda a, c, s, k=None: clip_loss(a, c, s, chunk_size=k)))
    for fn in pairs:
        xa, xr = leaf(x), leaf(x)                        # only the image side is trained
        fn(xa, y, t, 6).backward()
        fn(xr, y, t).backward()
        torch.testing.assert_close(xa.grad, xr.grad, rtol=1e-11, atol=1e-14)
    for fn in pairs:                                     # only the text side (locked image tower)
        ya, yr = leaf(y), leaf(y)
        fn(x, ya, t, 6).backward()
        fn(x, yr, t).backward()
        torch.testing.assert_close(ya.grad, yr.grad, rtol=1e-11, atol=1e-14)
    for fn in pairs:                                     # only the scale (both towers frozen)
        ta, tr = leaf(t), leaf(t)
        fn(x, y, ta, 7).backward()
        fn(x, y, tr).backward()
        torch.testing.assert_close(ta.grad, tr.grad, rtol=1e-11, atol=0)
    for k_side in (True, False):                         # infonce_rows with one side trained
        q, k = (leaf(x), y) if k_side else (x, leaf(y))
        q2, k2 = (leaf(x), y) if k_side else (x, leaf(y))
        infonce_rows(q, k, t, 0, chunk_size=6).sum().backward()
        infonce_rows(q2, k2, t, 0).sum().backward()
        got, want = (q.grad, q2.grad) if k_side else (k.grad, k2.grad)
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-14)


def test_python_number_scale_and_auto_chunk():
    x, y = unit(30, 8, seed=53), unit(30, 8, seed=54)
    torch.testing.assert_close(clip_loss(x, y, 10.0, chunk_size="auto"), clip_loss(x, y, 10.0))
    torch.testing.assert_close(siglip_loss(x, y, 10.0, -10, chunk_size="auto"), siglip_loss(x, y, 10.0, -10.0))
    from tether.losses._checks import resolve_chunk
    assert resolve_chunk("auto") == DEFAULT_CHUNK_SIZE and resolve_chunk("auto", auto=123) == 123
    assert DEFAULT_CHUNK_SIZE >= 256


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_are_computed_in_float32(dtype):
    x, y = unit(24, 16, dtype, seed=55), unit(24, 16, dtype, seed=56)
    t = torch.tensor(14.3, dtype=dtype)
    xa, ya = leaf(x), leaf(y)
    loss = clip_loss(xa, ya, t, chunk_size=5)
    loss.backward()
    assert loss.dtype == dtype and xa.grad.dtype == dtype
    ref = clip_loss(x.float(), y.float(), t.float())
    torch.testing.assert_close(loss.float(), ref, rtol=1e-2, atol=0)
    loss = siglip_loss(xa, ya, t, torch.tensor(-10.0, dtype=dtype), chunk_size=5)
    assert loss.dtype == dtype and torch.isfinite(loss)


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("which", ["clip", "siglip", "rows"])
def test_chunked_never_creates_an_n_by_n_tensor(which):
    n, d, chunk = 512, 16, 64
    x, y = leaf(unit(n, d, torch.float32, seed=57)), leaf(unit(n, d, torch.float32, seed=58))
    t, b = leaf(torch.tensor(10.0)), leaf(torch.tensor(-5.0))
    with _LargestTensor() as probe:
        if which == "clip":
            loss = clip_loss(x, y, t, chunk_size=chunk)
        elif which == "siglip":
            loss = siglip_loss(x, y, t, b, chunk_size=chunk)
        else:
            loss = infonce_rows(x, y, t, 0, chunk_size=chunk).mean()
        loss.backward()
    assert probe.largest <= max(chunk * chunk, n * d), probe.largest
    with _LargestTensor() as probe:
        clip_loss(x, y, t).backward()
    assert probe.largest >= n * n                      # the probe does see the plain path's matrix
