"""`tether serve` (tether.search.server): clip-retrieval's back-end API as its ClipClient sends it,
tether's /search and /pair, images from the collection only, limits and errors, metrics."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from search_data import embed_tux
from search_server import serve_in_thread

import tether
from tether.cli.main import main
from tether.embedding import embed
from tether.search import open_index
from tether.search.server.app import ServerConfig, create_app
from tether.search.server.query import DEDUP_THRESHOLD

pytestmark = pytest.mark.usefixtures("one_thread")
# float16 storage: a stored unit row differs from the model's float32 output by float16 rounding
F16 = 2e-3


@pytest.fixture(scope="module")
def tux(tiny_checkpoint, tuxpaint_stamps, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    emb = embed_tux(tiny_checkpoint, tuxpaint_stamps, root)
    assert main(["index", str(emb), "--out", str(root / "tux")]) == 0
    model = tether.load(tiny_checkpoint).eval()
    with serve_in_thread(create_app(ServerConfig(index_dir=str(root / "tux")))) as url:
        yield {"url": url, "root": root, "index": open_index(root / "tux"), "model": model}


FIXTURE = Path(__file__).parent / "fixtures" / "clip_client_requests.json"


def recorded_requests() -> list[dict]:
    """The bodies clip-retrieval 2.45.0's real ClipClient posted (bench/clip_client_fixture.py)."""
    return json.loads(FIXTURE.read_text())["requests"]


def clip_client_body(**query):
    """ClipClient's request (its constructor's defaults: aesthetic 9 / 0.5, deduplicate, safety and
    violence models on) with ``query`` changed; sent like the client, as a body without Content-Type."""
    body = dict(recorded_requests()[0]["body"], indice_name="tux", text=None)
    body.update(query)
    return json.dumps(body)


def expected_order(tux, modality, q, k):
    stored = tux["index"].vectors(modality, range(len(tux["index"])))
    scores = stored @ q
    return np.argsort(-scores, kind="stable")[:k], scores


def assert_top(rows, tux, modality, q, k):
    """``rows`` are the exact top ``k`` of ``q``: each score is its row's, and they are the k best
    (rows with equal captions tie, so ids alone could differ in order)."""
    _, scores = expected_order(tux, modality, q, k)
    got = np.array([r["similarity"] for r in rows])
    assert len(rows) == k
    np.testing.assert_allclose(got, scores[[r["id"] for r in rows]], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, np.sort(scores)[::-1][:k], rtol=0, atol=1e-5)


def test_knn_service_answers_clip_clients_exact_request(tux):
    r = httpx.post(f"{tux['url']}/knn-service", content=clip_client_body(text="a frog", deduplicate=False,
                                                                          num_images=5, num_result_ids=5))
    assert r.status_code == 200, r.text
    rows = r.json()
    q = embed(tux["model"], "text", ["a frog"]).vectors.numpy()[0]
    assert_top(rows, tux, "image", q, 5)
    first = rows[0]
    assert {"id", "similarity", "caption", "image_path", "url"} <= set(first)
    assert first["url"] == f"{tux['url']}/image/tux/{first['id']}"
    assert first["caption"] == tux["index"].metadata([first["id"]])[0]["caption"]


def test_replays_the_real_clip_clients_requests(tux):
    image = base64.b64encode(open(tux["index"].metadata([7])[0]["image_path"], "rb").read()).decode()
    requests = recorded_requests()
    assert len(requests) == 6 and all(r["content_type"] is None and r["path"] == "/knn-service" for r in requests)
    for r in requests:
        body = dict(r["body"], indice_name="tux")
        if body["image"]:
            body["image"] = image
        if body["embedding_input"]:
            body["embedding_input"] = [0.125] * 64
        answer = httpx.post(tux["url"] + r["path"], content=json.dumps(body))
        assert answer.status_code == 200, answer.text
        rows = answer.json()
        assert 1 <= len(rows) <= body["num_images"]
        assert all({"id", "similarity", "caption", "url", "image_path"} <= set(row) for row in rows)


