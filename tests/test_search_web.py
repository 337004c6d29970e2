"""The search page at / driven end to end in headless Chromium (Debian's chromium via Playwright):
type a query, see results, upload an image, click a result, switch to captions, pair check.
Screenshots are kept in the test's tmp folder (the path is printed)."""
from __future__ import annotations

import pytest
from search_data import embed_tux
from search_server import serve_in_thread

from tether.cli.main import main
from tether.search import open_index
from tether.search.server.app import ServerConfig, create_app

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def site(tiny_checkpoint, tuxpaint_stamps, tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    emb = embed_tux(tiny_checkpoint, tuxpaint_stamps, root)
    assert main(["index", str(emb), "--out", str(root / "tux")]) == 0
    with serve_in_thread(create_app(ServerConfig(index_dir=str(root / "tux")))) as url:
        yield url, open_index(root / "tux")


@pytest.fixture(scope="module")
def page(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
        browser.close()
        assert not errors, errors


def test_search_page_end_to_end(site, page, tmp_path):
    url, index = site
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('status').textContent.includes('48 rows')")
    # type a query, see a grid of images with captions and scores
    page.fill("#query", "a frog")
    page.press("#query", "Enter")
    page.wait_for_selector("#results .result img")
    cards = page.locator("#results .result")
    assert cards.count() == 24
    first_caption = cards.nth(0).locator(".caption").inner_text()
    assert first_caption in {m["caption"] for m in index.metadata(range(48))}
    page.wait_for_function("[...document.querySelectorAll('#results img')].slice(0, 4).every(i => i.naturalWidth > 0)")
    page.screenshot(path=str(tmp_path / "1-text-query.png"), full_page=True)
    # upload an image: its own row comes first
    path = index.metadata([9])[0]["image_path"]
    page.set_input_files("#file", path)
    page.wait_for_function("document.getElementById('message').textContent.includes('for image')")
    assert cards.nth(0).get_attribute("data-id") == "9"
    page.screenshot(path=str(tmp_path / "2-image-upload.png"), full_page=True)
    # click a result: search by that row
    target = cards.nth(3).get_attribute("data-id")
    cards.nth(3).click()
    # "for row N's image" is the finished message ("searching row N's image…" comes before the results)
    page.wait_for_function(f"document.getElementById('message').textContent.includes(\"for row {target}'s image\")")
    assert cards.nth(0).get_attribute("data-id") == target
    page.screenshot(path=str(tmp_path / "3-click-result.png"), full_page=True)
    # switch to caption results: text cards, no images
    page.check("input[name=modality][value=text]")
    page.wait_for_function("document.getElementById('message').textContent.includes('captions for')")
    assert page.locator("#results .result img").count() == 0 and cards.count() > 0
    # pair check: row 9's image with its own caption
    page.fill("#pair-text", index.metadata([9])[0]["caption"])
    page.fill("#pair-id", "9")
    page.click("#pair-go")
    page.wait_for_selector("#pair-result dl")
    text = page.inner_text("#pair-result")
    assert "score" in text and "of 48" in text
    page.screenshot(path=str(tmp_path / "4-pair-check.png"), full_page=True)
    print(f"screenshots: {tmp_path}")
    # a bad query shows the server's message, not a broken page
    page.set_input_files("#file", {"name": "x.png", "mimeType": "image/png", "buffer": b"not an image"})
    page.wait_for_function("document.getElementById('message').className === 'error'")
    assert "not an image" in page.inner_text("#message")
