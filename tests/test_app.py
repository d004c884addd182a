"""Web app: happy path, bad input, size limit, concurrency — with a tiny fake pipeline injected."""

from __future__ import annotations

import io
import threading
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("flask")

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
    data = {k: str(v) for k, v in fields.items()}
    if image is not None:
        data["image"] = (io.BytesIO(image), name)
    return client.post(path, data=data, content_type="multipart/form-data")


@pytest.fixture
def app_and_pipe():
    pipe = FakePipeline()
    return create_app(pipe, max_upload_mb=0.5), pipe


def test_api_happy_path_returns_png_grid(app_and_pipe):
    app, pipe = app_and_pipe
    r = _post(app.test_client(), image=_png_bytes(), target="woman's face in her sixties", n=3, seed=5,
              aligned="on", high_level="off")
    assert r.status_code == 200 and r.mimetype == "image/png"
    grid = Image.open(io.BytesIO(r.data))
    grid.load()
    assert grid.size == (4 * (32 + 4) + 4, 32 + 8)  # source + 3 outputs, one row
    assert pipe.calls == [("woman's face in her sixties", None, 3, 5, False, True)]
    # the source sits at the left of the grid, unchanged (aligned upload of the right size)
    src = np.asarray(Image.open(io.BytesIO(_png_bytes())).convert("RGB"))
    assert np.array_equal(np.asarray(grid)[4:36, 4:36], src)
    r2 = _post(app.test_client(), "/api/age?format=gif", image=_png_bytes(), target="old", n=2, aligned="on")
    assert r2.status_code == 200 and r2.data[:6] in (b"GIF87a", b"GIF89a")
    assert Image.open(io.BytesIO(r2.data)).n_frames == 3  # the source then two outputs


def test_lifespan_reference_and_html_page(app_and_pipe):
    app, pipe = app_and_pipe
    c = app.test_client()
    r = _post(c, image=_png_bytes(), lifespan="on", n=2, aligned="on", gender="auto")
    assert r.status_code == 200 and pipe.calls == [("lifespan", None)]
    assert r.headers["X-Pada-Labels"].split("|") == [f"age {k}" for k in range(7)]  # the 7 anchors
    assert Image.open(io.BytesIO(r.data)).size == (8 * 36 + 4, 40)
    r = _post(c, "/api/age?format=gif", image=_png_bytes(), lifespan="on", aligned="on", gender="male")
    assert Image.open(io.BytesIO(r.data)).n_frames == 13 and pipe.calls[-1] == ("lifespan", "male")
    pipe.calls.clear()
    data = {"image": (io.BytesIO(_png_bytes()), "a.png"),
            "reference": (io.BytesIO(_png_bytes(48, 1)), "r.png"), "aligned": "on", "n": "1"}
    r = c.post("/api/age", data=data, content_type="multipart/form-data")
    assert r.status_code == 200 and pipe.calls[0][:2] == (None, (1, 3, 32, 32))  # reference as a face
    assert c.get("/").status_code == 200 and b"<form" in c.get("/").data
    r = _post(c, "/", image=_png_bytes(), target="a very old face", aligned="on", n=2)
    assert r.status_code == 200
    assert b"data:image/png;base64," in r.data and b"data:image/gif;base64," in r.data


def test_bad_upload_gives_400_with_one_line(app_and_pipe):
    app, pipe = app_and_pipe
    c = app.test_client()
    r = _post(c, image=b"this is not an image", name="holiday.jpg", target="old", aligned="on")
    assert r.status_code == 400 and r.mimetype == "text/plain"
    msg = r.get_data(as_text=True)
    assert msg.count("\n") == 1 and msg.startswith("holiday.jpg: ") and "Traceback" not in msg
    assert "pada-app-" not in msg  # the temporary file name is not shown
    # same through the HTML form: the message is in the page, escaped
    r = _post(c, "/", image=b"junk", name="<i>x.png", target="old", aligned="on")
    assert r.status_code == 400 and b"&lt;i&gt;x.png: " in r.data and b"<i>x" not in r.data
    for fields, needle in [({"target": "old", "n": "99"}, "n must be between 1 and 8"),
                           ({"target": "old", "seed": "abc"}, "seed must be a whole number"),
                           ({}, "give a target"),
                           ({"target": "old", "gender": "x"}, "gender must be")]:
        r = _post(c, image=_png_bytes(), aligned="on", **fields)
        assert r.status_code == 400 and needle in r.get_data(as_text=True), fields
    r = c.post("/api/age", data={"target": "old"}, content_type="multipart/form-data")
    assert r.status_code == 400 and "no photo uploaded" in r.get_data(as_text=True)
    assert pipe.calls == []


def test_upload_size_limit_gives_413(app_and_pipe):
    app, _ = app_and_pipe
    big = b"\x89PNG" + b"0" * (600 * 1024)
    r = _post(app.test_client(), image=big, target="old", aligned="on")
    assert r.status_code == 413 and "upload too large" in r.get_data(as_text=True)


