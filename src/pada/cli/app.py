"""``pada app [--model PATH] [--host 127.0.0.1] [--port 7860]``: serve the web UI (docs/app.md).

Loads the PADA pipeline once (``AgingPipeline.from_pretrained``), then serves the Flask app with a
threaded WSGI server. Binds to 127.0.0.1 unless ``--host`` says otherwise: the app has no login, so
exposing it on a network is the user's explicit choice.
"""

from __future__ import annotations

import argparse
import sys

from pada.errors import PadaError
from pada.validation import LIMITS, float_option, int_option


def _serve(args: argparse.Namespace) -> int:
    try:
        import flask  # noqa: F401
    except ImportError:
        raise PadaError("the web app needs Flask: pip install 'flask>=3,<4'") from None
    from werkzeug.serving import make_server

    from pada.aging.pipeline import AgingPipeline
    from pada.app.server import create_app
    from pada.app.service import ServiceLimits

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline = AgingPipeline.from_pretrained(args.model, device=device, steps=args.steps,
                                             trust_pickle=args.trust_pickle)
    app = create_app(pipeline, max_upload_mb=args.max_upload_mb, limits=ServiceLimits(max_n=args.max_n),
                     model_name=str(args.model))
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as exc:
        raise PadaError(f"{args.host}:{args.port}: cannot listen ({exc.strerror or exc})") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this address can use the app",
              file=sys.stderr)
    print(f"pada app: http://{args.host}:{server.server_port}/  (model {args.model}, {device}); Ctrl-C stops",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="web UI: upload a photo, get pluralistic aging results",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="PADA model file (.safetensors) or registry name")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int_option(0, 65535), default=7860,
                   help="port (default 7860; 0 picks a free one)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--steps", type=int_option(1, LIMITS["steps"]), default=25,
                   help="DDIM steps T (paper: 25)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a DiffAE checkpoint that needs unpickling (only files you trust)")
    p.add_argument("--max-n", type=int_option(1, LIMITS["n"]), default=8,
                   help="largest N a request may ask for (default 8)")
    p.add_argument("--max-upload-mb", type=float_option(0.0, 1000.0, lo_open=True), default=10.0,
                   help="request size limit in MB (default 10)")
    p.set_defaults(func=_serve)
