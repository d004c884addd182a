"""``pada recipes [NAME]``: the training recipes (:mod:`pada.recipes`, one JSON file each).

* ``pada recipes [--trainer T]``: every recipe with its trainer and one-line description.
* ``pada recipes NAME``: the recipe's file and the ``pada train`` command it stands for (``--json``: the
  recipe with its ``base`` applied).
"""

from __future__ import annotations

import argparse
import importlib
import json

from pada import recipes
from pada.cli.train import TRAINERS


def trainer_parser(trainer: str) -> argparse.ArgumentParser:
    """The argument parser of ``pada train <trainer>`` (each trainer module's ``build_parser``)."""
    module = TRAINERS[trainer][0].split(":")[0]
    return importlib.import_module(module).build_parser()


def _run(args: argparse.Namespace) -> int:
    if args.name:
        recipe = recipes.load_recipe(args.name)
        if args.json:
            print(json.dumps(recipe.record(), indent=1))
            return 0
        print(f"# {recipe.name} ({recipe.path}): {recipe.description}")
        print(recipes.recipe_command(recipe, trainer_parser(recipe.trainer)))
        return 0
    found = recipes.list_recipes(args.trainer)
    width = max((len(r.name) for r in found), default=0)
    for r in found:
        print(f"{r.name:<{width}}  {r.trainer:<8}  {r.description}")
    print(f"{len(found)} recipes; use one with `pada train TRAINER --recipe NAME` (options given there win)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("recipes", help="list the training recipes (pada train ... --recipe NAME)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", help="show this recipe as a command line")
    p.add_argument("--trainer", choices=sorted(TRAINERS), help="only the recipes of this trainer")
    p.add_argument("--json", action="store_true", help="with NAME: the recipe's settings as JSON")
    p.set_defaults(func=_run)
