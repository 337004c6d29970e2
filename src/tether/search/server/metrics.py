"""Prometheus metrics of one server: requests by route and status, latency, rows served.

Labels are bounded: the route is the matched route's template (``/image/{name}/{row}``, never the
requested path) or ``unmatched``, and the status a three-digit code, so a long run with many
distinct URLs cannot grow the label sets. The recording middleware is plain ASGI (starlette's
``BaseHTTPMiddleware`` runs each request in an extra task with memory streams: a measurable share
of a sub-millisecond query).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST, ProcessCollector


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)              # resident memory, CPU, open files
        self.requests = Counter("tether_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("tether_request_seconds", "request latency", ["route"], registry=self.registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.rows = Gauge("tether_index_rows", "rows in the served index", registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def record(self, route: str, status: int, seconds: float) -> None:
        self.latency.labels(route).observe(seconds)
        self.requests.labels(route, str(status)).inc()


class MetricsMiddleware:
    """ASGI middleware: the latency and status of every HTTP request, by matched route template."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, sending)
        finally:        # the router wrote the matched route into the scope it was given
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.record(route, status[0], time.perf_counter() - t0)


__all__ = ["Metrics", "MetricsMiddleware"]
