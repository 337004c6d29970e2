"""Which FAISS index fits the data: autofaiss's rule, with the memory each candidate needs.

The rule (autofaiss ``get_optimal_index_keys_v2``, adapted): few vectors are searched exactly
(``Flat``); then HNSW while its graph fits the budget; then an inverted file over exact vectors
(``IVF{c},Flat``) while it fits (autofaiss passes it over from 1M vectors; tether keeps it, since
on 1M x 512 clustered vectors HNSW32 saturated at recall@10 0.904 and OPQ+IVF+PQ at 0.76, see
BENCHMARKS.md); then OPQ-rotated product quantisation (``OPQ{m}_{d'},IVF{c},PQ{m}x8``) whose top
candidates are re-ranked by exact inner product from the memory-mapped vectors on disk. Every
estimate is the index's resident memory in bytes (FAISS's own layout: 4 bytes a float, 8 an id,
``2 M`` graph links of 4 bytes a vector for HNSW). A budget no candidate meets is an error that
says what the smallest candidate would need.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InputError

#: Below this many vectors exact search is both fast and free of recall loss.
FLAT_BELOW = 10_000
HNSW_MIN_M, HNSW_MAX_M = 8, 32
#: FAISS's and autofaiss's default. A larger one (80 was tried) builds a graph of closer neighbours
#: that serves queries from the rows' own distribution better but queries far from them (text
#: queries of an image index) much worse: Fashion-MNIST text-to-image recall@10 at efSearch 256 fell
#: from 0.994 to 0.949. Data where 40 falls short get IVF-Flat instead (build._build_one).
EF_CONSTRUCTION = 40
PQ_BYTES = (64, 48, 32, 24, 16, 12, 8, 4)
TYPES = ("flat", "hnsw", "ivf-flat", "ivf-pq")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class BudgetError(InputError):
    """No index type fits the memory budget; the message says what it would need (``need`` bytes)."""

    def __init__(self, message: str, need: int = 0, key: str = "") -> None:
        super().__init__(message)
        self.need, self.key = need, key


@dataclass(frozen=True)
class Choice:
    """One candidate index: its kind, FAISS factory key, parameters and resident memory in bytes."""

    kind: str
    key: str
    params: dict
    memory: int


def parse_size(text: str | int) -> int:
    """``4GB`` / ``512MiB`` / ``1e9`` -> bytes (decimal units for KB/MB/GB, binary for KiB/MiB/GiB)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise InputError(f"memory budget {text!r}: expected a size like 4GB, 512MB or 2GiB")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def ivf_lists(n: int) -> int:
    """Inverted lists: the power of two nearest 4 sqrt(n) (autofaiss), at most n / 39 so each has
    FAISS's minimum of 39 training points."""
    c = 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))
    while c > 1 and c * 39 > n:
        c //= 2
    return max(1, c)


def memory_of(kind: str, params: dict, n: int, d: int) -> int:
    """Resident bytes of a ``kind`` index with ``params`` holding ``n`` vectors of width ``d``."""
    if kind == "flat":
        return 4 * n * d
    if kind == "hnsw":
        return n * (4 * d + 8 * params["M"])
    if kind == "ivf-flat":
        return n * (4 * d + 8) + 4 * params["nlist"] * d
    if kind == "ivf-pq":
        m, bits, d_out = params["pq_bytes"], params["pq_bits"], params["opq_dim"]
        return n * (math.ceil(m * bits / 8) + 8) + 4 * (params["nlist"] * d_out + d * d_out + 2 ** bits * d_out)
    raise InputError(f"unknown index type {kind!r}: expected one of {', '.join(TYPES)}")


def _choice(kind: str, key: str, params: dict, n: int, d: int) -> Choice:
    return Choice(kind, key, params, memory_of(kind, params, n, d))


def flat(n: int, d: int) -> Choice:
    return _choice("flat", "Flat", {}, n, d)


