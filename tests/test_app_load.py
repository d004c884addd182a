"""Bounded load test of the web app (issue 12, item 7), small enough for CI.

The app's HTTP API (tiny random-weight model) runs in its own process on 127.0.0.1 with
``max_queue=2``. Twelve clients post at once, each a 20-megapixel PNG (small on the wire, 60 MB decoded;
no face in it, so an admitted request does a full decode and detection and gets 400). Checked: the server
stays up, requests beyond the queue get 503 with Retry-After, the peak resident size stays under idle +
1.5 GB (docs/app.md), and afterwards the resident size is back within 300 MB of idle.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
pytestmark = pytest.mark.slow

PEAK_BOUND_MB = 1536  # above the idle resident size
RETURN_BOUND_MB = 300  # after the burst, above idle

SERVER = r"""
import socket, sys
sys.path.insert(0, sys.argv[1])
import torch, uvicorn
torch.set_num_threads(1)
from pada.aging.pipeline import AgingPipeline
from pada.aging.testing import TinyVL
from pada.app import create_app
from pada.app.service import ServiceLimits
from test_aging_helpers import tiny_diffae, tiny_model
pipe = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(), steps=2)
app = create_app(pipe, limits=ServiceLimits(max_queue=2), max_upload_mb=10, ui=False)
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(64)
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="error")).run(sockets=[sock])
"""


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _big_png(w: int = 5000, h: int = 4000) -> bytes:
    img = np.full((h, w, 3), 120, np.uint8)
    img[::50] = 200  # some structure; compresses to a few hundred KB
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _post(url: str, body: bytes, timeout: float = 120) -> tuple[int, dict, bytes]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="target"\r\n\r\nold face\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + body + b"\r\n", f"--{boundary}--\r\n".encode()]
    req = urllib.request.Request(url, data=b"".join(parts),
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the resident size")
def test_app_under_load_keeps_memory_bounded_and_sheds_with_503():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = int(proc.stdout.readline().strip() or 0)
        assert port, proc.stderr.read()
        base = f"http://127.0.0.1:{port}"
        body = _big_png()
        # warm-up: one request (first use of the detector, code paths), then the idle level
        status, _, text = _post(base + "/api/age", body)
        assert status == 400 and b"no face found" in text, text
        time.sleep(0.5)
        idle, _ = _rss_mb(proc.pid)
        results: list[tuple[int, dict, bytes]] = []
        lock = threading.Lock()

        def client():
            r = _post(base + "/api/age", body)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=client) for _ in range(12)]
        t0 = time.time()
        for t in threads:
            t.start()
        peak = idle
        while any(t.is_alive() for t in threads):
            peak = max(peak, _rss_mb(proc.pid)[0])
            time.sleep(0.02)
        burst_s = time.time() - t0
        time.sleep(0.5)
        after, hwm = _rss_mb(proc.pid)
        peak = max(peak, hwm)  # the kernel's high-water mark also catches spikes between samples
        with urllib.request.urlopen(base + "/healthz", timeout=10) as r:
            assert r.read() == b"ok\n"  # still up
        codes = sorted(s for s, _, _ in results)
        print(f"\nload test: idle {idle:.0f} MB, peak {peak:.0f} MB (+{peak - idle:.0f}), "
              f"after {after:.0f} MB; statuses {codes}; burst {burst_s:.1f} s")
        assert len(results) == 12 and set(codes) <= {400, 503}, codes
        assert codes.count(503) >= 1 and codes.count(400) >= 1
        assert all(h.get("retry-after") == "10" for s, h, _ in results if s == 503)
        assert all(b"no face found" in b for s, _, b in results if s == 400)
        assert peak - idle < PEAK_BOUND_MB, (idle, peak)
        assert after - idle < RETURN_BOUND_MB, (idle, after)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
