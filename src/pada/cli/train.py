"""``pada train NAME [options]``: dispatch to a trainer's own ``main(argv)``.

Each trainer owns its argument parser, so ``pada train diffae --help`` shows that trainer's options and
tests can call ``main([...])`` directly.
"""

from __future__ import annotations

import argparse
import importlib

# trainer name -> "module:function" taking argv (list[str]) and returning an exit code
TRAINERS = {
    "diffae": ("pada.diffae.train:main", "train the DiffAE (semantic encoder + conditional UNet)"),
    "faceclip": ("pada.vl.train_faceclip:main", "train the offline FaceCLIP vision-language model"),
    "pada": ("pada.aging.train:main", "train PADA's age encoder and adaptive modulation"),
}


def _run(args: argparse.Namespace) -> int:
    target, _ = TRAINERS[args.trainer]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(list(args.rest)) or 0)


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (diffae, faceclip, pada)",
                       description="\n".join(f"  {k:9s} {v[1]}" for k, v in TRAINERS.items()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trainer", choices=sorted(TRAINERS))
    p.add_argument("rest", nargs=argparse.REMAINDER,
                   help="options of that trainer (see pada train NAME --help)")
    p.set_defaults(func=_run)
