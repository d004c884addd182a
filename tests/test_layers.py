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
