"""The web app: a Gradio UI at ``/`` and a plain HTTP API at ``/api/age``, on one FastAPI server.

Routes:

* ``GET /`` -- the Gradio UI (upload or webcam photo; target text, ages or reference face; N, seed,
  diversity switches; lifespan; whole-photo paste-back; a gallery of labelled results, the grid to
  download and the animation). Gradio's own queue holds at most ``max_queue`` waiting jobs (beyond it
  Gradio answers "queue is full"); its API lives under ``/gradio_api/``.
* ``POST /api/age`` -- multipart form fields ``image`` (file, required), ``target``, ``age``
  (``70`` or ``30,70``), ``reference`` (file), ``n``, ``seed``, ``high_level`` / ``low_level`` (on/off),
  ``lifespan``, ``gender`` (auto/female/male), ``aligned``, ``paste_back``; answered with ``image/png``
  (the labelled grid; ``?format=gif`` for the animation, ``?format=photo`` for the first whole photo when
  ``paste_back=on``). Errors are one ``text/plain`` line: 400 bad input, 411 no Content-Length, 413 over the
  upload limit, 503 (with ``Retry-After``) when ``max_queue`` jobs are already in flight, 500 with the
  exception's class name only.
* ``GET /healthz`` -- ``ok``.

Nothing is fetched from the network at run time: Gradio's analytics and version check are off
(``GRADIO_ANALYTICS_ENABLED=False``), the theme's fonts are served by the app itself, and the server binds
127.0.0.1 unless told otherwise (``pada app --host``).
"""

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

# before gradio is imported anywhere: no analytics, no version check, no telemetry
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pada.app.service import AgingService, ServiceBusy, ServiceLimits  # noqa: E402
from pada.errors import PadaError  # noqa: E402

log = logging.getLogger(__name__)


def _require_web_stack(ui: bool = True):
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        if ui:
            import gradio  # noqa: F401
    except ImportError as exc:
        raise PadaError(f"the web app needs Gradio ({exc.name} is missing): pip install 'gradio>=5'") \
            from None


def _text(msg: str, status: int, headers: dict | None = None):
    from fastapi.responses import PlainTextResponse

    return PlainTextResponse(msg.splitlines()[0] + "\n", status_code=status, headers=headers)


def build_api(service: AgingService, max_upload_mb: float):
    """The FastAPI app with ``/api/age`` and ``/healthz`` (the Gradio UI is mounted on it by
    :func:`create_app`)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from starlette.concurrency import run_in_threadpool

    max_bytes = int(max_upload_mb * 1024 * 1024)
    api = FastAPI(title="pada", docs_url=None, redoc_url=None, openapi_url=None)

    @api.get("/healthz")
    def healthz():
        return _text("ok", 200)

    @api.post("/api/age")
    async def api_age(request: Request):
        length = request.headers.get("content-length")
        if length is None:
            return _text("send the upload with a Content-Length header", 411)
        if not length.isdigit() or int(length) > max_bytes:
            return _text(f"upload too large: the limit is {max_upload_mb:g} MB", 413)
        try:
            with service.admit():  # a slot before the body is parsed: waiting jobs hold only their bytes
                form = await request.form(max_files=2, max_fields=20, max_part_size=64 * 1024)
                try:
                    fields = {k: v for k, v in form.items() if isinstance(v, str)}
                    files = {}
                    for key in ("image", "reference"):
                        f = form.get(key)
                        if f is not None and not isinstance(f, str) and f.filename:
                            files[key] = (await f.read(), f.filename)
                finally:
                    await form.close()
                req = service.parse(fields, files.get("image"), files.get("reference"))
                result = await run_in_threadpool(service.run, req)
        except ServiceBusy as exc:
            return _text(str(exc), 503, {"Retry-After": str(exc.retry_after)})
        except PadaError as exc:
            return _text(str(exc), 400)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client; it goes to the log
            log.exception("request failed")
            return _text(f"internal error ({type(exc).__name__}); see the server log", 500)
        fmt = request.query_params.get("format", "png")
        if fmt == "gif":
            return Response(result.gif, media_type="image/gif")
        if fmt == "photo":
            if not result.photos:
                return _text("format=photo needs paste_back=on and a photo (not an aligned crop)", 400)
            return Response(result.photos[0][0], media_type="image/png")
        labels = "|".join(result.labels).encode("ascii", "replace").decode()
        return Response(result.png, media_type="image/png", headers={"X-Pada-Labels": labels})

    return api


def _prune(out_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` job folders (Gradio has copied their files into its own cache,
    which it cleans itself), so a long-running app does not fill the disk."""
    import shutil

    jobs = sorted(out_dir.glob("job-*"), key=lambda p: p.stat().st_mtime)
    for old in jobs[:-keep] if keep else jobs:
        shutil.rmtree(old, ignore_errors=True)


