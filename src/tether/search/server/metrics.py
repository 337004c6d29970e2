"""Prometheus metrics of one server: requests by route and status, latency, rows served."""
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
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.rows = Gauge("tether_index_rows", "rows in the served index", registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def middleware(self) -> Callable:
        async def record(request: Any, call_next: Callable) -> Any:
            t0 = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            name = getattr(route, "path", "unmatched")
            self.latency.labels(name).observe(time.perf_counter() - t0)
            self.requests.labels(name, str(response.status_code)).inc()
            return response
        return record


__all__ = ["Metrics"]
