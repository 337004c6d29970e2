"""Run clip-retrieval's real ClipClient (2.45.0, from a peer venv) against `tether serve`, and record
the exact requests it sends as a test fixture (tests/fixtures/clip_client_requests.json).

The peer venv holds clip-retrieval without its dependencies (its package __init__ imports Flask,
torch, ...); clip_client.py itself needs only requests, so it is loaded from its file:

    python -m venv bench/.venv-clip-retrieval
    bench/.venv-clip-retrieval/bin/pip install --no-deps clip-retrieval==2.45.0 && \
        bench/.venv-clip-retrieval/bin/pip install requests
    PYTHONPATH=src python bench/clip_client_fixture.py INDEX_DIR IMAGE

Step 1: the client posts to a recording server (this script's own, on 127.0.0.1), which keeps the
raw bodies and headers. Step 2: the same client queries `tether serve INDEX_DIR` and must get
results back (id, similarity, caption, url). tests/test_search_server.py replays the recorded
bodies against the server.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = ROOT / "bench" / ".venv-clip-retrieval" / "bin" / "python"
FIXTURE = ROOT / "tests" / "fixtures" / "clip_client_requests.json"

CLIENT = r"""
import importlib.util, json, sys, glob
path = glob.glob(sys.prefix + "/lib/python3*/site-packages/clip_retrieval/clip_client.py")[0]
spec = importlib.util.spec_from_file_location("clip_client", path)
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
url, name, image = sys.argv[1], sys.argv[2], sys.argv[3]
out = []
for modality in (mod.Modality.IMAGE, mod.Modality.TEXT):
    client = mod.ClipClient(url=url, indice_name=name, modality=modality, num_images=5)
    out.append(client.query(text="a frog"))
    out.append(client.query(image=image))
    out.append(client.query(embedding_input=[0.125] * int(sys.argv[4])))
print(json.dumps(out))
"""


class Recorder(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Recorder.seen.append({"path": self.path, "content_type": self.headers.get("content-type"),
                              "body": body.decode()})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args) -> None:
        pass


def run_client(url: str, name: str, image: str, dim: int) -> list:
    done = subprocess.run([str(VENV_PY), "-c", CLIENT, url, name, image, str(dim)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(index_dir: str, image: str) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from search_server import serve_in_thread

    from tether.search.server.app import ServerConfig, create_app

    recorder = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    name = Path(index_dir).resolve().name
    dim = json.loads((Path(index_dir) / "index_info.json").read_text())["dim"]
    run_client(f"http://127.0.0.1:{recorder.server_port}/knn-service", name, image, dim)
    recorder.shutdown()
    with serve_in_thread(create_app(ServerConfig(index_dir=index_dir))) as url:
        answers = run_client(f"{url}/knn-service", name, image, dim)
    assert all(a and {"id", "similarity", "caption", "url"} <= set(a[0]) for a in answers), answers
    print(f"ClipClient got {[len(a) for a in answers]} results from tether serve; first: "
          f"{ {k: answers[0][0][k] for k in ('id', 'similarity', 'caption')} }")
    records = [{k: r[k] for k in ("path", "content_type")} | {"body": json.loads(r["body"])} for r in Recorder.seen]
    for r in records:          # the image is the test's own copy: keep the request shape, not 100 kB of base64
        if r["body"].get("image"):
            r["body"]["image"] = "<base64 of the query image>"
    FIXTURE.write_text(json.dumps({"clip_retrieval": "2.45.0", "index_name": name, "requests": records}, indent=1)
                       + "\n")
    print(f"recorded {len(records)} requests -> {FIXTURE}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