def build_ui(service: AgingService, model_name: str, out_dir: Path):
    """The Gradio Blocks UI around ``service``; result files are written under ``out_dir``."""
    import gradio as gr

    lim = service.limits

    def run(photo, aligned, target, ages, reference, n, seed, high, low, lifespan, gender, paste_back):
        if not photo:
            raise gr.Error("no photo: upload one or take one with the webcam")
        try:
            with open(photo, "rb") as fh:
                image = (fh.read(), os.path.basename(photo))
            ref = None
            if reference:
                with open(reference, "rb") as fh:
                    ref = (fh.read(), os.path.basename(reference))
            form = {"target": target or "", "age": ages or "", "n": str(int(n)), "seed": str(int(seed or 0)),
                    "high_level": "on" if high else "off", "low_level": "on" if low else "off",
                    "lifespan": "on" if lifespan else "off", "gender": gender or "auto",
                    "aligned": "on" if aligned else "off", "paste_back": "on" if paste_back else "off"}
            with service.admit():
                result = service.run(service.parse(form, image, ref))
        except ServiceBusy as exc:
            raise gr.Error(str(exc)) from None
        except PadaError as exc:
            raise gr.Error(str(exc).splitlines()[0]) from None
        _prune(out_dir, keep=8)
        job = Path(tempfile.mkdtemp(prefix="job-", dir=out_dir))
        grid = job / "pada_grid.png"
        grid.write_bytes(result.png)
        gif = job / "pada_aging.gif"
        gif.write_bytes(result.gif)
        gallery = []
        for k, (png, caption) in enumerate(result.photos + result.images):
            p = job / f"result_{k}.png"
            p.write_bytes(png)
            gallery.append((str(p), caption))
        return gallery, str(grid), str(gif), str(grid)

    with gr.Blocks(title="PADA face aging", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"## PADA: pluralistic face aging\nModel: `{model_name}`. Photos are processed on this "
                    "machine and not kept.")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(label="Photo", sources=["upload", "webcam"], type="filepath",
                                 image_mode=None, elem_id="photo")
                aligned = gr.Checkbox(label="already aligned (FFHQ crop)", value=False)
                target = gr.Textbox(label="Target description", placeholder="man's face in his sixties",
                                    max_lines=1, elem_id="target")
                ages = gr.Textbox(label="or target ages (years, comma-separated)", placeholder="70 or 30,70",
                                  max_lines=1, elem_id="ages")
                reference = gr.Image(label="or reference face", sources=["upload"], type="filepath",
                                     image_mode=None)
                with gr.Row():
                    n = gr.Slider(1, lim.max_n, value=min(4, lim.max_n), step=1, label="N results")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="seed")
                high = gr.Checkbox(label="high-level diversity (aging embedding)", value=True)
                low = gr.Checkbox(label="low-level diversity (fine detail drawn anew)", value=False)
                paste_back = gr.Checkbox(label="whole photo: blend the aged face back in", value=False)
                lifespan = gr.Checkbox(label="lifespan sweep (child to old; ignores N, seed, diversity)")
                gender = gr.Radio(["auto", "female", "male"], value="auto",
                                  label="gender (for target ages and the lifespan)")
                go = gr.Button("Age", variant="primary", elem_id="age-button")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Results", columns=4, object_fit="contain", elem_id="results")
                grid = gr.Image(label="Grid", type="filepath", elem_id="grid")
                gif = gr.Image(label="Animation", type="filepath")
                download = gr.File(label="Download the grid")
        go.click(run, [photo, aligned, target, ages, reference, n, seed, high, low, lifespan, gender,
                       paste_back], [gallery, grid, gif, download], api_name="age", concurrency_limit=1)
    demo.queue(max_size=lim.max_queue, default_concurrency_limit=1)
    return demo


def create_app(pipeline: Any, *, max_upload_mb: float = 10.0, limits: "ServiceLimits | None" = None,
               model_name: str = "custom pipeline", ui: bool = True, out_size: int = 256):
    """Build the FastAPI app (``/api/age``, ``/healthz``, and the Gradio UI at ``/`` when ``ui``).

    ``max_upload_mb`` caps each request body (API) and each uploaded file (UI); ``limits`` bounds N, text
    length, decoded pixels per image and the number of jobs in flight (:class:`ServiceLimits`);
    ``out_size``: side of the faces shown (the edit carried onto the photo's crop, as
    ``pada age --out-size``).
    """
    _require_web_stack(ui)
    service = AgingService(pipeline, limits=limits, out_size=out_size)
    app = build_api(service, max_upload_mb)
    app.state.pada_service = service
    if ui:
        import gradio as gr

        out_dir = Path(tempfile.mkdtemp(prefix="pada-app-"))
        demo = build_ui(service, model_name, out_dir)
        app = gr.mount_gradio_app(app, demo, path="/", max_file_size=f"{max_upload_mb:g}mb",
                                  allowed_paths=[str(out_dir)], footer_links=[], show_error=True,
                                  ssr_mode=False, mcp_server=False, enable_monitoring=False, pwa=False)
        app.state.pada_service = service
    return app
