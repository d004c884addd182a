"""``pada weights list|verify|path``: the registry of weight files (:mod:`pada.weights`).

* ``pada weights list [--json]``: every registered file, where it resolves on this machine (or the
  one-line how-to-get when it is missing), and its licence.
* ``pada weights verify [NAME ...]``: recompute the sha256 of every file found (or of the named ones) and
  compare with the registry; exit status 1 on a mismatch, or when a named file is missing.
* ``pada weights path NAME``: print the resolved path (no hashing), or ``error: ...`` with how to get it.
"""

from __future__ import annotations

import argparse
import json
import sys

from pada import weights as wreg
from pada.errors import MissingWeightsError


def _where(entry: wreg.WeightFile):
    """First existing candidate path of ``entry`` or None (no hashing)."""
    for p in wreg.candidates(entry):
        if p.is_file():
            return p
    return None


def _list(args: argparse.Namespace) -> int:
    reg = wreg.registry()
    rows = []
    for name, e in sorted(reg.items()):
        p = _where(e)
        rows.append({"name": name, "filename": e.filename, "found": p is not None,
                     "path": str(p) if p else None, "sha256": e.sha256, "licence": e.licence,
                     "how_to_get": e.how_to_get})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("(the weights registry is empty)")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        status = r["path"] if r["found"] else f"MISSING - {r['how_to_get']}"
        print(f"{r['name']:<{width}}  {status}")
    n_found = sum(r["found"] for r in rows)
    print(f"{n_found}/{len(rows)} weight files found on this machine")
    return 0


def _verify(args: argparse.Namespace) -> int:
    reg = wreg.registry()
    names = list(args.names) or sorted(reg)
    bad = 0
    for name in names:
        e = wreg.get(name)  # unknown name -> PadaError listing the known ones
        p = _where(e)
        if p is None:
            print(f"{name}: missing - {e.how_to_get}")
            bad += bool(args.names)  # only a file the user asked for counts as a failure
            continue
        digest = wreg.sha256_file(p)
        if e.sha256 is None:
            print(f"{name}: {p} sha256 {digest} (no reference hash in the registry)")
        elif digest == e.sha256:
            print(f"{name}: {p} OK")
        else:
            print(f"{name}: {p} MISMATCH sha256 {digest[:16]}... expected {e.sha256[:16]}...")
            bad += 1
    if bad:
        print(f"{bad} problem(s)", file=sys.stderr)
    return 1 if bad else 0


def _path(args: argparse.Namespace) -> int:
    e = wreg.get(args.name)
    p = _where(e)
    if p is None:
        tried = ", ".join(str(c) for c in wreg.candidates(e)) or "(no location)"
        raise MissingWeightsError(f"{e.filename}: weights for {e.name!r} not found (looked in {tried}). "
                                  f"{e.how_to_get}")
    print(p)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="list, locate and verify weight files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="weights_command", metavar="ACTION")
    pl = s.add_parser("list", help="every registered weight file and where it resolves")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pl.set_defaults(func=_list)
    pv = s.add_parser("verify", help="check sha256 of found files (all, or the named ones)")
    pv.add_argument("names", nargs="*", metavar="NAME")
    pv.set_defaults(func=_verify)
    pp = s.add_parser("path", help="print where a weight file resolves")
    pp.add_argument("name", metavar="NAME")
    pp.set_defaults(func=_path)

    def _help(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_help)

