"""tether's own API beside clip-retrieval's: /search (text, image upload, vector or an indexed row;
image or text results; metadata filters), /pair (an image and a caption: score and ranks),
/image/{name}/{id} (a row's image, from the collection only), /embed and /vectors (used by a shard
front), /health and /metrics. Pydantic models give the OpenAPI schema at /docs and /openapi.json.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import InputError
from .backend import NotFound
from .limits import run_query, with_timeout
from .query import as_modality, b64_image, check_filters, embed_query, result_rows, runs_inline, top_rows, vector_query

FilterValue = Union[str, int, float, bool, list[Union[str, int, float, bool]]]


class SearchRequest(BaseModel):
    """Exactly one of text, image (base64), vector or id; ``modality`` picks the results' kind."""

    model_config = ConfigDict(extra="forbid")
    text: Optional[str] = Field(None, description="a text query")
    image: Optional[str] = Field(None, description="an image query, base64 (or a data: URL)")
    vector: Optional[list[float]] = Field(None, description="a query embedding (normalised here)")
    id: Optional[int] = Field(None, description="search by an indexed row's stored vector")
    id_modality: Literal["image", "text"] = Field("image", description="which vector of row `id` to use")
    modality: Literal["image", "text"] = Field("image", description="image results or text (caption) results")
    k: int = Field(20, ge=1, le=1000)
    filters: Optional[dict[str, FilterValue]] = Field(None, description='metadata filters, e.g. {"label": 3}')
    deduplicate: bool = Field(False, description="collapse results with inner product >= 0.94 (first kept)")


class PairRequest(BaseModel):
    """An image (base64 or an indexed row id) and a caption."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., min_length=1)
    image: Optional[str] = None
    image_id: Optional[int] = None


class IdsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modality: Literal["image", "text"] = "image"
    ids: list[int] = Field(..., max_length=10_000)


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modality: Literal["image", "text"] = "image"
    vector: list[float]
    score: float


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Optional[str] = None
    image: Optional[str] = None


def router(state: Any) -> APIRouter:
    api = APIRouter(tags=["tether"])
    timeout = state.config.timeout_s

    @api.get("/health", summary="liveness, rows and model")
    def health() -> dict:
        state.backend.refresh()
        d = state.backend.describe()
        state.metrics.rows.set(d["rows"])
        return {"status": "ok", **d}

    @api.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        body, kind = state.metrics.render()
        return Response(body, media_type=kind)

    @api.post("/search", summary="search by text, image, vector or row; image or text results")
    async def search(req: SearchRequest, request: Request) -> dict:
        state.backend.refresh()
        image = b64_image(req.image) if req.image is not None else None
        return await run_query(timeout, _inline(state, req), _search, state.backend, req, image,
                               _image_base(request, state))

    @api.post("/search/image", summary="search by an uploaded image file (multipart)")
    async def search_image(request: Request, file: UploadFile = File(...), modality: str = Form("image"),
                           k: int = Form(20)) -> dict:
        data = await file.read()
        req = SearchRequest(modality=as_modality(modality, state.backend), k=min(max(k, 1), 1000))
        return await with_timeout(timeout, _search, state.backend, req, data, _image_base(request, state))

    @api.post("/pair", summary="an image and a caption: their score and where each ranks for the other")
    async def pair(req: PairRequest) -> dict:
        image = b64_image(req.image) if req.image is not None else None
        return await with_timeout(timeout, _pair, state.backend, req, image)

    @api.post("/embed", summary="embed a text or a base64 image with the served model")
    async def embed(req: EmbedRequest) -> dict:
        image = b64_image(req.image) if req.image is not None else None
        vector = await with_timeout(timeout, embed_query, state.backend, text=req.text, image=image)
        return {"vector": vector[0].tolist()}

    @api.post("/vectors", summary="stored vectors of row ids")
    async def vectors(req: IdsRequest) -> dict:
        rows = await with_timeout(timeout, state.backend.vectors, req.modality, req.ids)
        return {"vectors": rows.tolist()}

    @api.post("/rank", summary="how many stored rows score above `score` for a vector (exact)")
    async def rank(req: RankRequest) -> dict:
        query = vector_query(req.vector, state.backend.describe()["dim"], "vector")
        modality = as_modality(req.modality, state.backend)
        return {"above": await with_timeout(timeout, state.backend.exact_rank, modality, query[0], req.score) - 1}

    @api.get("/image/{name}/{row}", summary="a row's image file, from the indexed collection only",
             response_class=Response)
    async def image(name: str, row: int) -> Response:
        if name != state.backend.name:
            raise NotFound(f"unknown index {name!r}")
        data, kind = await with_timeout(timeout, state.backend.image_bytes, row)
        return Response(data, media_type=kind, headers={"Cache-Control": "max-age=3600",
                                                        "X-Content-Type-Options": "nosniff"})
    return api


def _inline(state: Any, req: SearchRequest) -> bool:
    """A vector or row query small enough for the event loop (``query.runs_inline``)."""
    return runs_inline(state.backend, req.vector is not None or req.id is not None, req.k, req.filters,
                       req.deduplicate, state.config.timeout_s)


def _image_base(request: Request, state: Any) -> str:
    return f"{str(request.base_url).rstrip('/')}/image/{state.backend.name}"


def _search(backend: Any, req: SearchRequest, image: bytes | None, image_base: str) -> dict:
    modality = as_modality(req.modality, backend)
    query = embed_query(backend, text=req.text, image=image, vector=req.vector, row=req.id,
                        row_modality=as_modality(req.id_modality, backend, "id_modality") if req.id is not None
                        else "image")
    pairs = top_rows(backend, modality, query, req.k, filters=check_filters(req.filters),
                     deduplicate=req.deduplicate)
    return {"modality": modality, "results": result_rows(backend, pairs, image_base)}


def _pair(backend: Any, req: PairRequest, image: bytes | None) -> dict:
    if (image is None) == (req.image_id is None):
        raise InputError("give the image as base64 'image' or as an indexed row 'image_id' (one of them)")
    text_vec = embed_query(backend, text=req.text)
    image_vec = embed_query(backend, image=image) if image is not None else backend.vectors("image", [req.image_id])
    score = float(text_vec[0] @ image_vec[0])
    modalities = backend.describe()["modalities"]
    out = {"score": score, "image_rank": None, "text_rank": None, "rows": backend.describe()["rows"]}
    if "image" in modalities:   # where this image would rank among the collection's images for the caption
        out["image_rank"] = backend.exact_rank("image", text_vec[0], score)
    if "text" in modalities:    # where this caption would rank among the collection's captions for the image
        out["text_rank"] = backend.exact_rank("text", image_vec[0], score)
    return out


__all__ = ["SearchRequest", "router"]
