"""A front over shard servers: one API over an index too large for one machine.

Each shard is a ``tether serve`` process over part of the collection (``tether index --parts``);
the front asks every shard for its top k of the same query vector and merges them by score, so
with exact (or equally tuned) shard indexes the answer is the one index's. Row ids are global:
shard ``s``'s local id ``i`` is ``offset[s] + i``, the offsets being the shards' row counts in the
order given. Queries are embedded by the first shard (``/embed``), so the front needs no model.
"""
from __future__ import annotations

import base64
import time
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import httpx
import numpy as np

from ...errors import InputError
from ..index import Hits
from .backend import NotFound

REFRESH_S = 1.0


class ShardError(InputError):
    """A shard that did not answer as a tether server does."""


class ShardBackend:
    def __init__(self, urls: Sequence[str], name: str | None = None, timeout_s: float = 30.0) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.client = httpx.Client(timeout=timeout_s)
        self.pool = ThreadPoolExecutor(max(1, len(self.urls)))
        self._checked = 0.0
        self.shards = self._describe_shards()
        self.name = name or "shards"

    def _get(self, url: str, path: str) -> Any:
        return self._answer(self.client.get(url + path), url, path)

    def _post(self, url: str, path: str, body: dict) -> Any:
        return self._answer(self.client.post(url + path, json=body), url, path)

    @staticmethod
    def _answer(response: httpx.Response, url: str, path: str) -> Any:
        if response.status_code == 404:
            raise NotFound(response.json().get("error", f"{url}{path}: not found"))
        if response.status_code >= 400:
            raise ShardError(f"shard {url}{path}: {response.status_code} {response.text[:200]}")
        return response.json() if "json" in response.headers.get("content-type", "") else response.content

    def _describe_shards(self) -> list[dict[str, Any]]:
        shards = list(self.pool.map(lambda u: self._get(u, "/health"), self.urls))
        dims = {s["dim"] for s in shards}
        if len(dims) != 1:
            raise ShardError(f"shards hold vectors of different widths: {sorted(dims)}")
        self.offsets = np.concatenate([[0], np.cumsum([s["rows"] for s in shards])]).astype(np.int64)
        self._checked = time.monotonic()
        return shards

    def refresh(self) -> None:
        if time.monotonic() - self._checked > REFRESH_S:
            self.shards = self._describe_shards()

    def describe(self) -> dict[str, Any]:
        first = self.shards[0]
        return {"name": self.name, "rows": int(self.offsets[-1]), "dim": first["dim"],
                "modalities": first["modalities"], "columns": first["columns"], "model": first["model"],
                "shards": [{"url": u, "rows": s["rows"], "indexes": s["indexes"]}
                           for u, s in zip(self.urls, self.shards)]}

    def _locate(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        n = int(self.offsets[-1])
        out = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
                raise NotFound(f"row id {i!r} is not in the index (ids 0..{n - 1})")
            s = bisect_right(self.offsets, int(i)) - 1
            out.append((s, int(i) - int(self.offsets[s])))
        return out

    def _by_shard(self, ids: Sequence[int], ask) -> list[Any]:
        located = self._locate(ids)
        groups: dict[int, list[int]] = {}
        for s, local in located:
            groups.setdefault(s, []).append(local)
        answers = dict(zip(groups, self.pool.map(lambda s: ask(s, groups[s]), groups)))
        cursor = {s: 0 for s in groups}
        out = []
        for s, _ in located:
            out.append(answers[s][cursor[s]])
            cursor[s] += 1
        return out

    def search(self, modality: str, queries: np.ndarray, k: int) -> list[Hits]:
        result = []
        for q in np.atleast_2d(queries):
            body = {"vector": q.tolist(), "k": int(min(k, 1000)), "modality": modality}
            answers = list(self.pool.map(lambda u: self._post(u, "/search", body)["results"], self.urls))
            merged = [(r["similarity"], int(self.offsets[s]) + r["id"]) for s, rows in enumerate(answers) for r in rows]
            merged.sort(key=lambda p: (-p[0], p[1]))
            result.append(Hits([i for _, i in merged[:k]], [sc for sc, _ in merged[:k]]))
        return result

    def vectors(self, modality: str, ids: Sequence[int]) -> np.ndarray:
        rows = self._by_shard(ids, lambda s, local: self._post(self.urls[s], "/vectors",
                                                               {"modality": modality, "ids": local})["vectors"])
        return np.asarray(rows, np.float32).reshape(len(ids), -1)

    def metadata(self, ids: Sequence[int], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        rows = self._by_shard(ids, lambda s, local: [r["metadata"] for r in self._post(
            self.urls[s], "/metadata", {"ids": local, "indice_name": self.shards[s]["name"]})])
        return [{k: v for k, v in r.items() if columns is None or k in columns} for r in rows]

    def embed(self, modality: str, inputs: Sequence[Any]) -> np.ndarray:
        out = []
        for item in inputs:
            if modality == "text":
                body = {"text": item}
            else:
                body = {"image": base64.b64encode(item).decode()}
            out.append(self._post(self.urls[0], "/embed", body)["vector"])
        return np.asarray(out, np.float32)

    def exact_rank(self, modality: str, query: np.ndarray, score: float) -> int:
        body = {"modality": modality, "vector": np.asarray(query).ravel().tolist(), "score": score}
        return 1 + sum(self.pool.map(lambda u: self._post(u, "/rank", body)["above"], self.urls))

    def image_bytes(self, row: int) -> tuple[bytes, str]:
        (s, local), = self._locate([row])
        response = self.client.get(f"{self.urls[s]}/image/{self.shards[s]['name']}/{local}")
        if response.status_code != 200:
            raise NotFound(f"row {row}: its image is not available")
        return response.content, response.headers.get("content-type", "application/octet-stream")


__all__ = ["ShardBackend", "ShardError"]
