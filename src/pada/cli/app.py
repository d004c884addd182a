"""``pada app [--model NAME|PATH] [--host 127.0.0.1] [--port 7860]``: serve the web UI (docs/app.md).

Loads the PADA pipeline once (``AgingPipeline.from_pretrained``; default: the shipped model), then serves
the Gradio UI at ``/`` and the HTTP API at ``/api/age`` with uvicorn. Binds to 127.0.0.1 unless ``--host``
says otherwise: the app has no login, so exposing it on a network is the user's explicit choice. Nothing is
fetched from the network at run time (no analytics, no update check, fonts served locally).
"""

from __future__ import annotations

import argparse
import socket
import sys

from pada.cli.age import DEFAULT_MODEL, SAMPLER_CHOICES, SAMPLER_HELP
from pada.errors import PadaError
from pada.validation import LIMITS, float_option, int_option


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PadaError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise PadaError(f"{host}:{port}: cannot listen ({exc.strerror or exc})") from None
    sock.listen(128)
    return sock


def _serve(args: argparse.Namespace) -> int:
    from pada.app.server import _require_web_stack

    _require_web_stack()
    import uvicorn

    from pada.app.server import create_app
    from pada.app.service import ServiceLimits
    from pada.cli.age import load_pipeline, pick_device

    device = pick_device(args.device)
    pipeline = load_pipeline(args.model, device, args.steps, trust_pickle=args.trust_pickle,
                             sampler=args.sampler)
    limits = ServiceLimits(max_n=args.max_n, max_queue=args.max_queue,
                           max_pixels=int(args.max_megapixels * 1e6))
    size = int(pipeline.diffae.unet.config.image_size)
    if args.out_size < size:
        raise PadaError(f"--out-size {args.out_size}: must be at least the model's face size ({size} px)")
    app = create_app(pipeline, max_upload_mb=args.max_upload_mb, limits=limits, model_name=str(args.model),
                     out_size=args.out_size)
    sock = _bind(args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this address can use the app",
              file=sys.stderr)
    port = sock.getsockname()[1]
    print(f"pada app: http://{args.host}:{port}/  (model {args.model}, {device}); Ctrl-C stops", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="web UI (Gradio) and HTTP API: upload a photo, get aging results",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"PADA model file (.safetensors) or registry name (default {DEFAULT_MODEL})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int_option(0, 65535), default=7860,
                   help="port (default 7860; 0 picks a free one)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, default=SAMPLER_CHOICES[0], help=SAMPLER_HELP)
    p.add_argument("--steps", type=int_option(1, LIMITS["steps"]), default=None,
                   help="sampler steps T (default: the sampler's, multistep 8 / ddim 25)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a DiffAE checkpoint that needs unpickling (only files you trust)")
    p.add_argument("--max-n", type=int_option(1, LIMITS["n"]), default=8,
                   help="largest N a request may ask for (default 8)")
    p.add_argument("--max-queue", type=int_option(1, 1024), default=4,
                   help="jobs admitted at once, running or waiting (default 4); more get HTTP 503")
    p.add_argument("--max-upload-mb", type=float_option(0.0, 1000.0, lo_open=True), default=10.0,
                   help="request size limit in MB (default 10)")
    p.add_argument("--max-megapixels", type=float_option(0.0, LIMITS["megapixels"], lo_open=True),
                   default=25.0,
                   help="largest decoded image per upload, in megapixels (default 25)")
    p.add_argument("--out-size", type=int_option(16, LIMITS["out_size"]), default=256, metavar="S",
                   help="side of the faces shown, as pada age --out-size (default 256; the model's size "
                        "shows its own outputs)")
    p.set_defaults(func=_serve)
