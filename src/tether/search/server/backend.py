"""What the HTTP routes ask of an index: search, metadata, vectors, query embedding, images.

:class:`LocalBackend` answers from an index folder on this machine; ``shards.ShardBackend`` (a
front over several ``tether serve`` processes) answers the same calls over HTTP, so every route
works on either. Row ids are the index's (positions in part order); image bytes are read only
from the ``image_path`` a row's metadata names, so a request can never name a file.
"""
from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import InputError
from ..index import Hits, SearchIndex, open_index

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MAX_IMAGE_FILE = 32 * 2**20


class NotFound(InputError):
    """A row, image or index name that does not exist (HTTP 404)."""


class QueryEmbedder:
    """Embeds text and image queries with one model, loaded on first use (a lock keeps one load)."""

    def __init__(self, model_id: Any) -> None:
        self.model_id = model_id
        self._model = None
        self._lock = threading.Lock()

    def model(self):
        if self.model_id is None:
            raise InputError("this index records no model (its embedding folder has no summary.json): "
                             "start the server with --model to search by text or image, or search by vector")
        with self._lock:
            if self._model is None:
                from ...checkpoints import resolve_model
                self._model = resolve_model(str(self.model_id)).eval()
        return self._model

    def embed(self, modality: str, inputs: Sequence[Any]) -> np.ndarray:
        from ...embedding import embed

        model = self.model()
        if modality not in model.processors:
            raise InputError(f"the model cannot embed {modality} queries (it has processors for "
                             f"{', '.join(model.processors)})")
        return embed(model, modality, list(inputs), strict=True).vectors.numpy().astype(np.float32)


def decode_image(data: bytes, max_pixels: int = 40_000_000):
    """Bytes -> RGB PIL image, or a 400 naming what was wrong (not an image, too many pixels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise InputError(f"image of {image.width} x {image.height} pixels is over the limit of {max_pixels}")
        image.load()
        return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"the uploaded data is not an image PIL can decode ({type(err).__name__})") from None


class LocalBackend:
    """An index folder opened on this machine."""

    def __init__(self, index_dir: str | Path, model: Any = None, name: str | None = None) -> None:
        self.index: SearchIndex = open_index(index_dir)
        self.name = name or Path(index_dir).resolve().name
        self.embedder = QueryEmbedder(model if model is not None else self.index.info.get("model"))
        self._facts: tuple[int, dict[str, Any]] | None = None

    # -- facts ------------------------------------------------------------------
    def refresh(self) -> None:
        self.index.refresh()

    def describe(self) -> dict[str, Any]:
        """Name, rows, width, modalities, columns, model and indexes (kept until the index changes;
        callers copy before changing it)."""
        stamp = self.index.stamp
        if self._facts is None or self._facts[0] != stamp:
            info = self.index.info
            facts = {"name": self.name, "rows": len(self.index), "dim": self.index.dim,
                     "modalities": self.index.modalities, "columns": self.index.columns,
                     "model": str(self.embedder.model_id) if self.embedder.model_id else None,
                     "indexes": {m: {k: e[k] for k in ("type", "key", "search_params", "recall_at_10")}
                                 for m, e in info["indexes"].items()}}
            self._facts = (stamp, facts)
        return self._facts[1]

    @property
    def query_ms(self) -> float:
        """The slowest of the indexes' measured single-query times (index_info.json), in ms."""
        return max(float(e.get("query_time", {}).get("single_ms", float("inf")))
                   for e in self.index.info["indexes"].values())

    # -- search -----------------------------------------------------------------
    def search(self, modality: str, queries: np.ndarray, k: int) -> list[Hits]:
        return self.index.search(modality, queries, k)

    def vectors(self, modality: str, ids: Sequence[int]) -> np.ndarray:
        self._check_ids(ids)
        return self.index.vectors(modality, ids)

    def metadata(self, ids: Sequence[int], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        self._check_ids(ids)
        return self.index.metadata(ids, columns)

    def column(self, name: str) -> list[Any]:
        if name not in self.index.columns:
            raise InputError(f"filter on unknown metadata column {name!r} (columns: {', '.join(self.index.columns)})")
        return self.index.column(name)

    def embed(self, modality: str, inputs: Sequence[Any]) -> np.ndarray:
        return self.embedder.embed(modality, inputs)

    def exact_rank(self, modality: str, query: np.ndarray, score: float) -> int:
        """1 + the number of stored rows of ``modality`` scoring above ``score`` for ``query`` (exact)."""
        store = self.index._state.stores[modality]
        q = np.asarray(query, np.float32).ravel()
        return 1 + int(sum(int((block @ q > score).sum()) for _, block in store.chunks()))

    # -- images -----------------------------------------------------------------
    def image_file(self, row: int) -> Path:
        """The image file of row ``row``, as its metadata names it: a regular file with an image suffix."""
        self._check_ids([row])
        path = self.index.metadata([row], ["image_path"])[0].get("image_path")
        if not path:
            raise NotFound(f"row {row} has no image file in this collection")
        file = Path(path)
        if file.suffix.lower() not in IMAGE_SUFFIXES or not file.is_file() or file.stat().st_size > MAX_IMAGE_FILE:
            raise NotFound(f"row {row}: its image is not available")
        return file

    def image_bytes(self, row: int) -> tuple[bytes, str]:
        from PIL import Image

        data = self.image_file(row).read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as image:
                kind = (image.format or "png").lower()
        except Exception:
            raise NotFound(f"row {row}: its image is not available") from None
        return data, f"image/{'jpeg' if kind == 'jpg' else kind}"

    def has_images(self) -> bool:
        return "image_path" in self.index.columns

    def _check_ids(self, ids: Sequence[int]) -> None:
        n = len(self.index)
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
                raise NotFound(f"row id {i!r} is not in the index (ids 0..{n - 1})")


__all__ = ["LocalBackend", "NotFound", "QueryEmbedder", "decode_image"]
