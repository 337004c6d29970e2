"""The demo's index step: Fashion-MNIST test images written with captions, embedded by the demo's
model, indexed, and served by the README's command `tether serve --index demo/index`."""
from __future__ import annotations

import shutil

import httpx
import pytest
from search_server import serve_process

from tether.search import open_index
from tether.search.demo_index import build_demo_index

pytestmark = [pytest.mark.usefixtures("one_thread", "fashion_mnist")]


def test_demo_index_is_served_by_the_readme_command(tiny_checkpoint, tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    shutil.copytree(tiny_checkpoint, demo / "model")
    info = build_demo_index(demo, progress=False, limit=300)
    assert info["rows"] == [300] and set(info["indexes"]) == {"image", "text"}
    index = open_index(demo / "index")
    first = index.metadata([0])[0]
    assert first["caption"] == "an image of a ankle boot." and first["image_path"].endswith("00000-ankle_boot.png")
    assert build_demo_index(demo, progress=False, limit=300)["parts"] == [0]      # a rerun keeps what it made
    monkeypatch.chdir(tmp_path)
    with serve_process("--index", "demo/index") as url:
        found = httpx.post(f"{url}/search", json={"text": "an image of a sneaker.", "k": 5}).json()["results"]
        assert len(found) == 5 and all(r["url"].startswith(f"{url}/image/index/") for r in found)
        image = httpx.get(found[0]["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content == open(found[0]["image_path"], "rb").read()
