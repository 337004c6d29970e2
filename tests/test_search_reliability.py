"""The server under change and at scale-out: queries keep being answered while `tether index` adds a
part, and two shard processes behind a front give the same results as one index."""
from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest
from search_data import write_clustered
from search_server import serve_in_thread, serve_process

from tether.search import build_index, open_index
from tether.search.server.app import ServerConfig, create_app

pytestmark = pytest.mark.usefixtures("one_thread")


def test_queries_keep_being_answered_while_a_part_is_added(tmp_path):
    emb = tmp_path / "emb"
    image, _ = write_clustered(emb, [800, 800])
    build_index(emb, tmp_path / "idx", index_type="ivf-flat", queries=100)
    queries = image[:50].astype(np.float16).astype(np.float32)
    statuses, stop = [], threading.Event()
    with serve_in_thread(create_app(ServerConfig(index_dir=str(tmp_path / "idx")))) as url:
        def ask() -> None:
            with httpx.Client(timeout=30) as client:
                i = 0
                while not stop.is_set():
                    r = client.post(f"{url}/search", json={"vector": queries[i % 50].tolist(), "k": 5})
                    statuses.append((r.status_code, r.json()["results"][0]["id"] if r.status_code == 200 else r.text))
                    i += 1
        workers = [threading.Thread(target=ask) for _ in range(3)]
        for w in workers:
            w.start()
        new_image, _ = write_clustered(emb, [400], seed=5, first_part=2)
        build_index(emb, tmp_path / "idx", queries=100)              # adds part 2 while queries run
        stop.set()
        for w in workers:
            w.join()
        assert statuses and all(s == 200 for s, _ in statuses), [s for s in statuses if s[0] != 200][:3]
        assert {top for _, top in statuses} <= set(range(50))       # queries are rows 0..49: found among them
        health = httpx.get(f"{url}/health").json()
        assert health["rows"] == 2000
        r = httpx.post(f"{url}/search", json={"vector": new_image[3].astype(np.float16).astype(float).tolist(), "k": 1})
        assert r.json()["results"][0]["id"] == 1603 and r.json()["results"][0]["key"] == "p2-3"


def test_two_shard_processes_give_the_one_index_results(tmp_path):
    emb = tmp_path / "emb"
    write_clustered(emb, [300, 300, 300, 300])
    build_index(emb, tmp_path / "all", index_type="flat", queries=50)
    build_index(emb, tmp_path / "shard0", index_type="flat", parts=[0, 1], queries=50)
    build_index(emb, tmp_path / "shard1", index_type="flat", parts=[2, 3], queries=50)
    whole = open_index(tmp_path / "all")
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(6, whole.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with serve_process(str(tmp_path / "shard0")) as s0, serve_process(str(tmp_path / "shard1")) as s1:
        with serve_in_thread(create_app(ServerConfig(shards=[s0, s1], name="all"))) as front:
            assert httpx.get(f"{front}/health").json()["rows"] == 1200
            for modality in ("image", "text"):
                for q in queries:
                    got = httpx.post(f"{front}/search", json={"vector": q.tolist(), "k": 15,
                                                              "modality": modality}).json()["results"]
                    hits = whole.search(modality, q, 15)[0]
                    assert [r["id"] for r in got] == hits.ids
                    np.testing.assert_allclose([r["similarity"] for r in got], hits.scores, rtol=0, atol=1e-6)
                    assert [r["key"] for r in got] == [m["key"] for m in whole.metadata(hits.ids)]
            knn = httpx.post(f"{front}/knn-service", content=httpx.Request("POST", "/", json={
                "embedding_input": queries[0].tolist(), "modality": "image", "num_images": 10,
                "indice_name": "all", "deduplicate": True}).content).json()
            assert [r["id"] for r in knn][0] == whole.search("image", queries[0], 1)[0].ids[0]
            meta = httpx.post(f"{front}/metadata", json={"ids": [0, 599, 600, 1199], "indice_name": "all"}).json()
            assert [m["metadata"]["key"] for m in meta] == ["p0-0", "p1-299", "p2-0", "p3-299"]
            by_row = httpx.post(f"{front}/search", json={"id": 900, "k": 1}).json()["results"][0]
            assert by_row["id"] == 900
