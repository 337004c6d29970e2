"""clip-retrieval's back-end API (clip_back.py 2.45), so its ClipClient and front end work unchanged.

POST /knn-service, POST /metadata, GET /indices-list, GET /config.json. Flags tether has no model
for (``use_safety_model``, ``use_violence_detector``, ``use_mclip``, ``aesthetic_score`` /
``aesthetic_weight``: they need LAION's extra models) are accepted and ignored, never an error;
``image_url`` is refused unless the server was started with --allow-image-url (no server-side
fetching by default).
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...errors import InputError
from .backend import NotFound
from .limits import read_json, run_query, with_timeout
from .query import as_k, as_modality, b64_image, embed_query, result_rows, runs_inline, top_rows, vector_query

#: Flags clip-retrieval's client always sends that need models tether does not have.
IGNORED_FLAGS = ("use_mclip", "use_safety_model", "use_violence_detector", "aesthetic_score", "aesthetic_weight",
                 "verbose")


def router(state: Any) -> APIRouter:
    api = APIRouter(tags=["clip-retrieval"])

    def check_name(name: Any) -> None:
        if name is not None and name != state.backend.name:
            raise NotFound(f"unknown indice_name {name!r} (this server has: {state.backend.name})")

    @api.get("/indices-list", summary="names of the served indexes")
    def indices_list() -> list[str]:
        return [state.backend.name]

    @api.get("/config.json", summary="clip-retrieval front end's configuration")
    def config(request: Request) -> dict:
        return {"defaultBackend": str(request.base_url).rstrip("/"), "defaultIndex": state.backend.name,
                "urlColumn": "url"}

    @api.post("/knn-service", summary="k nearest rows of a text, image, image URL or embedding (clip-retrieval)")
    async def knn_service(request: Request) -> list[dict]:
        body = await read_json(request)
        state.backend.refresh()
        check_name(body.get("indice_name"))
        if body.get("image_url") is not None and not state.config.allow_image_url:
            raise InputError("image_url is off on this server (no server-side fetching); send the image as base64 "
                             "in 'image', or start the server with --allow-image-url")
        image_url = f"{str(request.base_url).rstrip('/')}/image/{state.backend.name}"
        k = max(_int_or(body.get("num_images"), 40), _int_or(body.get("num_result_ids"), 0))
        inline = runs_inline(state.backend, body.get("embedding_input") is not None and body.get("image_url") is None,
                             k, None, bool(body.get("deduplicate", False)), state.config.timeout_s)
        return await run_query(state.config.timeout_s, inline, _knn, state.backend, body, image_url)

    @api.post("/metadata", summary="metadata of row ids (clip-retrieval)")
    async def metadata(request: Request) -> list[dict]:
        body = await read_json(request)
        check_name(body.get("indice_name"))
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InputError("ids must be a list of integer row ids")
        rows = await with_timeout(state.config.timeout_s, state.backend.metadata, ids)
        return [{"id": i, "metadata": {k: v for k, v in m.items() if not isinstance(v, bytes)}}
                for i, m in zip(ids, rows)]
    return api


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _knn(backend: Any, body: dict, image_url: str) -> list[dict]:
    modality = as_modality(body.get("modality", "image"), backend)
    num_images = as_k(body.get("num_images", 40), "num_images")
    num_result_ids = as_k(body.get("num_result_ids") or num_images, "num_result_ids")
    text, image, url, vector = (body.get(k) for k in ("text", "image", "image_url", "embedding_input"))
    if url is not None:
        image = _fetch(url)
    if vector is not None:
        query = vector_query(vector, backend.describe()["dim"])
    else:
        query = embed_query(backend, text=text, image=b64_image(image) if isinstance(image, str) else image)
    pairs = top_rows(backend, modality, query, max(num_images, num_result_ids),
                     deduplicate=bool(body.get("deduplicate", False)))
    return result_rows(backend, pairs[:num_images], image_url)


def _fetch(url: Any) -> bytes:
    """Download an image for image_url (only when the operator allowed it): http(s), 16 MB, 10 s."""
    import httpx

    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InputError("image_url must be an http(s) URL")
    try:
        with httpx.stream("GET", url, timeout=10, follow_redirects=True) as response:
            response.raise_for_status()
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > 16 * 2**20:
                    raise InputError("image_url: the image is over 16 MB")
            return data
    except httpx.HTTPError as err:
        raise InputError(f"image_url: could not download it ({type(err).__name__})") from None


__all__ = ["IGNORED_FLAGS", "router"]
