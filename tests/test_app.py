"""Web app (FastAPI + Gradio): API happy path, bad input, limits (size, pixels, queue), concurrency --
with a tiny fake pipeline injected. The browser test is tests/test_app_browser.py."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from pada.app import create_app  # noqa: E402
from pada.app.service import ServiceLimits  # noqa: E402


class _Out:
    def __init__(self, images, labels=None):
        self.images, self.labels = images, labels


class FakePipeline:
    """Deterministic stand-in with AgingPipeline's ``age`` / ``lifespan`` API; detects concurrent use."""

    image_size = 32

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self.calls = []
        self._count_lock = threading.Lock()

    def _enter(self):
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self):
        with self._count_lock:
            self.active -= 1

    def age(self, image, *, text=None, ref=None, n=1, seed=0, high_diversity=True, low_diversity=False):
        self._enter()
        try:
            assert image.shape == (1, 3, 32, 32) and -1 <= float(image.min()) <= float(image.max()) <= 1
            self.calls.append((text, None if ref is None else tuple(ref.shape), n, seed, high_diversity,
                               low_diversity))
            time.sleep(self.delay)
            g = torch.Generator().manual_seed(seed)
            noise = torch.randn(n, 3, 32, 32, generator=g) * (0.2 if low_diversity else 0.0)
            return _Out((image.repeat(n, 1, 1, 1) * 0.8 + noise).clamp(-1, 1))
        finally:
            self._leave()

    def infer_gender(self, image):
        return "female"

    def lifespan(self, image, *, gender=None):
        self._enter()
        try:
            self.calls.append(("lifespan", gender))
            frames = torch.stack([image[0] * (1 - k / 6) for k in range(13)])  # 7 anchors, 1 frame between
            labels = [f"age {k // 2}" if k % 2 == 0 else "" for k in range(13)]
            return _Out(frames, labels)
        finally:
            self._leave()


def _png_bytes(size=32, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _post(client, path="/api/age", image=None, name="face.png", **fields):
    files = {"image": (name, image, "application/octet-stream")} if image is not None else None
    return client.post(path, data={k: str(v) for k, v in fields.items()}, files=files)


def _client(pipe=None, ui=False, **kw):
    pipe = pipe or FakePipeline()
    return TestClient(create_app(pipe, ui=ui, **kw)), pipe


def _grid_size(rows: int, cols: int) -> tuple[int, int]:
    """Labelled grid of 32 px faces: tiles shown at 128 px, 6 px padding, title + caption lines."""
    return 6 + cols * 134, 6 + rows * 172


def test_api_happy_path_returns_labelled_png_grid():
    c, pipe = _client(max_upload_mb=0.5)
    r = _post(c, image=_png_bytes(), target="woman's face in her sixties", n=3, seed=5, aligned="on",
              high_level="off")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == _grid_size(1, 4)  # source + 3 outputs
    assert r.headers["X-Pada-Labels"].split("|") == [f"woman's face in her sixties #{i}" for i in range(3)]
    assert pipe.calls == [("woman's face in her sixties", None, 3, 5, False, False)]  # low-level: off
    g = c.post("/api/age?format=gif", data={"target": "x", "aligned": "on"},
               files={"image": ("f.png", _png_bytes(), "image/png")})
    assert g.status_code == 200 and g.content[:6] == b"GIF89a"


def test_api_ages_give_one_row_each_and_reference():
    c, pipe = _client()
    r = _post(c, image=_png_bytes(), age="30, 70", n=2, aligned="on")
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).size == _grid_size(2, 3)
    assert [call[0] for call in pipe.calls] == ["woman's face in her thirties", "woman's face in her sixties"]
    r = c.post("/api/age", data={"n": "1", "aligned": "on"},
               files={"image": ("a.png", _png_bytes(), "image/png"),
                      "reference": ("b.png", _png_bytes(seed=2), "image/png")})
    assert r.status_code == 200 and pipe.calls[-1][1] == (1, 3, 32, 32)
    r = _post(c, image=_png_bytes(), lifespan="on", gender="male", aligned="on")
    assert r.status_code == 200 and pipe.calls[-1] == ("lifespan", "male")
    assert len(r.headers["X-Pada-Labels"].split("|")) == 7


