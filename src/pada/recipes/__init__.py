"""Training recipes as data: one JSON file per recipe in this folder, used as ``pada train NAME --recipe R``.

A recipe file ``<name>.json``::

    {
      "name": "diffae-demo64-1b",          the file's name
      "trainer": "diffae",                 the `pada train` trainer it is for (diffae, faceclip, pada)
      "description": "one line: what this stage does and why",
      "base": "diffae-demo64-1a",          optional: start from that recipe's settings
      "settings": {"preset": "pada64", "batch_size": 32, "model_set": ["prediction=v"], "no_progress": true}
    }

``settings`` are the trainer's own command-line options, spelled without the leading dashes (``batch_size``
or ``batch-size`` for ``--batch-size``): a value for an option that takes one, ``true`` / ``false`` for a
switch, a list for a repeatable option (``set``, ``model_set``, ``pada_set``, ``loss_set``, ``without``).
They become command-line words placed *before* the ones typed, so the trainer's parser reads them like typed
options and a typed option wins: a single-valued one by coming last, a repeatable ``KEY=VALUE`` one by
coming after the recipe's entries (the later entry of a key wins). A switch a recipe turns on stays on.
With ``base``, the settings are the base's updated by the recipe's own (lists: the base's entries, then
the recipe's).

Each trainer records the recipe (name, trainer and resolved settings) with the weights it exports, and the
registry entry of a shipped weight file names the recipes that made it (``recipe.recipes``).
``pada recipes`` lists them; ``pada recipes NAME`` prints the command a recipe stands for.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pada.errors import PadaError

RECIPE_DIR = Path(__file__).resolve().parent
_KEYS = {"name", "trainer", "description", "base", "settings"}
_NOT_SETTINGS = {"help", "recipe"}  # options a recipe may not set


@dataclass(frozen=True)
class Recipe:
    """A training recipe with its ``base`` already applied (``settings`` are the full set)."""

    name: str
    trainer: str
    description: str
    settings: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def record(self) -> dict[str, Any]:
        """What a trainer stores with its weights: name, trainer and the resolved settings."""
        return {"name": self.name, "trainer": self.trainer, "settings": self.settings}


def recipe_names() -> list[str]:
    """The shipped recipes' names in natural order (``pada-demo64-v9`` before ``pada-demo64-v10``)."""
    def key(name: str) -> list:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    return sorted((p.stem for p in RECIPE_DIR.glob("*.json")), key=key)


def list_recipes(trainer: str | None = None) -> list[Recipe]:
    """Every shipped recipe (of ``trainer``, if given), by name."""
    found = [load_recipe(n) for n in recipe_names()]
    return [r for r in found if trainer is None or r.trainer == trainer]