def test_unaligned_photo_without_face_is_a_clear_400(app_and_pipe):
    from pada.errors import PadaError

    try:
        from pada.faces import default_detector

        default_detector()
    except PadaError as exc:  # YuNet weights not installed here
        pytest.skip(str(exc))
    app, _ = app_and_pipe
    r = _post(app.test_client(), image=_png_bytes(96), name="noise.png", target="old")
    assert r.status_code == 400 and r.get_data(as_text=True).startswith("noise.png: no face found")


def test_internal_error_is_500_without_traceback():
    class Broken(FakePipeline):
        def age(self, *a, **k):  # noqa: ARG002
            raise RuntimeError("secret internals")

    app = create_app(Broken())
    r = _post(app.test_client(), image=_png_bytes(), target="old", aligned="on")
    assert r.status_code == 500
    body = r.get_data(as_text=True)
    assert "RuntimeError" in body and "secret internals" not in body and "Traceback" not in body


def test_concurrent_requests_on_a_real_server_all_succeed():
    from werkzeug.serving import make_server

    pipe = FakePipeline(delay=0.05)
    app = create_app(pipe, limits=ServiceLimits(max_n=4))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    results, errors = {}, []

    def one(i):
        boundary = uuid.uuid4().hex
        parts = []
        for k, v in {"target": f"face {i}", "n": "2", "seed": str(i), "aligned": "on"}.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
            parts.append(f"{head}{v}\r\n".encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="f{i}.png"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + _png_bytes(seed=i) + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/age", data=b"".join(parts),
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                results[i] = (resp.status, resp.headers["Content-Type"], resp.read())
        except (urllib.error.URLError, OSError) as exc:
            errors.append(repr(exc))

    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        server.shutdown()
        th.join(timeout=10)
    assert not errors
    assert sorted(results) == list(range(6))
    for status, ctype, body in results.values():
        assert status == 200 and ctype == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
    assert pipe.max_active == 1  # the lock serialised the model
    assert sorted(c[3] for c in pipe.calls) == list(range(6))  # each request used its own seed
    # a request's pixels depend only on its own inputs and seed, not on the interleaving
    alone = _post(create_app(FakePipeline()).test_client(), image=_png_bytes(seed=3), name="f3.png",
                  target="face 3", n=2, seed=3, aligned="on")
    assert alone.data == results[3][2]


def test_fake_matches_the_real_pipeline_signature():
    """The app calls AgingPipeline.age / lifespan with keyword names that the real class accepts."""
    import inspect

    from pada.aging.pipeline import AgingPipeline

    age = inspect.signature(AgingPipeline.age).parameters
    for name in ("text", "ref", "n", "seed", "high_diversity", "low_diversity"):
        assert name in age and age[name].kind == inspect.Parameter.KEYWORD_ONLY, name
    assert "gender" in inspect.signature(AgingPipeline.lifespan).parameters


def test_image_size_is_read_from_the_diffae_config():
    import types

    from pada.app.service import image_size_of

    pipe = types.SimpleNamespace(diffae=types.SimpleNamespace(config=types.SimpleNamespace(image_size=128)))
    assert image_size_of(pipe) == 128
    with pytest.raises(TypeError):
        image_size_of(object())


def test_app_cli_reports_a_missing_model_in_one_line(capsys):
    from pada.cli.main import main

    assert main(["app", "--model", "/nonexistent/pada.safetensors"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: /nonexistent/pada.safetensors") and len(err.splitlines()) == 1


def test_real_tiny_pipeline_behind_the_app():
    """The app around a real AgingPipeline (random tiny DiffAE / VL / PADA model): age and lifespan."""
    pytest.importorskip("pada.diffae")
    from pada.aging.pipeline import AgingPipeline
    from pada.aging.testing import TinyVL
    from test_aging_helpers import tiny_diffae, tiny_model  # tests/ is on sys.path under pytest

    pipe = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(), steps=2)
    c = create_app(pipe).test_client()
    r = _post(c, image=_png_bytes(48), target="man's face in his sixties", n=2, seed=1, aligned="on")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert Image.open(io.BytesIO(r.data)).size == (3 * 36 + 4, 40)  # resized to the model's 32 px
    again = _post(c, image=_png_bytes(48), target="man's face in his sixties", n=2, seed=1, aligned="on")
    assert again.data == r.data  # same request, same seed -> same pixels
    r = _post(c, image=_png_bytes(48), lifespan="on", aligned="on")
    assert r.status_code == 200
    labels = r.headers["X-Pada-Labels"].split("|")
    assert len(labels) == 7 and labels[-1].endswith("eighties")  # the 7 group anchors of the sweep
    assert Image.open(io.BytesIO(r.data)).size == (8 * 36 + 4, 40)