@pytest.mark.parametrize("fields,needle", [
    ({"target": "old\nface"}, "one line"),
    ({"target": "x" * 201}, "longer than 200"),
    ({"target": "x", "n": "99"}, "n must be between 1 and 8"),
    ({"target": "x", "n": "two"}, "n must be a whole number"),
    ({"age": "ninety"}, "age"),
    ({"age": "10,20,30,40,50"}, "at most 4 target ages"),
    ({}, "give a target"),
    ({"target": "x", "gender": "robot"}, "gender must be"),
])
def test_bad_fields_give_400_with_one_line(fields, needle):
    c, _ = _client()
    r = _post(c, image=_png_bytes(), aligned="on", **fields)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain")
    assert needle in r.text and len(r.text.strip().splitlines()) == 1 and "Traceback" not in r.text


def test_bad_uploads_give_400_and_limits():
    c, _ = _client(max_upload_mb=0.5, limits=ServiceLimits(max_pixels=100 * 100))
    r = _post(c, image=b"hello", name="notes.txt", target="x")
    assert r.status_code == 400 and r.text.startswith("notes.txt: ")
    r = _post(c, target="x")
    assert r.status_code == 400 and "no photo" in r.text
    assert _post(c, image=_png_bytes(size=128), name="big.png", target="x", aligned="on").status_code == 400
    assert "over the limit" in _post(c, image=_png_bytes(size=128), target="x", aligned="on").text
    r = _post(c, image=b"\0" * 600_000, target="x")  # over the 0.5 MB request limit
    assert r.status_code == 413 and "limit is 0.5 MB" in r.text
    blank = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(blank, format="PNG")
    r = _post(c, image=blank.getvalue(), name="wall.png", target="x")
    assert r.status_code == 400 and r.text.startswith("wall.png: no face found")
    assert c.get("/healthz").text == "ok\n"


def test_internal_error_is_500_without_traceback():
    class Broken(FakePipeline):
        def age(self, *a, **k):
            raise ZeroDivisionError("boom")

    c, _ = _client(Broken())
    r = _post(c, image=_png_bytes(), target="x", aligned="on")
    assert r.status_code == 500 and "ZeroDivisionError" in r.text and "boom" not in r.text


