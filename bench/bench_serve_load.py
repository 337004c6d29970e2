"""A bounded load test of `tether serve` on 127.0.0.1: vector and text queries, 1 to 64 clients.

The server runs as its own process (`tether serve INDEX --port P`). The client is lean so that it
measures the server rather than itself: ``--client wrk`` (Debian's `wrk`, keep-alive connections,
a Lua script cycling through prepared POST bodies, ``--duration`` seconds a level) or ``--client
raw`` (Python's http.client on keep-alive connections, a thread a client, ``--requests`` a level);
``--client httpx`` is the old client, kept for comparison. Reported per level and query kind:
throughput, p50 / p99 latency, errors, and the server's resident memory after the level.

Measured in the same run, for what the goal compares against:

* ``raw_index_query_ms``: ``open_index(...).search`` of one vector, in-process, on the same index;
* ``handler_ms``: the server's whole vector search (query check, index search, metadata of k rows,
  result rows) called in-process, without HTTP;
* ``floor``: an empty FastAPI route on the same uvicorn settings (``--floor``), posted the same
  vector bodies by the same client: what HTTP alone costs on this machine;
* ``server_cpu_ms_per_request`` per level: the server process's CPU time over the requests it
  answered, which on a shared machine says more about its own overhead than latency does;
* ``soak`` (``--soak N``): N vector requests at 4 clients, bounded by ``--soak-seconds``, the
  server's RSS (from /proc) sampled every half second, so growth shows.

    python bench/bench_serve_load.py INDEX_DIR --client wrk --floor --soak 20000 --out bench/results/serve_load.json
    python bench/bench_serve_load.py INDEX_DIR --client raw --kinds vector --levels 1
    python bench/bench_serve_load.py /tmp/clustered-200k --build-clustered 200000 --kinds vector --floor

``--build-clustered N`` first writes N x 512 clustered unit vectors (bench_index.py's generator,
seed 0) with a key column as an embedding folder and indexes them as HNSW32 tuned to recall@10
0.95 (``--max-query-ms 0``) into INDEX_DIR, unless INDEX_DIR already holds an index: a larger index
where one raw query costs more than HTTP's floor.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from starlette.requests import Request

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from search_server import free_port, wait_ready  # noqa: E402

from tether.search import open_index  # noqa: E402

TEXTS = ["a red shoe", "a bag", "an image of a sneaker.", "a frog", "a coat", "a photo of a dress"]
K = 10


def raw_query_ms(index_dir: str, vectors: np.ndarray) -> float:
    """ms a query of the bare index search (FAISS, plus PQ re-ranking where the type has it)."""
    index = open_index(index_dir)
    return _ms_each(lambda v: index.search("image", v[None], K), vectors)


def handler_ms(index_dir: str, vectors: np.ndarray) -> float:
    """ms a query of everything the server does for a vector search except HTTP and JSON."""
    from tether.search.server.api import SearchRequest, _search
    from tether.search.server.backend import LocalBackend

    backend = LocalBackend(index_dir)
    base = "http://x/image/i"
    return _ms_each(lambda v: _search(backend, SearchRequest(vector=v.tolist(), k=K), None, base), vectors)


def _ms_each(fn, vectors: np.ndarray, rounds: int = 3) -> float:
    for v in vectors[:10]:
        fn(v)
    best = float("inf")
    for _ in range(rounds):        # the best of a few passes: the least disturbed by other jobs
        t0 = time.perf_counter()
        for v in vectors:
            fn(v)
        best = min(best, (time.perf_counter() - t0) * 1000 / len(vectors))
    return best


# -- clients ---------------------------------------------------------------------------------------
def threaded_level(clients: int, requests: int, connect) -> dict:
    """``requests`` requests over ``clients`` threads; ``connect()`` gives a thread its
    ``(send(i) -> ok, close())`` on a connection of its own."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        send, close = connect()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            ok = send(i)
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok
        close()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": requests, "errors": errors[0],
            "throughput_rps": round(requests / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def raw_level(port: int, path: str, bodies: list[bytes], clients: int, requests: int) -> dict:
    """POSTs over keep-alive connections of Python's http.client (little client-side cost)."""
    headers = {"Content-Type": "application/json"}

    def connect():
        conn = [http.client.HTTPConnection("127.0.0.1", port, timeout=60)]

        def send(i: int) -> bool:
            try:
                conn[0].request("POST", path, bodies[i % len(bodies)], headers)
                response = conn[0].getresponse()
                response.read()
                return response.status == 200
            except (OSError, http.client.HTTPException):
                conn[0].close()
                conn[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                return False
        return send, lambda: conn[0].close()
    return threaded_level(clients, requests, connect)


def httpx_level(port: int, path: str, bodies: list[bytes], clients: int, requests: int) -> dict:
    """The old client: httpx, a Client a thread (for comparison with the lean ones)."""
    import httpx

    def connect():
        http = httpx.Client(timeout=60)

        def send(i: int) -> bool:
            try:
                return http.post(f"http://127.0.0.1:{port}{path}", content=bodies[i % len(bodies)],
                                 headers={"Content-Type": "application/json"}).status_code == 200
            except httpx.HTTPError:
                return False
        return send, http.close
    return threaded_level(clients, requests, connect)


WRK_LUA = """
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end
local bad = 0
response = function(status, headers, body) if status ~= 200 then bad = bad + 1 end end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %f, "p50_us": %f, "p99_us": %f, "socket_errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def wrk_level(port: int, path: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """`wrk` with ``clients`` keep-alive connections for ``seconds`` (2 threads at most: 2 cores here)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bodies.txt").write_bytes(b"\n".join(bodies) + b"\n")
        (Path(tmp) / "post.lua").write_text(WRK_LUA)
        done = subprocess.run(["wrk", "-t", str(min(2, clients)), "-c", str(clients), "-d", f"{math.ceil(seconds)}s",
                               "--timeout", "30s", "-s", str(Path(tmp) / "post.lua"), f"http://127.0.0.1:{port}{path}"],
                              capture_output=True, text=True,
                              env={**os.environ, "WRK_BODIES": str(Path(tmp) / "bodies.txt")})
    found = re.search(r"^\{.*\}$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    r = json.loads(found.group(0))
    return {"clients": clients, "requests": r["requests"], "errors": r["socket_errors"],   # status errors included
            "throughput_rps": round(r["requests"] / r["seconds"], 1),
            "p50_ms": round(r["p50_us"] / 1000, 3), "p99_ms": round(r["p99_us"] / 1000, 3)}


def run_level(args: argparse.Namespace, port: int, path: str, bodies: list[bytes], clients: int) -> dict:
    if args.client == "wrk":
        return wrk_level(port, path, bodies, clients, args.duration)
    return (raw_level if args.client == "raw" else httpx_level)(port, path, bodies, clients, args.requests)


# -- servers ---------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (/proc/PID/stat): unlike latency, it does not
    count the time the server waited for a core another job held."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_level(args: argparse.Namespace, pid: int, port: int, path: str, bodies: list[bytes], clients: int) -> dict:
    """One level, with the server's CPU ms a request (its own work, whatever else the machine ran)."""
    cpu0 = cpu_seconds(pid)
    row = run_level(args, port, path, bodies, clients)
    row["server_cpu_ms_per_request"] = round((cpu_seconds(pid) - cpu0) * 1000 / max(1, row["requests"]), 3)
    return row


def rss_mb(pid: int) -> float:
    found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return round(int(found.group(1)) / 1024, 1) if found else float("nan")


def start(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(cmd + ["--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_ready(f"http://127.0.0.1:{port}", proc=proc)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def floor_app():
    """An empty FastAPI route (it reads the body and answers {}): HTTP's cost alone."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/empty")
    async def empty(request: Request) -> dict:
        await request.body()
        return {}
    return app


def serve_floor(port: int) -> None:
    import uvicorn
    uvicorn.run(floor_app(), host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=5)


def soak(args: argparse.Namespace, proc: subprocess.Popen, port: int, bodies: list[bytes]) -> dict:
    """``args.soak`` requests (``--soak-kind``) at 4 clients (bounded by ``--soak-seconds``), RSS every 0.5 s."""
    samples: list[tuple[float, float]] = []
    stop_flag = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop_flag.is_set():
            samples.append((round(time.perf_counter() - t0, 1), rss_mb(proc.pid)))
            stop_flag.wait(0.5)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        if args.client == "wrk":
            rate = run_level(args, port, "/search", bodies, 4)["throughput_rps"]   # one short level to size it
            seconds = min(args.soak_seconds, max(5.0, args.soak / max(rate, 1)))
            row = wrk_level(port, "/search", bodies, 4, seconds)
        else:
            row = raw_level(port, "/search", bodies, 4, args.soak)
    finally:
        stop_flag.set()
        sampler.join()
    rss = [m for _, m in samples]
    return {**row, "rss_mb_first": rss[0], "rss_mb_last": rss[-1], "rss_mb_max": max(rss),
            "rss_samples": samples[:: max(1, len(samples) // 60)]}


def build_clustered(rows: int, out: Path) -> None:
    from bench_index import clustered, write_folder

    from tether.search import build_index

    data, paired, _ = clustered(rows, 512, seed=0)
    emb = out.with_name(out.name + "-emb")
    if not (emb / "img_emb").is_dir():
        write_folder(data, paired, emb)
    # HNSW at a fixed recall target, no time budget: a raw query well above HTTP's floor, the same
    # index on any machine (tether's own choice here would be IVF-Flat at nprobe 8, about as cheap as
    # the demo index)
    info = build_index(emb, out, modalities=["image"], index_type="hnsw", target_recall=0.95, max_query_ms=0, log=print)
    print(json.dumps({k: info["indexes"]["image"][k] for k in ("key", "search_params", "recall_at_10", "query_time")}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index_dir", nargs="?")
    p.add_argument("--client", choices=("wrk", "raw", "httpx"), default="wrk")
    p.add_argument("--requests", type=int, default=2000, help="raw/httpx: requests per level and query kind")
    p.add_argument("--duration", type=float, default=10, help="wrk: seconds per level and query kind")
    p.add_argument("--levels", default="1,4,16,64")
    p.add_argument("--kinds", default="vector,text", help="query kinds ('' for none: a soak alone)")
    p.add_argument("--floor", action="store_true", help="also measure an empty FastAPI route (HTTP's floor)")
    p.add_argument("--soak", type=int, default=0, help="then N vector requests at 4 clients with RSS sampled")
    p.add_argument("--soak-seconds", type=float, default=300)
    p.add_argument("--soak-kind", choices=("vector", "text"), default="vector")
    p.add_argument("--build-clustered", type=int, metavar="N", help="first build INDEX_DIR from N clustered vectors")
    p.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out")
    args = p.parse_args()
    if args.serve_floor:
        return serve_floor(args.port)
    if args.client == "wrk" and not shutil.which("wrk"):
        p.error("--client wrk needs Debian's wrk (apt-get install wrk), or use --client raw")
    if args.build_clustered and not (Path(args.index_dir) / "index_info.json").is_file():
        build_clustered(args.build_clustered, Path(args.index_dir))
    index = open_index(args.index_dir)
    vectors = index.vectors("image", np.random.default_rng(0).choice(len(index), 200, replace=len(index) < 200))
    report = {"index": str(args.index_dir), "rows": len(index), "client": args.client,
              "index_type": index.info["indexes"]["image"]["key"],
              "search_params": index.info["indexes"]["image"]["search_params"],
              "raw_index_query_ms": round(raw_query_ms(args.index_dir, vectors), 4),
              "handler_ms": round(handler_ms(args.index_dir, vectors), 4), "levels": [],
              "note": "measured with other jobs running on a shared 2-core machine (client and server on it)"}
    print(json.dumps({k: report[k] for k in ("rows", "index_type", "raw_index_query_ms", "handler_ms")}), flush=True)
    bodies = {"vector": [json.dumps({"vector": v.tolist(), "k": K}).encode() for v in vectors],
              "text": [json.dumps({"text": t, "k": K}).encode() for t in TEXTS]}
    levels = [int(c) for c in args.levels.split(",")]
    if args.floor:
        proc, port = start([sys.executable, __file__, "--serve-floor", "1"])
        try:
            for clients in levels:
                row = measured_level(args, proc.pid, port, "/empty", bodies["vector"], clients)
                row = {"kind": "empty route", **row}
                print(json.dumps(row), flush=True)
                report["levels"].append(row)
        finally:
            stop(proc)
    proc, port = start([sys.executable, "-m", "tether.cli.main", "serve", args.index_dir])
    try:
        for kind in filter(None, args.kinds.split(",")):
            raw_level(port, "/search", bodies[kind], 1, 10)                 # warm-up (loads the model)
            for clients in levels:
                row = {"kind": kind, **measured_level(args, proc.pid, port, "/search", bodies[kind], clients),
                       "server_rss_mb": rss_mb(proc.pid)}
                print(json.dumps(row), flush=True)
                report["levels"].append(row)
        if args.soak:
            report["soak"] = {"kind": args.soak_kind, **soak(args, proc, port, bodies[args.soak_kind])}
            print(json.dumps({k: v for k, v in report["soak"].items() if k != "rss_samples"}), flush=True)
    finally:
        stop(proc)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
