"""Flask web app: upload a photo, describe a target age (or upload a reference), get the aging grid.

Routes:

* ``GET /`` — the form; ``POST /`` — the form's submission, answered with the page showing the grid (PNG)
  and the animation (GIF) inline, or the error message (HTTP 400).
* ``POST /api/age`` — same fields, answered with ``image/png`` (``?format=gif`` for the GIF); errors are
  ``text/plain`` one-liners with HTTP 400 (413 for an upload over the size limit).
* ``GET /healthz`` — ``ok``.

Form fields: ``image`` (file, required), ``target`` (text), ``reference`` (file), ``n`` (1..max_n),
``seed``, ``high_level`` / ``low_level`` (on/off: diversity from the probabilistic aging embedding /
from fresh DDIM noise), ``lifespan`` (on: the pipeline's child-to-old sweep instead; it ignores N, seed
and the diversity switches), ``gender`` (female/male/auto, for the lifespan descriptions), ``aligned``
(on: the upload is already an FFHQ-aligned crop). Text and reference together are both used.

Why Flask: multipart parsing, an upload size limit and a test client come with it (the stdlib's ``cgi``
module is gone from Python 3.13). It is only imported by ``pada.app``, never by the library.
"""

from __future__ import annotations

import base64
import logging

from flask import Flask, Response, render_template_string, request
from werkzeug.exceptions import RequestEntityTooLarge