def test_knn_service_deduplicates_as_clip_retrieval(tux):
    q = embed(tux["model"], "text", ["a bird"]).vectors.numpy()[0]
    full = httpx.post(f"{tux['url']}/knn-service", content=clip_client_body(
        embedding_input=q.tolist(), deduplicate=False, num_images=48, num_result_ids=48)).json()
    ids = [row["id"] for row in full]
    v = tux["index"].vectors("image", ids)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    kept, removed = [], set()                # connected components at >= 0.94, first member kept
    for a in range(len(ids)):
        if a in removed:
            continue
        kept.append(ids[a])
        stack = [a]
        while stack:
            b = stack.pop()
            for c in np.nonzero(v @ v[b] >= DEDUP_THRESHOLD)[0]:
                if c != a and c not in removed:
                    removed.add(int(c))
                    stack.append(int(c))
    dedup = httpx.post(f"{tux['url']}/knn-service", content=clip_client_body(
        embedding_input=q.tolist(), num_images=48, num_result_ids=48)).json()
    assert [row["id"] for row in dedup] == kept and len(kept) < len(ids)


def test_knn_service_image_and_text_modality(tux, tiny_checkpoint):
    path = tux["index"].metadata([7])[0]["image_path"]
    image = base64.b64encode(open(path, "rb").read()).decode()
    rows = httpx.post(f"{tux['url']}/knn-service", content=clip_client_body(image=image, deduplicate=False,
                                                                             num_images=3)).json()
    assert rows[0]["id"] == 7 and abs(rows[0]["similarity"] - 1) < F16
    texts = httpx.post(f"{tux['url']}/knn-service", content=clip_client_body(
        text="a frog", modality="text", deduplicate=False, num_images=3)).json()
    q = embed(tux["model"], "text", ["a frog"]).vectors.numpy()[0]
    assert_top(texts, tux, "text", q, 3)


def test_image_url_is_off_by_default(tux):
    r = httpx.post(f"{tux['url']}/knn-service", content=clip_client_body(image_url="http://127.0.0.1:9/x.png"))
    assert r.status_code == 400 and "image_url is off" in r.json()["error"]


def test_metadata_indices_and_config(tux):
    url = tux["url"]
    listed = httpx.get(f"{url}/indices-list", headers={"Origin": "http://front.example"})
    assert listed.json() == ["tux"] and listed.headers["access-control-allow-origin"] == "*"   # its front end's origin
    assert httpx.get(f"{url}/config.json").json() == {"defaultBackend": url, "defaultIndex": "tux", "urlColumn": "url"}
    rows = httpx.post(f"{url}/metadata", content=json.dumps({"ids": [3, 0], "indice_name": "tux"})).json()
    assert [r["id"] for r in rows] == [3, 0]
    assert rows[0]["metadata"] == tux["index"].metadata([3])[0]


def test_search_by_text_vector_row_and_filters(tux):
    url, index = tux["url"], tux["index"]
    q = embed(tux["model"], "text", ["a red cat"]).vectors.numpy()[0]
    by_text = httpx.post(f"{url}/search", json={"text": "a red cat", "k": 6}).json()
    assert_top(by_text["results"], tux, "image", q, 6)
    by_vector = httpx.post(f"{url}/search", json={"vector": (3 * q).tolist(), "k": 6}).json()   # normalised
    assert [r["id"] for r in by_vector["results"]] == [r["id"] for r in by_text["results"]]
    by_row = httpx.post(f"{url}/search", json={"id": 12, "id_modality": "image", "modality": "text", "k": 4}).json()
    assert by_row["modality"] == "text"
    assert_top(by_row["results"], tux, "text", index.vectors("image", [12])[0], 4)
    keys = [index.metadata([i])[0]["key"] for i in (5, 30, 41)]
    filtered = httpx.post(f"{url}/search", json={"text": "a red cat", "k": 10, "filters": {"key": keys}}).json()
    assert sorted(r["key"] for r in filtered["results"]) == sorted(keys)
    bad = httpx.post(f"{url}/search", json={"text": "x", "filters": {"colour": "red"}})
    assert bad.status_code == 400 and "unknown metadata column 'colour'" in bad.json()["error"]


