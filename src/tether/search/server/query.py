"""One search, whichever API asked: the query vector, top-k with filters and de-duplication, rows.

De-duplication is clip-retrieval's: among the results, rows whose vectors have inner product
>= 0.94 are linked, and of each connected group the first (best-scoring) row is kept. Metadata
filters (column == value, or value in a list) are applied after the index search, asking the
index for more candidates until k rows pass or the whole collection has been ranked.
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import InputError
from .backend import decode_image

DEDUP_THRESHOLD = 0.94
MAX_K = 1000
#: A query runs on the event loop, without a thread hop, only if it is a vector (or row) query with no
#: filters or de-duplication (which may rank the whole collection), k <= INLINE_MAX_K, on an index
#: whose measured single-query time is at most INLINE_MAX_MS: bounded work, far below any timeout.
INLINE_MAX_K = 100
INLINE_MAX_MS = 2.0


def as_modality(value: Any, backend: Any, what: str = "modality") -> str:
    modalities = backend.describe()["modalities"]
    if value not in modalities:
        raise InputError(f"{what} must be one of {', '.join(modalities)}, got {value!r}")
    return value


def as_k(value: Any, what: str = "k") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
        raise InputError(f"{what} must be an integer from 1 to {MAX_K}, got {value!r}")
    return value


def b64_image(text: Any, what: str = "image") -> bytes:
    if not isinstance(text, str):
        raise InputError(f"{what} must be a base64 string, got {type(text).__name__}")
    if "," in text[:100] and text.startswith("data:"):
        text = text.split(",", 1)[1]          # a data: URL from a browser
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not valid base64") from None


def runs_inline(backend: Any, by_vector: bool, k: int, filters: Any, deduplicate: bool, timeout_s: float) -> bool:
    """Whether a query is cheap and bounded enough to answer on the event loop (see INLINE_MAX_K)."""
    ms = getattr(backend, "query_ms", None)     # the index's measured time of one query; None for shards
    return (by_vector and not filters and not deduplicate and k <= INLINE_MAX_K and ms is not None
            and ms <= INLINE_MAX_MS and timeout_s * 1000 >= 100 * INLINE_MAX_MS)


def vector_query(value: Any, dim: int, what: str = "embedding_input") -> np.ndarray:
    """A list of ``dim`` finite numbers -> a unit (1, dim) float32 row."""
    if not isinstance(value, list) or len(value) != dim or not set(map(type, value)) <= {int, float}:
        raise InputError(f"{what} must be a list of {dim} numbers")
    q = np.asarray(value, np.float32)[None]
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or norm == 0:
        raise InputError(f"{what} must be finite and not all zero")
    return q / norm


def embed_query(backend: Any, *, text: Any = None, image: bytes | None = None, vector: Any = None,
                row: Any = None, row_modality: str = "image") -> np.ndarray:
    """The (1, D) query from exactly one of: text, image bytes, a vector, an indexed row."""
    given = [name for name, v in (("text", text), ("image", image), ("vector", vector), ("id", row)) if v is not None]
    if len(given) != 1:
        raise InputError(f"give exactly one query (text, image, vector or id), got {', '.join(given) or 'none'}")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise InputError("text must be a non-empty string")
        return backend.embed("text", [text])
    if image is not None:
        decode_image(image)                       # a one-line 400 for data that is not an image
        return backend.embed("image", [image])    # the engine decodes bytes as it decoded the collection
    if vector is not None:
        return vector_query(vector, backend.describe()["dim"], "vector")
    if isinstance(row, bool) or not isinstance(row, int):
        raise InputError(f"id must be an integer row id, got {row!r}")
    return backend.vectors(row_modality, [row])


def _passes(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, list) else value == wanted


def check_filters(filters: Any) -> dict[str, Any]:
    if filters is None:
        return {}
    if not isinstance(filters, dict) or not all(isinstance(v, (str, int, float, bool, list)) for v in filters.values()):
        raise InputError('filters must map column names to a value or a list of values, e.g. {"label": 3}')
    return filters


def top_rows(backend: Any, modality: str, query: np.ndarray, k: int, *, filters: Mapping[str, Any] | None = None,
             deduplicate: bool = False, candidates: int | None = None) -> list[tuple[int, float]]:
    """(row id, score) of the best ``k`` rows of ``modality`` passing ``filters``, de-duplicated if asked."""
    facts = backend.describe()
    n = facts["rows"]
    unknown = sorted(set(filters or ()) - set(facts["columns"]))
    if unknown:
        raise InputError(f"filter on unknown metadata column {unknown[0]!r} (columns: {', '.join(facts['columns'])})")
    want = max(k, candidates or k)
    fetch = min(n, want * (4 if filters or deduplicate else 1))
    while True:
        hits = backend.search(modality, query, fetch)[0]
        pairs = list(zip(hits.ids, hits.scores))
        if filters:
            meta = backend.metadata([i for i, _ in pairs], list(filters))
            pairs = [p for p, m in zip(pairs, meta) if all(_passes(m.get(c), w) for c, w in filters.items())]
        if deduplicate:
            pairs = deduplicated(backend, modality, pairs)
        if len(pairs) >= k or fetch >= n:
            return pairs[:k]
        fetch = min(n, fetch * 4)


def deduplicated(backend: Any, modality: str, pairs: Sequence[tuple[int, float]],
                 threshold: float = DEDUP_THRESHOLD) -> list[tuple[int, float]]:
    """Keep the first row of each group linked by inner product >= ``threshold`` (clip-retrieval's rule)."""
    if len(pairs) < 2:
        return list(pairs)
    vectors = backend.vectors(modality, [i for i, _ in pairs])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    linked = vectors @ vectors.T >= threshold
    group = list(range(len(pairs)))                     # union-find over the linked pairs

    def root(a: int) -> int:
        while group[a] != a:
            group[a] = group[group[a]]
            a = group[a]
        return a
    for a, b in zip(*np.nonzero(np.triu(linked, 1))):
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            group[max(ra, rb)] = min(ra, rb)
    return [p for j, p in enumerate(pairs) if root(j) == j]


def result_rows(backend: Any, pairs: Sequence[tuple[int, float]], image_url: str | None,
                columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One dict a result: the row's metadata, ``id``, ``similarity``, and ``url`` to its image here
    when the row has no URL of its own (so clip-retrieval's front end can show it)."""
    ids = [i for i, _ in pairs]
    meta = backend.metadata(ids, columns) if ids else []
    rows = []
    for (i, score), m in zip(pairs, meta):
        row = {k: v for k, v in m.items() if not isinstance(v, (bytes, bytearray))}
        if image_url and m.get("image_path") and not m.get("url"):
            row["url"] = f"{image_url}/{i}"
        row.update(id=int(i), similarity=float(score))
        rows.append(row)
    return rows


__all__ = ["DEDUP_THRESHOLD", "as_k", "as_modality", "b64_image", "check_filters", "deduplicated", "embed_query",
           "result_rows", "runs_inline", "top_rows", "vector_query"]
