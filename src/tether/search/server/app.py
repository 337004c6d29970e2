"""The FastAPI application of ``tether serve``: one backend (an index, or a front over shards),
clip-retrieval's routes, tether's routes, the web page, limits and metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ...errors import TetherError
from . import api, clip_api
from .limits import BodyLimit, error_response, tether_error
from .metrics import Metrics, MetricsMiddleware

WEB = Path(__file__).with_name("web")


@dataclass
class ServerConfig:
    index_dir: Optional[str] = None
    shards: list[str] = field(default_factory=list)
    model: Any = None
    name: Optional[str] = None
    allow_image_url: bool = False
    max_body_bytes: int = 16 * 2**20
    timeout_s: float = 30.0


@dataclass
class State:
    config: ServerConfig
    backend: Any
    metrics: Metrics


def make_backend(config: ServerConfig) -> Any:
    if config.shards:
        from .shards import ShardBackend
        return ShardBackend(config.shards, name=config.name, timeout_s=config.timeout_s)
    from .backend import LocalBackend
    return LocalBackend(config.index_dir, model=config.model, name=config.name)


async def _validation_error(_request: Any, err: RequestValidationError) -> Any:
    first = err.errors()[0] if err.errors() else {}
    if first.get("type") == "json_invalid":
        return error_response(400, f"the request body is not valid JSON ({first.get('msg', '')})")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return error_response(422, f"{where or 'request'}: {first.get('msg', 'invalid request')}")


def create_app(config: ServerConfig, backend: Any = None) -> FastAPI:
    """The application; ``backend`` defaults to the config's index folder or shards."""
    state = State(config, backend if backend is not None else make_backend(config), Metrics())
    app = FastAPI(title="tether search", version="1",
                  description="Cross-modal search over a tether index: clip-retrieval's back-end API and tether's own.")
    app.state.tether = state
    app.add_exception_handler(TetherError, tether_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    # clip-retrieval's front end is a page of its own origin that calls the back end (clip_back uses flask_cors)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"], allow_headers=["*"])
    app.include_router(clip_api.router(state))
    app.include_router(api.router(state))
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html")
    return BodyLimit(app, config.max_body_bytes)  # type: ignore[return-value]


def run_server(config: ServerConfig, host: str = "127.0.0.1", port: int = 1234) -> None:
    import faiss
    import torch
    import uvicorn

    # one query, one thread: requests run side by side in the thread pool, and intra-op threads
    # competing with them (and with other processes) cost more than they give a single query
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    app = create_app(config)
    print(f"tether serve: http://{host}:{port}/ (API docs at /docs)", flush=True)
    # uvicorn's "auto" picks httptools' C parser and uvloop when installed (the serve extra lists
    # them): half the server's CPU a request of h11 and asyncio's loop (BENCHMARKS.md)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5)


__all__ = ["ServerConfig", "create_app", "run_server"]