def hnsw(n: int, d: int, m: int = HNSW_MAX_M) -> Choice:
    return _choice("hnsw", f"HNSW{m}", {"M": m, "efConstruction": EF_CONSTRUCTION}, n, d)


def ivf_flat(n: int, d: int) -> Choice:
    c = ivf_lists(n)
    return _choice("ivf-flat", f"IVF{c},Flat", {"nlist": c}, n, d)


def ivf_pq(n: int, d: int, m: int) -> Choice:
    """OPQ rotation to ``d'`` (a multiple of m, at most d), IVF, ``m`` codes of ``bits`` a vector
    (8 bits; fewer for tiny collections, which cannot train 256 centroids)."""
    c = ivf_lists(n)
    d_out = m * max(1, d // m)
    bits = min(8, max(1, int(math.log2(max(n, 2) / 39)))) if n < 39 * 256 else 8
    params = {"nlist": c, "pq_bytes": m, "pq_bits": bits, "opq_dim": d_out}
    return _choice("ivf-pq", f"OPQ{m}_{d_out},IVF{c},PQ{m}x{bits}", params, n, d)


def pq_sizes(d: int) -> list[int]:
    """Code sizes (bytes a vector), largest first, each sub-quantiser at least 4 dimensions wide."""
    return [m for m in PQ_BYTES if 4 * m <= d] or [1]


def candidates(n: int, d: int, kind: str) -> list[Choice]:
    """Every parameterisation of ``kind``, largest (most accurate) first."""
    if kind == "flat":
        return [flat(n, d)]
    if kind == "hnsw":
        return [hnsw(n, d, m) for m in (32, 24, 16, 12, 8)]
    if kind == "ivf-flat":
        return [ivf_flat(n, d)]
    if kind == "ivf-pq":
        return [ivf_pq(n, d, m) for m in pq_sizes(d)]
    raise InputError(f"--index-type {kind!r}: expected one of {', '.join(TYPES)}")


def fitting(n: int, d: int, budget: int, kind: str | None = None) -> list[Choice]:
    """The types to try, in order, each with its largest parameterisation under ``budget``.

    Order: Flat below :data:`FLAT_BELOW`; HNSW with the largest M (8..32) that fits; IVF-Flat;
    OPQ+IVF+PQ with the largest code that fits; then Flat, if it fits, as
    the last resort of a choice whose validation misses the target recall (HNSW on many repeated
    rows, say). ``kind`` forces one type. Nothing fitting raises :class:`BudgetError` with the
    smallest need."""
    if n < 1 or d < 1:
        raise InputError(f"cannot index {n} vectors of width {d}")
    if kind is not None:
        options = candidates(n, d, kind)
    elif n < FLAT_BELOW:
        options = [flat(n, d)] + candidates(n, d, "hnsw")
    else:
        options = candidates(n, d, "hnsw") + candidates(n, d, "ivf-flat") + candidates(n, d, "ivf-pq") + [flat(n, d)]
    chosen: dict[str, Choice] = {}
    for option in options:
        if option.memory <= budget and option.kind not in chosen:
            chosen[option.kind] = option
    if chosen:
        return list(chosen.values())
    smallest = min(options, key=lambda o: o.memory)
    what = f"a {kind} index" if kind else "any index type"
    raise BudgetError(f"memory budget {format_size(budget)} is too small for {what} of {n} x {d} vectors: "
                      f"the smallest ({smallest.key}) needs {format_size(smallest.memory)}; "
                      f"raise --memory-budget to at least {format_size(smallest.memory)}",
                      smallest.memory, smallest.key)


def choose(n: int, d: int, budget: int, kind: str | None = None) -> Choice:
    """The first type :func:`fitting` would try: autofaiss's choice for ``n`` x ``d`` under ``budget``."""
    return fitting(n, d, budget, kind)[0]


__all__ = ["BudgetError", "Choice", "FLAT_BELOW", "TYPES", "candidates", "choose", "fitting", "format_size",
           "ivf_lists",
           "memory_of", "parse_size"]
