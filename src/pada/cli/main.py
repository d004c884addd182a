"""Entry point of the ``pada`` command.

Each sub-command lives in its own module ``pada.cli.<name>`` that defines ``add_parser(subparsers)``
(register the sub-command and its options, set ``func``) . This file only wires them together and turns a
:class:`~pada.errors.PadaError` into one ``error: ...`` line and exit status 1. Option errors (argparse)
are one ``error: ...`` line too, with exit status 2 (:class:`pada.validation.ArgumentParser`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pada import __version__
from pada.errors import PadaError, one_line
from pada.validation import ArgumentParser

# Sub-command modules in the order `pada --help` lists them.
# Every name here must have its module: a missing one is an ImportError, not a silently absent command.
COMMAND_MODULES = ("age", "align", "label", "data", "train", "recipes", "evaluate", "app", "weights")


def build_parser() -> argparse.ArgumentParser:
    # One-line errors (``error: pada age: argument -n/--num: ...``), inherited by every sub-command.
    parser = ArgumentParser(prog="pada",
                                     description="PADA: pluralistic face aging with diffusion autoencoders")
    parser.add_argument("--version", action="version", version=f"pada {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"pada.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PadaError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:  # the environment (disk, permissions) rather than pada: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {one_line(where + (exc.strerror or str(exc) or type(exc).__name__))}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if type(exc).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
            raise
        print("error: the GPU ran out of memory; ask for less at once (smaller -n or --batch-size)",
              file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory; ask for less at once (smaller -n, --batch-size or images)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