def test_upload_search_and_pair_check(tux):
    url, index = tux["url"], tux["index"]
    path = index.metadata([20])[0]["image_path"]
    with open(path, "rb") as f:
        r = httpx.post(f"{url}/search/image", files={"file": ("x.png", f, "image/png")}, data={"k": "3"})
    assert r.status_code == 200 and r.json()["results"][0]["id"] == 20
    caption = index.metadata([20])[0]["caption"]
    pair = httpx.post(f"{url}/pair", json={"text": caption, "image_id": 20}).json()
    t = embed(tux["model"], "text", [caption]).vectors.numpy()[0]
    i = index.vectors("image", [20])[0]
    assert abs(pair["score"] - float(t @ i)) < 1e-5
    images = index.vectors("image", range(len(index))) @ t
    texts = index.vectors("text", range(len(index))) @ i
    assert pair["image_rank"] == 1 + int((images > pair["score"]).sum())
    assert pair["text_rank"] == 1 + int((texts > pair["score"]).sum())


def test_images_come_only_from_the_collection(tux):
    url, index = tux["url"], tux["index"]
    r = httpx.get(f"{url}/image/tux/4")
    assert r.status_code == 200 and r.content == open(index.metadata([4])[0]["image_path"], "rb").read()
    passwd = open("/etc/passwd", "rb").read()
    for path in ("/image/tux/..%2F..%2F..%2Fetc%2Fpasswd", "/image/tux/../../etc/passwd", "/image/..%2Fetc/0",
                 "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/static/../../../etc/passwd", "/image/tux/-1",
                 "/image/tux/48", "/image/other/0", "/image/tux/1e3", "/static/%2e%2e/%2e%2e/app.py"):
        r = httpx.get(url + path)
        assert r.status_code in (404, 422), (path, r.status_code)
        assert passwd not in r.content and b"import" not in r.content
    r = httpx.post(f"{url}/knn-service", content=clip_client_body(text="a frog", indice_name="../../etc/passwd"))
    assert r.status_code == 404 and "unknown indice_name" in r.json()["error"]


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (json.dumps({"text": 5, "modality": "image", "num_images": 3, "indice_name": "tux"}), 400, "text must be"),
    (json.dumps({"text": "x", "modality": "audio", "num_images": 3, "indice_name": "tux"}), 400, "modality must be"),
    (json.dumps({"text": "x", "modality": "image", "num_images": "ten", "indice_name": "tux"}), 400, "num_images"),
    (json.dumps({"image": "%%%", "modality": "image", "num_images": 3, "indice_name": "tux"}), 400, "base64"),
    (json.dumps({"image": base64.b64encode(b"GIF89a not really").decode(), "modality": "image", "num_images": 3,
                 "indice_name": "tux"}), 400, "not an image"),
    (json.dumps({"embedding_input": [1.0, 2.0], "modality": "image", "num_images": 3, "indice_name": "tux"}), 400,
     "list of 64 numbers"),
    (json.dumps({"modality": "image", "num_images": 3, "indice_name": "tux"}), 400, "exactly one query"),
    (json.dumps({"text": "x", "modality": "image", "num_images": 3, "indice_name": "nope"}), 404, "unknown indice"),
])
def test_bad_clip_requests_are_4xx_with_a_message(tux, body, status, message):
    r = httpx.post(f"{tux['url']}/knn-service", content=body)
    assert r.status_code == status and message in r.json()["error"], r.text