from pada.app.service import AgingService, ServiceLimits
from pada.errors import PadaError

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PADA face aging</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
 fieldset{border:1px solid #ccc;border-radius:6px;margin:0 0 1em 0}
 label{display:inline-block;margin:.3em 1em .3em 0}
 input[type=text]{width:28em}
 .err{background:#fde8e8;border:1px solid #e0a0a0;padding:.6em 1em;border-radius:6px}
 img{max-width:100%;border:1px solid #ddd}
 small{color:#666}
</style></head><body>
<h1>PADA: pluralistic face aging</h1>
<p><small>Model: {{ model_name }}. Images are processed in memory and not stored.</small></p>
{% if error %}<p class="err" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="/" enctype="multipart/form-data">
<fieldset><legend>Photo</legend>
 <input type="file" name="image" accept="image/*" required>
 <label><input type="checkbox" name="aligned" value="on" {{ 'checked' if f.aligned }}> already aligned
 (FFHQ crop)</label>
</fieldset>
<fieldset><legend>Target</legend>
 <label>Description <input type="text" name="target" value="{{ f.target }}"
   placeholder="man's face in his sixties"></label><br>
 <label>or reference photo <input type="file" name="reference" accept="image/*"></label><br>
 <label><input type="checkbox" name="lifespan" value="on" {{ 'checked' if f.lifespan }}> lifespan
 (child-to-old sweep; ignores N, seed and diversity)</label>
 <label>gender for lifespan <select name="gender">
  {% for g in ['auto', 'female', 'male'] %}
  <option {{ 'selected' if f.gender == g }}>{{ g }}</option>{% endfor %}
 </select></label>
</fieldset>
<fieldset><legend>Sampling</legend>
 <label>N <input type="number" name="n" min="1" max="{{ max_n }}" value="{{ f.n }}"></label>
 <label>seed <input type="number" name="seed" min="0" value="{{ f.seed }}"></label>
 <input type="hidden" name="high_level" value="off">
 <label><input type="checkbox" name="high_level" value="on" {{ 'checked' if f.high_level }}>
 high-level diversity (aging embedding)</label>
 <input type="hidden" name="low_level" value="off">
 <label><input type="checkbox" name="low_level" value="on" {{ 'checked' if f.low_level }}>
 low-level diversity (DDIM noise)</label>
</fieldset>
<button type="submit">Age</button>
</form>
{% if png %}
<h2>Result</h2>
<p><img alt="aging grid" src="data:image/png;base64,{{ png }}"></p>
<p><img alt="aging animation" src="data:image/gif;base64,{{ gif }}"></p>
{% endif %}
</body></html>
"""

_DEFAULTS = {"target": "", "aligned": False, "lifespan": False, "gender": "auto", "n": 4, "seed": 0,
             "high_level": True, "low_level": True}


def _form_echo(form) -> dict:
    """Values to put back into the form (escaped by Jinja); unknown / odd values fall back to defaults."""
    f = dict(_DEFAULTS)
    f["target"] = str(form.get("target", ""))[:200]
    for k in ("aligned", "lifespan", "high_level", "low_level"):
        vals = form.getlist(k) if hasattr(form, "getlist") else [form.get(k)]
        if any(v is not None for v in vals):
            f[k] = "on" in vals
    f["gender"] = form.get("gender", "auto") if form.get("gender") in ("auto", "female", "male") else "auto"
    for k in ("n", "seed"):
        v = str(form.get(k, "")).strip()
        f[k] = int(v) if v.isdigit() else _DEFAULTS[k]
    return f


def _fields(form) -> dict:
    """Flatten multi-valued checkbox fields (hidden 'off' + checkbox 'on' -> 'on')."""
    out = {}
    for k in form:
        vals = form.getlist(k)
        out[k] = "on" if "on" in vals else vals[-1]
    return out


def _file(name: str):
    f = request.files.get(name)
    if f is None or not f.filename:
        return None
    return f.read(), f.filename


def create_app(pipeline, *, max_upload_mb: float = 10.0, limits: ServiceLimits | None = None,
               model_name: str = "custom pipeline") -> Flask:
    """Build the Flask app around ``pipeline`` (see :mod:`pada.app.service` for the interface).

    ``max_upload_mb`` caps the whole request body (photo + reference); larger requests get HTTP 413.
    """
    service = AgingService(pipeline, limits=limits)
    app = Flask("pada.app")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    app.extensions["pada_service"] = service
    lim = service.limits

    def page(status: int = 200, **kw) -> Response:
        html = render_template_string(PAGE, model_name=model_name, max_n=lim.max_n,
                                      f=kw.pop("f", _DEFAULTS), **kw)
        return Response(html, status=status, mimetype="text/html")

    def handle():
        req = service.parse(_fields(request.form), _file("image"), _file("reference"))
        return service.run(req)

    @app.get("/")
    def index():
        return page()

    @app.post("/")
    def submit():
        try:
            result = handle()
        except RequestEntityTooLarge:
            return page(413, error=f"upload too large: the limit is {max_upload_mb:g} MB")
        except PadaError as exc:
            return page(400, error=str(exc), f=_form_echo(request.form))
        return page(png=base64.b64encode(result.png).decode(), gif=base64.b64encode(result.gif).decode(),
                    f=_form_echo(request.form))

    @app.post("/api/age")
    def api_age():
        try:
            result = handle()
        except RequestEntityTooLarge:
            msg = f"upload too large: the limit is {max_upload_mb:g} MB\n"
            return Response(msg, 413, mimetype="text/plain")
        except PadaError as exc:
            return Response(str(exc).splitlines()[0] + "\n", 400, mimetype="text/plain")
        if request.args.get("format", "png") == "gif":
            return Response(result.gif, mimetype="image/gif")
        labels = "|".join(result.labels).encode("ascii", "replace").decode()
        return Response(result.png, mimetype="image/png", headers={"X-Pada-Labels": labels})

    @app.get("/healthz")
    def healthz():
        return Response("ok\n", mimetype="text/plain")

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        msg = f"upload too large: the limit is {max_upload_mb:g} MB"
        if request.path.startswith("/api/"):
            return Response(msg + "\n", 413, mimetype="text/plain")
        return page(413, error=msg)

    @app.errorhandler(Exception)
    def internal(exc):  # never show a traceback to the browser; log it on the server
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return exc
        log.exception("request failed")
        msg = f"internal error ({type(exc).__name__}); see the server log"
        if request.path.startswith("/api/"):
            return Response(msg + "\n", 500, mimetype="text/plain")
        return page(500, error=msg)

    return app
