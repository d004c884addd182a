"""The layout of ``src/pada``: one name per concept, old names still importable, every CLI command has its
module (issue 14). Static checks (ast) and cheap imports only."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pada"


# --------------------------------------------------------------------------------------------------
# one name, one meaning
# --------------------------------------------------------------------------------------------------
# Names that several modules define on purpose: the same protocol, one per module.
PROTOCOL_NAMES = {
    "add_parser": "each `pada.cli.<command>` module registers its sub-command",
    "build_parser": "each trainer module's own argparse parser (`python -m ...`)",
    "main": "each runnable module's entry point",
    "run": "a CLI command's body",
    "create_app": "pada.app re-exports pada.app.server.create_app lazily",
    "export_checkpoint": "each model family exports its own training checkpoint",
}
# Names still defined twice, to be merged (listed so a new clash fails the test; remove an entry when fixed).
KNOWN_CLASHES = {
    "fetch_wheel": "pada.data.wheels (sha256-pinned) vs pada.faces.samples (by file pattern)",
    "ffhq_quad": "pada.faces.align (5 landmarks) vs pada.critics.geometry (eye centres and mouth corners)",
}


def _public_definitions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in sorted(SRC.rglob("*.py")):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
                found.setdefault(node.name, []).append(str(f.relative_to(SRC.parent)))
    return found


def test_one_public_name_one_definition():
    clashes = {n: where for n, where in _public_definitions().items()
               if len(where) > 1 and n not in PROTOCOL_NAMES and n not in KNOWN_CLASHES}
    assert not clashes, f"public names defined in more than one module (rename one): {clashes}"


@pytest.mark.parametrize("module, old, new", [
    ("pada.vl.train_faceclip", "TrainConfig", "FaceClipTrainConfig"),
    ("pada.vl.faceclip", "CriticFeatures", "CriticFeatureBlocks"),
    ("pada.app.service", "AgingResult", "AgingResponse"),
    ("pada.data.labels", "load_critics", "load_label_critics"),
])
def test_renamed_names_still_import_with_a_warning(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{module}.{old} is deprecated; it is now {module}.{new}"):
        got = getattr(mod, old)
    assert got is getattr(mod, new)
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(mod, new) is got  # the new name does not warn


def test_training_psnr_is_the_evaluation_psnr():
    from pada.evaluation.metrics import psnr
    from pada.training.diffae_task import psnr as training_psnr

    assert training_psnr is psnr


# --------------------------------------------------------------------------------------------------
# one function per job
# --------------------------------------------------------------------------------------------------
def _sources_with(text: str, roots=("src/pada", "benchmarks")) -> list[str]:
    top = SRC.parents[1]
    files = [f for r in roots for f in (top / r).rglob("*.py")]
    return sorted(str(f.relative_to(top)) for f in files if text in f.read_text())


def test_one_freeze_one_grid_writer_one_key_value_parser():
    assert _sources_with("requires_grad_(False)") == ["src/pada/frozen.py"]
    assert _sources_with("torchvision.utils") == []  # grids: pada.faces.grid
    assert _sources_with('.split("=", 1)') == ["src/pada/aging/train.py"]  # only a key test, no parsing
    from pada.critics.base import freeze as critics_freeze
    from pada.frozen import freeze

    assert critics_freeze is freeze


def test_key_value_parsing():
    import argparse

    from pada.errors import PadaError
    from pada.validation import key_value_option, parse_literal, split_key_value

    assert split_key_value(" lr = 3e-4 ", "--set") == ("lr", "3e-4")
    assert split_key_value("path=a=b", "--set") == ("path", "a=b")
    assert split_key_value("x=", "--set") == ("x", "")
    for bad in ("lr", "=3"):
        with pytest.raises(PadaError, match=f"^--set {bad}: expected key=value$"):
            split_key_value(bad, "--set")
    with pytest.raises(PadaError, match="expected NAME=VALUE"):
        split_key_value("x=", "--opt", "NAME=VALUE", need_value=True)
    assert [parse_literal(t) for t in ("3", "0.5", "true", "[1, 2]", "1,2,4", "a,b", " text ")] == \
        [3, 0.5, True, [1, 2], [1, 2, 4], "a,b", "text"]
    opt = key_value_option("NAME=VALUE", literal=True)
    assert opt("max_shift=0.35") == ("max_shift", 0.35)
    assert key_value_option("NAME=PATH")("v2=runs/a=b.safetensors") == ("v2", "runs/a=b.safetensors")
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=VALUE, got 'nope'"):
        opt("nope")


# --------------------------------------------------------------------------------------------------
# CLI: every listed command has its module
# --------------------------------------------------------------------------------------------------
def test_every_cli_command_has_its_module(monkeypatch):
    from pada.cli import main as cli_main

    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices)[:len(cli_main.COMMAND_MODULES)] == list(cli_main.COMMAND_MODULES)
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", (*cli_main.COMMAND_MODULES, "no_such_command"))
    with pytest.raises(ModuleNotFoundError, match="pada.cli.no_such_command"):
        cli_main.build_parser()