def test_limits_wrong_types_and_metrics(tux, tiny_checkpoint):
    url = tux["url"]
    assert httpx.post(f"{url}/search", json={"text": "x", "k": "many"}).status_code == 422
    assert "k:" in httpx.post(f"{url}/search", json={"text": "x", "k": 0}).json()["error"]
    assert httpx.post(f"{url}/search", json={"text": "x", "colour": 1}).status_code == 422
    bad = httpx.post(f"{url}/search", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    huge = httpx.post(f"{url}/search", content=b"x" * (17 * 2**20))
    assert huge.status_code == 413 and "over the limit" in huge.json()["error"]
    r = httpx.post(f"{url}/search/image", files={"file": ("x.png", b"<html>not an image</html>", "image/png")})
    assert r.status_code == 400 and "not an image" in r.json()["error"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"      # still answering
    metrics = httpx.get(f"{url}/metrics").text
    assert 'tether_requests_total{route="/search",status="422"}' in metrics
    assert "process_resident_memory_bytes" in metrics and "tether_request_seconds_bucket" in metrics
    schema = httpx.get(f"{url}/openapi.json").json()
    assert {"/search", "/search/image", "/pair", "/knn-service"} <= set(schema["paths"])
    assert "SearchRequest" in schema["components"]["schemas"]


def test_query_timeout_is_a_504(tux):
    app = create_app(ServerConfig(index_dir=str(tux["root"] / "tux"), timeout_s=1e-9))
    with serve_in_thread(app) as url:
        r = httpx.post(f"{url}/search", json={"text": "a frog"})
        assert r.status_code == 504 and "longer than the server's limit" in r.json()["error"]
        # a vector query is answered on the event loop only where the limit leaves room: not here
        v = httpx.post(f"{url}/search", json={"vector": [1.0] * tux["index"].dim, "k": 3})
        assert v.status_code == 504
        assert httpx.get(f"{url}/health").status_code == 200


def test_only_small_bounded_queries_run_on_the_event_loop(tux):
    from tether.search.server.backend import LocalBackend
    from tether.search.server.query import INLINE_MAX_K, runs_inline

    backend = LocalBackend(tux["root"] / "tux")
    measured = [e["query_time"]["single_ms"] for e in backend.index.info["indexes"].values()]
    assert backend.query_ms == max(measured) < 2.0            # the 785-row exact index: fast
    assert runs_inline(backend, True, 10, None, False, 30.0)
    assert not runs_inline(backend, False, 10, None, False, 30.0)          # text/image: the model runs
    assert not runs_inline(backend, True, 10, {"key": "x"}, False, 30.0)   # filters may rank everything
    assert not runs_inline(backend, True, 10, None, True, 30.0)            # so may de-duplication
    assert not runs_inline(backend, True, INLINE_MAX_K + 1, None, False, 30.0)
    assert not runs_inline(backend, True, 10, None, False, 0.05)           # no room under the limit
    backend.index.info["indexes"]["image"]["query_time"]["single_ms"] = 50.0   # a slow index
    assert not runs_inline(backend, True, 10, None, False, 30.0)
    # the same answers either way: a vector query (event loop) and the same with a no-op filter (pool)
    q = tux["index"].vectors("image", [3])[0]
    inline = httpx.post(f"{tux['url']}/search", json={"vector": q.tolist(), "k": 5}).json()["results"]
    keys = tux["index"].column("key")
    pooled = httpx.post(f"{tux['url']}/search", json={"vector": q.tolist(), "k": 5, "filters": {"key": keys}})
    assert [r["id"] for r in inline] == [r["id"] for r in pooled.json()["results"]]


def _unmatched_404s(metrics: str) -> float:
    line = [x for x in metrics.splitlines() if x.startswith('tether_requests_total{route="unmatched",status="404"}')]
    return float(line[0].split()[-1]) if line else 0.0


def test_metrics_labels_stay_bounded(tux):
    url = tux["url"]
    before = _unmatched_404s(httpx.get(f"{url}/metrics").text)
    for i in range(25):
        httpx.get(f"{url}/no/such/path/{i}")
        httpx.get(f"{url}/image/tux/{i}")
    metrics = httpx.get(f"{url}/metrics").text
    routes = {line.split('route="')[1].split('"')[0] for line in metrics.splitlines()
              if line.startswith("tether_requests_total{")}
    assert "unmatched" in routes and "/image/{name}/{row}" in routes
    assert not any("/no/such" in r or r.startswith("/image/tux") for r in routes), routes
    assert _unmatched_404s(metrics) == before + 25


def test_serve_cli_names_what_is_missing(tmp_path, capsys):
    assert main(["serve"]) == 1
    assert "give an index folder (INDEX_DIR) or --shard URLs" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 1
    assert "not an index folder (no index_info.json" in capsys.readouterr().err
