"""One place that checks everything a user controls before pada acts on it (docs/reliability.md).

* **Numbers**: :func:`check_number` (range + finiteness, one-line :class:`~pada.errors.PadaError`) and the
  argparse types built on it, :func:`int_option` / :func:`float_option`, which every CLI command uses, so
  ``--eps nan`` or ``-n 10000`` is refused at parse time with one line naming the option.
* **Sizes**: :data:`LIMITS`, the documented upper bounds of every size a user controls (number of results,
  DDIM steps, batch size, lifespan frames, crop size, image pixels). They keep one request within the memory
  of an ordinary machine; bigger jobs are split into several commands.
* **Parsing errors in one line**: :class:`ArgumentParser` prints ``error: PROG: MESSAGE`` (one line, exit
  status 2) instead of argparse's usage block.
* **Untrusted model files**: :func:`check_config_dict` checks the types and ranges of a config read from a
  file before any network is built; :func:`check_param_count` refuses a network above
  :data:`MAX_MODEL_PARAMS` (checked on the ``meta`` device, so nothing is allocated); :func:`check_finite`
  refuses weights holding NaN or infinity; :func:`require_finite` turns a non-finite result into an error
  instead of an all-black image.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from pada.errors import CheckpointError, PadaError, one_line

#: Upper bounds of the sizes a user controls (see docs/reliability.md for how they were chosen).
LIMITS: dict[str, int | float] = {
    "n": 256,               # results of one `pada age` request (one grid)
    "steps": 1000,          # DDIM steps (the diffusion schedule has 1000 training steps)
    "batch_size": 1024,     # results decoded at once / critic batch
    "frames": 32,           # lifespan frames per age gap (6 gaps -> at most 193 frames)
    "crop_size": 4096,      # side of an aligned crop in pixels
    "out_size": 512,        # side of the faces `pada age --out-size` writes (256 results: 0.8 GB as float)
    "megapixels": 1000.0,   # decoded pixels of one input image (the default guard is 100 MP)
    "eps": 10.0,            # PAE sampling intensity (e_txt lies on the unit sphere; 10 is pure noise)
    "seed": 2**63 - 1,
    "workers": 64,
    "threads": 256,
    "images": 10_000_000,   # image counts (--max-images, --limit, ...)
    "train_steps": 10**9,
}

#: Largest network (parameter count) a model file may ask for: 1e9 float32 parameters are 4 GB. The
#: largest official DiffAE (FFHQ 256) has about 1.6e8.
MAX_MODEL_PARAMS = 1_000_000_000


# ------------------------------------------------------------------------------------------------ numbers
def _fmt(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def number_problem(value: Any, *, lo: float | None = None, hi: float | None = None, integer: bool = False,
                   lo_open: bool = False, hi_open: bool = False) -> str:
    """``""`` when ``value`` is an acceptable number, else the problem in a few words."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number, got {value!r}"
    if integer and not isinstance(value, int):
        if not (isinstance(value, float) and value.is_integer()):
            return f"expected a whole number, got {_fmt(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_fmt(value)} is not a finite number"
    if lo is not None and (value < lo or (lo_open and value == lo)):
        bound = f"greater than {_fmt(lo)}" if lo_open else f"at least {_fmt(lo)}"
        return f"must be {bound}, got {_fmt(value)}"
    if hi is not None and (value > hi or (hi_open and value == hi)):
        bound = f"below {_fmt(hi)}" if hi_open else f"at most {_fmt(hi)}"
        return f"must be {bound}, got {_fmt(value)}"
    return ""


def check_number(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
                 integer: bool = False, lo_open: bool = False, hi_open: bool = False) -> Any:
    """``value`` when it is a finite number in range, else :class:`PadaError` ``"NAME: problem"``."""
    problem = number_problem(value, lo=lo, hi=hi, integer=integer, lo_open=lo_open, hi_open=hi_open)
    if problem:
        raise PadaError(f"{name}: {problem}")
    return int(value) if integer else value


def _parse(text: str, integer: bool) -> int | float:
    t = text.strip()
    try:
        return int(t) if integer else float(t)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None