def test_queue_bound_answers_503_with_retry_after():
    """max_queue jobs in flight: the next request is refused at once (503 + Retry-After), the admitted
    ones finish, and the model is never run by two threads at once."""
    pipe = FakePipeline(delay=0.4)
    c, _ = _client(pipe, limits=ServiceLimits(max_queue=2))
    results = []

    def one(i):
        results.append(_post(c, image=_png_bytes(seed=i), target=f"face {i}", seed=i, n=1, aligned="on"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    while c.app.state.pada_service.in_flight < 2 and time.time() < deadline:
        time.sleep(0.01)
    busy = _post(c, image=_png_bytes(), target="late", aligned="on")
    for t in threads:
        t.join(timeout=30)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "10" and "busy" in busy.text
    assert sorted(r.status_code for r in results) == [200, 200]
    assert pipe.max_active == 1
    assert _post(c, image=_png_bytes(), target="after", aligned="on").status_code == 200  # slots freed
    # a request's pixels depend only on its own inputs and seed, not on the interleaving
    alone = _post(_client()[0], image=_png_bytes(seed=1), target="face 1", seed=1, n=1, aligned="on")
    assert alone.content in [r.content for r in results]


def test_fake_matches_the_real_pipeline_signature():
    """The app calls AgingPipeline.age / lifespan / infer_gender with names the real class accepts."""
    import inspect

    from pada.aging.pipeline import AgingPipeline

    age = inspect.signature(AgingPipeline.age).parameters
    for name in ("text", "ref", "n", "seed", "high_diversity", "low_diversity"):
        assert name in age and age[name].kind == inspect.Parameter.KEYWORD_ONLY, name
    assert "gender" in inspect.signature(AgingPipeline.lifespan).parameters
    assert callable(AgingPipeline.infer_gender)


def test_image_size_is_read_from_the_diffae_config():
    import types

    from pada.app.service import image_size_of

    pipe = types.SimpleNamespace(diffae=types.SimpleNamespace(config=types.SimpleNamespace(image_size=128)))
    assert image_size_of(pipe) == 128
    with pytest.raises(TypeError):
        image_size_of(object())


def test_app_cli_reports_bad_options_in_one_line(capsys):
    from pada.cli.main import main

    assert main(["app", "--model", "/nonexistent/pada.safetensors"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: /nonexistent/pada.safetensors") and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exc:  # an option error (argparse): one line, status 2
        main(["app", "--port", "70000"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--port" in err and len(err.splitlines()) == 1


def test_app_cli_passes_the_sampler_and_steps_to_the_pipeline(monkeypatch, capsys):
    import pada.cli.age as age_cli
    from pada.cli.main import main
    from pada.errors import PadaError

    seen = []

    def fake(model, device, steps, trust_pickle=False, sampler="multistep"):
        seen.append((steps, sampler))
        raise PadaError("stop here")  # before binding a port

    monkeypatch.setattr(age_cli, "load_pipeline", fake)
    assert main(["app", "--device", "cpu"]) == 1
    assert main(["app", "--device", "cpu", "--sampler", "ddim", "--steps", "25"]) == 1
    assert seen == [(None, "multistep"), (25, "ddim")]  # None: the sampler's own default steps
    assert capsys.readouterr().err.strip().endswith("stop here")


def test_ui_page_is_served_without_external_assets():
    """The Gradio page and its config: served from this app, no CDN / Google Fonts links."""
    c, _ = _client(ui=True)
    page = c.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    for bad in ("fonts.googleapis.com", "cdn.jsdelivr", "unpkg.com", "googletagmanager", "api.gradio.app"):
        assert bad not in page.text
    assert c.get("/healthz").status_code == 200


def test_real_tiny_pipeline_behind_the_app():
    """The app around a real AgingPipeline (random tiny DiffAE / VL / PADA model): age and lifespan."""
    from pada.aging.pipeline import AgingPipeline
    from pada.aging.testing import TinyVL
    from test_aging_helpers import tiny_diffae, tiny_model  # tests/ is on sys.path under pytest

    pipe = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(), steps=2)
    c, _ = _client(pipe)
    r = _post(c, image=_png_bytes(48), target="man's face in his sixties", n=2, seed=1, aligned="on")
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).size == _grid_size(1, 3)  # resized to the model's 32 px
    again = _post(c, image=_png_bytes(48), target="man's face in his sixties", n=2, seed=1, aligned="on")
    assert again.content == r.content  # same request, same seed -> same pixels
    r = _post(c, image=_png_bytes(48), age="70", n=1, aligned="on")  # gender from the VL model
    assert r.status_code == 200, r.text
    r = _post(c, image=_png_bytes(48), lifespan="on", aligned="on")
    assert r.status_code == 200
    labels = r.headers["X-Pada-Labels"].split("|")
    assert len(labels) == 7 and labels[-1].endswith("eighties")  # the 7 group anchors of the sweep


@pytest.mark.slow
def test_pada_app_with_no_arguments_serves_the_shipped_model():
    """`pada app` alone: the shipped default model, 127.0.0.1, the Gradio page and the API answer."""
    import os
    import re
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "pada.cli.main", "app", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        line = proc.stdout.readline()
        m = re.match(r"pada app: (http://127\.0\.0\.1:\d+/) +\(model pada-demo64, ", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        url = m.group(1)
        with urllib.request.urlopen(url, timeout=60) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        with urllib.request.urlopen(url + "healthz", timeout=30) as r:
            assert r.read() == b"ok\n"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