def _read(name_or_path: str) -> tuple[dict[str, Any], Path]:
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = RECIPE_DIR / f"{name_or_path}.json"
        if "/" in name_or_path or not path.is_file():
            raise PadaError(f"recipe {name_or_path!r}: no such recipe (a name of `pada recipes` or a .json "
                            f"file); known: {', '.join(recipe_names())}")
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise PadaError(f"recipe {path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PadaError(f"recipe {path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PadaError(f"recipe {path}: expected a JSON object with {', '.join(sorted(_KEYS))}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise PadaError(f"recipe {path}: unknown field(s) {unknown}; known: {', '.join(sorted(_KEYS))}")
    if not isinstance(raw.get("trainer"), str) or not isinstance(raw.get("settings", {}), dict):
        raise PadaError(f"recipe {path}: needs \"trainer\" (a name) and \"settings\" (an object)")
    return raw, path


def load_recipe(name_or_path: str, _seen: tuple[str, ...] = ()) -> Recipe:
    """The recipe ``name_or_path`` (a shipped name or a ``.json`` file), its ``base`` applied.
    One-line :class:`~pada.errors.PadaError` for an unknown name or a malformed file."""
    raw, path = _read(name_or_path)
    name = str(raw.get("name") or path.stem)
    settings = {k.replace("-", "_"): v for k, v in raw.get("settings", {}).items()}
    base = raw.get("base")
    if base:
        if base in _seen or base == name:
            raise PadaError(f"recipe {name}: its bases form a cycle ({' -> '.join((*_seen, name, base))})")
        parent = load_recipe(str(base), (*_seen, name))
        if parent.trainer != raw["trainer"]:
            raise PadaError(f"recipe {name}: base {base} is for `pada train {parent.trainer}`, "
                            f"not {raw['trainer']}")
        merged = dict(parent.settings)
        for key, value in settings.items():
            old = merged.get(key)
            merged[key] = [*old, *value] if isinstance(old, list) and isinstance(value, list) else value
        settings = merged
    return Recipe(name, raw["trainer"], str(raw.get("description", "")), settings, path)


# ------------------------------------------------------------------------------------- to command line
def add_recipe_argument(parser: argparse.ArgumentParser) -> None:
    """``--recipe NAME`` on a trainer's parser (read by :func:`parse_with_recipe`)."""
    parser.add_argument("--recipe", metavar="NAME", default=None,
                        help="start from a training recipe (a name of `pada recipes`, or a .json file); "
                             "options given here override its settings")


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def recipe_argv(recipe: Recipe, parser: argparse.ArgumentParser) -> list[str]:
    """The command-line words ``recipe``'s settings stand for, each checked by ``parser``'s option (its
    type and choices): a setting the trainer does not know is a one-line error naming the recipe."""
    options = parser._option_string_actions  # noqa: SLF001 - argparse keeps no public map
    words: list[str] = []
    for key, value in recipe.settings.items():
        flag = "--" + key.replace("_", "-")
        action = options.get(flag)
        if action is None or key in _NOT_SETTINGS:
            raise PadaError(f"recipe {recipe.name}: unknown setting {key!r} ({parser.prog} has no {flag})")
        words += _option_words(recipe.name, flag, action, value)
    return words


def _option_words(name: str, flag: str, action: argparse.Action, value: Any) -> list[str]:
    where = f"recipe {name}: {flag.removeprefix('--').replace('-', '_')}"
    if action.nargs == 0:  # a switch
        if not isinstance(value, bool):
            raise PadaError(f"{where}: expected true or false, got {value!r}")
        return [flag] if value else []
    if isinstance(action, argparse._AppendAction):  # noqa: SLF001 - repeatable option
        items = value if isinstance(value, list) else [value]
    elif isinstance(value, (list, dict)):
        raise PadaError(f"{where}: expected one value, got {value!r}")
    elif action.nargs == "?" and isinstance(value, bool):  # e.g. --resume [CKPT]
        return [flag] if value else []
    else:
        items = [value]
    words = []
    for item in items:
        text = _word(item)
        try:
            parsed = action.type(text) if callable(action.type) else text
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise PadaError(f"{where}: {exc or 'bad value'} (got {item!r})") from None
        if action.choices is not None and parsed not in action.choices:
            raise PadaError(f"{where}: {item!r} is not one of {', '.join(map(str, action.choices))}")
        words += [f"{flag}={text}"] if text.startswith("-") else [flag, text]  # "-1" is not an option
    return words


def _recipe_option(argv: Sequence[str]) -> str | None:
    """The NAME of ``--recipe NAME`` / ``--recipe=NAME`` in ``argv`` (argparse reads it; nothing else)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    pre.add_argument("--recipe", action="append", default=[])
    try:
        found = pre.parse_known_args(list(argv))[0].recipe
    except argparse.ArgumentError as exc:  # --recipe without a name
        raise PadaError(f"{exc} (a name of `pada recipes`)") from None
    if len(found) > 1:
        raise PadaError("--recipe: give one recipe (a recipe can build on another with \"base\")")
    return found[0] if found else None


def parse_with_recipe(parser: argparse.ArgumentParser, argv: Sequence[str], trainer: str,
                      ) -> tuple[argparse.Namespace, Recipe | None]:
    """Parse a trainer's ``argv``; with ``--recipe R``, R's settings come first and the typed options after
    them (so they win). Returns the arguments and the recipe (None without ``--recipe``)."""
    argv = list(argv)
    name = _recipe_option(argv)
    recipe = load_recipe(name) if name is not None else None
    if recipe is not None and recipe.trainer != trainer:
        raise PadaError(f"recipe {recipe.name} is for `pada train {recipe.trainer}`, "
                        f"not `pada train {trainer}`")
    args = parser.parse_args((recipe_argv(recipe, parser) if recipe else []) + argv)
    if getattr(args, "recipe", None) != name:  # an abbreviation (--rec NAME) argparse accepted
        raise PadaError("--recipe: write the option out in full: --recipe NAME")
    return args, recipe


def recipe_command(recipe: Recipe, parser: argparse.ArgumentParser) -> str:
    """The ``pada train`` command line ``recipe`` stands for."""
    return f"pada train {recipe.trainer} " + shlex.join(recipe_argv(recipe, parser))


__all__ = ["RECIPE_DIR", "Recipe", "add_recipe_argument", "list_recipes", "load_recipe", "parse_with_recipe",
           "recipe_argv", "recipe_command", "recipe_names"]