def int_option(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """argparse ``type=``: a whole number in ``[lo, hi]`` (None: unbounded on that side)."""
    def parse(text: str) -> int:
        value = _parse(text, True)
        problem = number_problem(value, lo=lo, hi=hi, integer=True)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return int(value)

    parse.__name__ = "int"  # argparse names the type in "invalid int value" messages
    return parse


def float_option(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False) -> Callable[[str], float]:
    """argparse ``type=``: a finite number in ``[lo, hi]`` (``lo_open``/``hi_open``: bound excluded)."""
    def parse(text: str) -> float:
        value = _parse(text, False)
        problem = number_problem(value, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return float(value)

    parse.__name__ = "float"
    return parse


def floats_option(lo: float | None = None, hi: float | None = None) -> Callable[[str], tuple[float, ...]]:
    """argparse ``type=``: comma-separated finite numbers in ``[lo, hi]`` (at least one)."""
    one = float_option(lo, hi)

    def parse(text: str) -> tuple[float, ...]:
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError("expected at least one number")
        return tuple(one(p) for p in parts)

    parse.__name__ = "numbers"
    return parse


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: PROG: MESSAGE`` on stderr, exit status 2 (no usage block).

    Sub-parsers made with ``add_subparsers`` inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {one_line(str(message))} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


# ----------------------------------------------------------------------------------- untrusted configs
#: Accepted ranges of the numeric fields of configs read from model files, by dataclass name. A tuple
#: field's range applies to each of its items; ``len`` bounds its length.
CONFIG_RANGES: dict[str, dict[str, dict[str, Any]]] = {
    "PadaConfig": {
        "e_dim": {"lo": 1, "hi": 8192}, "z_dim": {"lo": 1, "hi": 8192},
        "enc_hidden": {"lo": 1, "hi": 16384}, "enc_layers": {"lo": 1, "hi": 32},
        "mod_hidden": {"lo": 1, "hi": 16384}, "mod_layers": {"lo": 1, "hi": 32},
        "sigma_init": {"lo": 0.0, "hi": 100.0, "lo_open": True}, "eps": {"lo": 0.0, "hi": LIMITS["eps"]},
        "stats_eps": {"lo": 0.0, "hi": 1.0, "lo_open": True}, "init_gain": {"lo": 0.0, "hi": 100.0},
        "max_shift": {"lo": 0.0, "hi": 100.0, "hi_open": True},
    },
    "DiffAEConfig": {
        "image_size": {"lo": 8, "hi": 2048}, "in_channels": {"lo": 1, "hi": 16},
        "out_channels": {"lo": 1, "hi": 16}, "model_channels": {"lo": 1, "hi": 2048},
        "num_res_blocks": {"lo": 1, "hi": 16}, "embed_channels": {"lo": 1, "hi": 8192},
        "attention_resolutions": {"lo": 1, "hi": 2048, "len": 16},
        "channel_mult": {"lo": 1, "hi": 64, "len": 10, "min_len": 1},
        "dropout": {"lo": 0.0, "hi": 1.0}, "num_heads": {"lo": 1, "hi": 256},
        "num_head_channels": {"lo": -1, "hi": 4096}, "num_heads_upsample": {"lo": -1, "hi": 256},
        "enc_out_channels": {"lo": 1, "hi": 8192},
        "enc_channel_mult": {"lo": 1, "hi": 64, "len": 10, "min_len": 1},
        "enc_num_res_block": {"lo": 1, "hi": 16},
        "enc_attn_resolutions": {"lo": 1, "hi": 2048, "len": 16},
        "coarse_size": {"lo": 0, "hi": 2048},
    },
}


def _type_problem(value: Any, tp: Any) -> str:
    """``""`` when ``value`` (parsed JSON) fits the annotation ``tp``, else what was expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        problems = [_type_problem(value, t) for t in options]
        return "" if any(p == "" for p in problems) else " or ".join(p for p in problems if p)
    if tp is type(None):
        return "" if value is None else "null"
    if tp is bool:
        return "" if isinstance(value, bool) else "true/false"
    if tp is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if tp is float:
        return "" if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if tp is str:
        return "" if isinstance(value, str) else "a string"
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            return "a list"
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            return f"a list of {len(item_types)} items"
        for item, it in zip(value, item_types):
            inner = _type_problem(item, it)
            if inner:
                return f"a list of {inner}s"
        return ""
    return ""  # anything else is checked by the dataclass itself


def check_config_dict(cls: type, data: Any, source: str) -> None:
    """Check a config dict read from a file against dataclass ``cls``: an object, known keys only, each
    value of its field's type, numbers finite and inside :data:`CONFIG_RANGES`. One-line
    :class:`CheckpointError` naming ``source`` and the first bad field otherwise. Keys the dataclass does not
    have are left to ``cls.from_dict`` (which may accept a few official names)."""
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{source}: {name} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    ranges = CONFIG_RANGES.get(name, {})
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        expected = _type_problem(value, hints.get(f.name, Any))
        if expected:
            raise CheckpointError(f"{source}: {name}.{f.name} must be {expected}, got {value!r:.60}")
        rng = dict(ranges.get(f.name, {}))
        if not rng or value is None:
            continue
        max_len, min_len = rng.pop("len", None), rng.pop("min_len", 0)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and not (min_len <= len(items) <= (max_len or len(items))):
            raise CheckpointError(f"{source}: {name}.{f.name} must have {min_len} to {max_len} items, "
                                  f"got {len(items)}")
        for item in items:
            problem = number_problem(item, **rng)
            if problem:
                raise CheckpointError(f"{source}: {name}.{f.name} {problem}")


def parse_config_json(cls: type, text: Any, source: str, from_dict: Callable[[dict], Any] | None = None):
    """``cls`` from JSON text stored in a model file: JSON errors, wrong types and out-of-range values all
    become one-line :class:`CheckpointError` naming ``source``."""
    import json

    if not isinstance(text, str):
        raise CheckpointError(f"{source}: the {cls.__name__} metadata is missing")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{source}: the {cls.__name__} metadata is not valid JSON ({exc})") from None
    check_config_dict(cls, data, source)
    try:
        return (from_dict or cls.from_dict)(data)
    except PadaError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: bad {cls.__name__} ({exc})") from None


# ------------------------------------------------------------------------------------- weights and outputs
def param_count(module) -> int:
    return sum(int(p.numel()) for p in module.parameters())


def check_param_count(module, source: str, limit: int = MAX_MODEL_PARAMS) -> int:
    """Refuse a network (build it on the ``meta`` device first) with more than ``limit`` parameters."""
    n = param_count(module)
    if n > limit:
        raise CheckpointError(f"{source}: the config asks for a network of {n / 1e6:,.0f}M parameters, over "
                              f"the limit of {limit / 1e6:,.0f}M (docs/reliability.md)")
    return n


def check_finite(state: Mapping[str, Any], source: str) -> None:
    """Refuse weights (a state_dict) with NaN or infinite values, naming the first bad tensors."""
    import torch

    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and v.numel()
           and not bool(torch.isfinite(v).all())]
    if bad:
        first = ", ".join(bad[:2]) + (f", +{len(bad) - 2} more" if len(bad) > 2 else "")
        raise CheckpointError(f"{source}: weights contain NaN or infinite values ({first});"
                              " the file is damaged or came from a diverged training run")


def require_finite(tensors: Iterable[Any] | Any, what: str) -> None:
    """Raise :class:`PadaError` when a result holds NaN or infinity (instead of writing a black image)."""
    import torch

    items = [tensors] if torch.is_tensor(tensors) else list(tensors)
    for t in items:
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise PadaError(f"{what}: the model produced NaN or infinite values; nothing was written "
                            "(a damaged model file or extreme options)")


# --------------------------------------------------------------------------------------------------
# key=value options (--set, --model-set, --pipeline-option, --ablation ...)
# --------------------------------------------------------------------------------------------------
def split_key_value(text: str, option: str, what: str = "key=value",
                    need_value: bool = False) -> tuple[str, str]:
    """``"key=value"`` given to ``option`` -> ``(key, value)``, both stripped (the value may hold ``=``).

    Raises a one-line :class:`PadaError` naming the option (``"--set lr: expected key=value"``) when there is
    no ``=``, no key, or (``need_value``) no value.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or (need_value and not value.strip()):
        raise PadaError(f"{option} {text}: expected {what}")
    return key.strip(), value.strip()


def parse_literal(text: str) -> Any:
    """A value written on the command line: JSON (numbers, true/false, lists, strings), else a comma list
    of whole numbers (``1,2,4``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        try:
            return [int(v) for v in text.split(",")]
        except ValueError:
            pass
    return text.strip()


def key_value_option(what: str = "NAME=VALUE", literal: bool = False) -> Callable[[str], tuple[str, Any]]:
    """argparse ``type=``: ``NAME=VALUE`` -> ``(name, value)``; the value read with :func:`parse_literal`
    when ``literal``, else kept as text."""
    def parse(text: str) -> tuple[str, Any]:
        try:
            key, value = split_key_value(text, "", what, need_value=True)
        except PadaError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        return key, parse_literal(value) if literal else value

    parse.__name__ = what
    return parse
