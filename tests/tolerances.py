"""How far apart two float32 results of the same computation may be when summed in another order.

Exact equality only holds by construction for the same inputs, the same shapes and the same
machine: BLAS picks its blocking (and so the order of every sum) by CPU and by matrix shape, so a
tower run on 8 rows and on 12 rows, or a gradient accumulated over 3 micro-batches and over one
batch, round differently. The bound used here:

* float32 keeps 24 significant bits; one rounding changes a value by at most u = eps/2 of it,
  with eps = 2**-23 (``torch.finfo(torch.float32).eps``).
* A sum of n terms whose partial sums stay within the result tensor's scale S = max|x| picks up
  one rounding per addition, at most u*S each. Independent roundings partly cancel, so the
  error grows like sqrt(n)*u*S (the worst case, n*u*S, is never approached by BLAS's blocked
  sums); two different orders differ by at most twice that, sqrt(n)*eps*S.
* A network chains a few such sums (layers forward, then backward), each passing the error on
  with gain about 1 (normalised activations); ``k`` covers that depth and leaves a margin.

So ``atol = k * eps * max|reference| * sqrt(n)``, with n the longest reduction in the
computation. Measured on an AMD EPYC (AVX2, no AMX): tower features differ by up to 2 eps*S, the
gradient cache's gradients by up to 25 eps*S, against a bound of k*sqrt(384) = 157 eps*S for
k = 8. A wrong result (another row's features, a wrong gradient) is off by O(S), far above it.
Entries much smaller than S (gradients of padded or barely used positions) carry errors on the
scale of S, not of themselves, which is why a relative tolerance per element is meaningless.
"""
from __future__ import annotations

import math

import torch

EPS32 = torch.finfo(torch.float32).eps


def rounding_atol(reference: torch.Tensor, terms: int, k: float = 8.0) -> float:
    """Largest difference float32 rounding explains for sums of ``terms`` terms at ``reference``'s scale."""
    return k * EPS32 * reference.detach().abs().max().item() * math.sqrt(terms)


def assert_within_rounding(actual: torch.Tensor, expected: torch.Tensor, terms: int, what: str = "",
                           k: float = 8.0) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    atol = rounding_atol(expected, terms, k)
    diff = (actual.detach() - expected.detach()).abs().max().item()
    assert diff <= atol, f"{what}: max |difference| {diff:.3g} exceeds the float32 rounding bound {atol:.3g}"
