"""Request limits and error answers: body size, query timeout, 4xx with a message for bad input.

A user's mistake (bad JSON, a wrong type, an unknown index, a non-image upload) is answered with a
4xx and ``{"error": "<one line>"}``; only a bug in tether gives a 500.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ...errors import InputError, TetherError
from .backend import NotFound


class TooLarge(InputError):
    """A request body over the server's limit (HTTP 413)."""


class QueryTimeout(TetherError):
    """A query that ran past the server's limit (HTTP 504)."""


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def status_of(err: Exception) -> int:
    if isinstance(err, TooLarge):
        return 413
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, QueryTimeout):
        return 504
    return 400


async def tether_error(_request: Request, err: Exception) -> JSONResponse:
    return error_response(status_of(err), str(err))


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` (declared or streamed) with 413."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise TooLarge(f"request body over the limit of {self.max_bytes} bytes")
            return message
        await self.app(scope, counted, send)

    async def _refuse(self, scope: dict, receive: Callable, send: Callable) -> None:
        response = error_response(413, f"request body over the limit of {self.max_bytes} bytes")
        await response(scope, receive, send)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object whatever the Content-Type (clip-retrieval's client sends none)."""
    body = await request.body()
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"the request body is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


async def run_query(seconds: float, inline: bool, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` on the event loop when ``inline`` (a query whose cost is small and bounded:
    ``query.runs_inline`` decides), else in the thread pool under the ``seconds`` limit. A thread hop
    costs two wake-ups, which on a busy machine is milliseconds against a 0.1 ms search."""
    if inline:
        return fn(*args)
    return await with_timeout(seconds, fn, *args)


async def with_timeout(seconds: float, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run blocking ``fn`` in the thread pool; a 504 if it takes longer than ``seconds``."""
    try:
        return await asyncio.wait_for(run_in_threadpool(fn, *args, **kwargs), timeout=seconds)
    except asyncio.TimeoutError:
        raise QueryTimeout(f"the query took longer than the server's limit of {seconds:g} s") from None


__all__ = ["BodyLimit", "QueryTimeout", "TooLarge", "error_response", "read_json", "run_query", "tether_error",
           "with_timeout"]
