"""A bounded load test of `tether serve` on 127.0.0.1: vector and text queries, 1 to 64 clients.

The server runs as its own process (`tether serve INDEX --port P`); a Python client (httpx, one
thread a client) sends a fixed number of requests at each concurrency level. Reported per level
and query kind: throughput, p50 / p99 latency, errors, and the server's resident memory (from its
own /metrics) after the level, so growth shows. The raw index query time (``open_index(...).search``
of one vector, in this process) is measured in the same run: the goal is a p50 for vector queries
of at most 2x that plus HTTP.

    python bench/bench_serve_load.py INDEX_DIR                    # text queries need the index's model
    python bench/bench_serve_load.py demo/index --requests 400 --levels 1,4,16,64 --out bench/results/serve_load.json
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from search_server import free_port, wait_ready  # noqa: E402

from tether.search import open_index  # noqa: E402

TEXTS = ["a red shoe", "a bag", "an image of a sneaker.", "a frog", "a coat", "a photo of a dress"]


def raw_query_ms(index_dir: str, vectors: np.ndarray) -> float:
    index = open_index(index_dir)
    index.search("image", vectors[:1], 10)
    t0 = time.perf_counter()
    for v in vectors:
        index.search("image", v[None], 10)
    return (time.perf_counter() - t0) * 1000 / len(vectors)


def level(url: str, clients: int, requests: int, body_of) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    ok = http.post(f"{url}/search", json=body_of(i)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    errors[0] += not ok
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": requests, "errors": errors[0], "throughput_rps": round(requests / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def resident_mb(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(r"^process_resident_memory_bytes ([0-9.e+]+)$", text, re.M)
    return round(float(found.group(1)) / 2**20, 1) if found else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index_dir")
    p.add_argument("--requests", type=int, default=400, help="requests per level and query kind")
    p.add_argument("--levels", default="1,4,16,64")
    p.add_argument("--kinds", default="vector,text")
    p.add_argument("--out")
    args = p.parse_args()
    index = open_index(args.index_dir)
    vectors = index.vectors("image", np.random.default_rng(0).choice(len(index), 200, replace=len(index) < 200))
    raw = raw_query_ms(args.index_dir, vectors)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tether.cli.main", "serve", args.index_dir, "--port", str(port)],
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        wait_ready(url, proc=server)
        bodies = {"vector": lambda i: {"vector": vectors[i % len(vectors)].tolist(), "k": 10},
                  "text": lambda i: {"text": TEXTS[i % len(TEXTS)], "k": 10}}
        for kind in args.kinds.split(","):
            level(url, 1, 10, bodies[kind])                               # warm-up (loads the model)
            for clients in (int(c) for c in args.levels.split(",")):
                row = {"kind": kind, **level(url, clients, args.requests, bodies[kind]), "server_rss_mb": resident_mb(url)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {"index": str(args.index_dir), "rows": len(index), "raw_index_query_ms": round(raw, 3), "levels": rows,
              "note": "measured with other jobs running on a shared 2-core machine (client and server on it)"}
    print(json.dumps({"raw_index_query_ms": report["raw_index_query_ms"]}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
