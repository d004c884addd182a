"""End to end in a real browser: Debian's headless Chromium, driven by Playwright, against ``pada app``'s
Gradio UI on 127.0.0.1 (tiny random-weight model). Upload the shipped sample photo, type a target, press
*Age*, wait for the result images; every request the page makes must go to 127.0.0.1 (no CDN, fonts or
analytics). Skips when Chromium or Playwright is not installed (``scripts/setup.sh`` installs both)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytest.importorskip("gradio")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def server():
    """The app (Gradio UI + API) on a free 127.0.0.1 port, served by uvicorn in a thread."""
    import uvicorn

    from pada.aging.pipeline import AgingPipeline
    from pada.aging.testing import TinyVL
    from pada.app import create_app
    from test_aging_helpers import tiny_diffae, tiny_model

    pipe = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=2)
    app = create_app(pipe, model_name="tiny random test model")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    yield url
    srv.should_exit = True
    th.join(timeout=10)


def test_browser_upload_target_and_results(server, tmp_path):
    from pada.faces.samples import example_photo

    requests: list[str] = []
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda req: requests.append(req.url))
            page.goto(server + "/", wait_until="domcontentloaded", timeout=60_000)
            page.locator("#photo input[type=file]").set_input_files(str(example_photo()), timeout=60_000)
            page.locator("#target textarea, #target input").first.fill("woman's face in her sixties")
            # the upload has reached the server once the preview image shows
            page.locator("#photo img").first.wait_for(timeout=60_000)
            page.locator("#age-button").click()
            page.locator("#results img").first.wait_for(timeout=120_000)
            results = page.locator("#results img")
            assert results.count() >= 1
            captions = page.locator("#results").inner_text()
            assert "woman's face in her sixties #0" in captions
            page.locator("#grid img").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    outside = [u for u in requests if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert not outside, outside  # no CDN, fonts, analytics or update checks
