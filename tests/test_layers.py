"""The layout of ``src/pada`` (docs/ARCHITECTURE.md): which package may import which, one name per concept,
old names still importable, one function per job, no over-long functions, every CLI command has its module.

Static checks (ast) and cheap imports only. Run ``python tests/test_layers.py`` to print the import edges
between layers and the longest functions.
"""

from __future__ import annotations

import ast
import functools
import importlib
import warnings
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pada"

# --------------------------------------------------------------------------------------------------
# layers: who may import whom
# --------------------------------------------------------------------------------------------------
# Module (or package) -> layer; the longest matching prefix wins.
LAYER_OF = {
    "pada": "core", "pada.errors": "core", "pada.validation": "core", "pada.outputs": "core",
    "pada.state_dict_check": "core", "pada.weights": "core", "pada.frozen": "core",
    "pada.deprecation": "core", "pada.recipes": "core", "pada.wheels": "core",
    "pada.networks": "networks",
    "pada.diffusion": "diffusion",
    "pada.diffae": "diffae",
    "pada.faces": "faces",
    "pada.critics": "critics",
    "pada.data": "data",
    "pada.vl": "vl",
    "pada.training": "training",
    "pada.evaluation": "evaluation",
    "pada.evaluation.runner": "evaluation.runner",
    "pada.aging": "aging",
    "pada.app": "app",
    "pada.cli": "cli",
}
# Layer -> the other layers it may import (its own layer always). Read upwards: nothing below imports
# anything above. The rules are the code as it is; a new edge is a design decision: change it here and in
# docs/ARCHITECTURE.md together.
ALLOWED = {
    "core": set(),
    "networks": {"core"},
    "diffusion": {"core"},  # samplers take model_fn: no network in sight
    "faces": {"core"},
    "critics": {"core", "faces"},  # the critics' crops follow the FFHQ alignment recipe
    # the DiffAE family: its model on the network and the samplers, its training task on the engine, the
    # data sets, PSNR and grids, the frozen critics of its optional face-feature loss (--feature-loss)
    "diffae": {"core", "networks", "diffusion", "training", "data", "evaluation", "critics", "faces"},
    "data": {"core", "faces", "critics"},
    "vl": {"core", "critics", "data"},
    "training": {"core"},  # the generic engine: nothing model-specific
    "evaluation": {"core", "faces"},  # the measures (critics come in as objects)
    # the PADA family; the pipeline's edit-length calibration uses the measures' high-frequency ratio
    "aging": {"core", "diffae", "diffusion", "training", "critics", "data", "faces", "vl", "evaluation"},
    "evaluation.runner": {"core", "evaluation", "critics", "faces", "data", "aging"},  # runs PADA, scores it
    "app": {"core", "aging", "data", "faces"},
    "cli": {"core", "networks", "diffusion", "faces", "critics", "diffae", "data", "vl", "training",
            "evaluation", "evaluation.runner", "aging", "app"},
}
# Edges that break the rules today, each with its reason; remove an entry when its cause is gone.
PENDING: dict[str, tuple[set[str], str]] = {}  # module -> (layers it may still import, why); none today
# Old module paths kept as deprecated forwards (pada.deprecation.moved): old -> new. A shim imports its new
# home by name on first use, so it adds no edge; test_moved_modules_forward_with_a_warning checks each.
MOVED = {
    "pada.training.diffae_task": "pada.diffae.train",
    "pada.training.benchmark": "pada.diffae.benchmark",
    "pada.data.wheels": "pada.wheels",
}


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


@functools.lru_cache(maxsize=1)
def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(SRC.rglob("*.py")):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def layer_of(module: str) -> str:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in LAYER_OF:
            return LAYER_OF[".".join(parts[:k])]
    raise KeyError(f"{module}: no layer (add it to LAYER_OF in tests/test_layers.py)")


def imported_modules(module: str, source: str | ast.Module, known: set[str]) -> set[str]:
    """The pada modules ``source`` (the text or tree of ``module``) imports, anywhere in it (functions
    included)."""
    tree = ast.parse(source) if isinstance(source, str) else source
    out = set()
    is_package = module in known and _modules()[module].name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "pada")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.split(".")[0] != "pada":
                continue
            for a in node.names:  # `from pada import diffusion` imports the module pada.diffusion
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return out


def violations(module: str, source: str | ast.Module, known: set[str]) -> list[str]:
    """``"a -> b (layer x may not import layer y)"`` for each import of ``module`` across the rules."""
    mine = layer_of(module)
    pending = PENDING.get(module, (set(), ""))[0]
    out = []
    for target in sorted(imported_modules(module, source, known)):
        theirs = layer_of(target)
        if theirs != mine and theirs not in ALLOWED[mine] and theirs not in pending:
            out.append(f"{module} -> {target} ({mine} may not import {theirs})")
    return out


def import_edges() -> dict[tuple[str, str], list[str]]:
    mods = _modules()
    edges: dict[tuple[str, str], list[str]] = {}
    for m, f in mods.items():
        for t in imported_modules(m, _tree(f), set(mods)):
            if layer_of(t) != layer_of(m):
                edges.setdefault((layer_of(m), layer_of(t)), []).append(f"{m} -> {t}")
    return edges


def test_every_module_has_a_layer_and_the_layers_form_no_cycle():
    for m in _modules():
        layer_of(m)
    assert set(ALLOWED) == set(LAYER_OF.values())
    order: list[str] = []
    while len(order) < len(ALLOWED):  # topological order exists <=> no cycle
        ready = [k for k, deps in ALLOWED.items() if k not in order and deps <= set(order)]
        assert ready, f"the allowed imports form a cycle among {sorted(set(ALLOWED) - set(order))}"
        order += sorted(ready)


def test_no_package_imports_across_the_allowed_direction():
    mods = _modules()
    bad = [v for m, f in mods.items() for v in violations(m, _tree(f), set(mods))]
    assert not bad, "imports across the layers (docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_pending_exceptions_are_still_needed():
    """An allow-list entry whose edge is gone must be removed (so the list never hides a new edge)."""
    mods = _modules()
    for module, (layers, why) in PENDING.items():
        used = {layer_of(t) for t in imported_modules(module, _tree(mods[module]), set(mods))}
        stale = layers - used
        assert not stale, f"{module}: PENDING allows {sorted(stale)} but it no longer imports them ({why})"


@pytest.mark.parametrize("module, line", [
    ("pada.networks.unet", "from pada.diffusion import ddim"),
    ("pada.networks.unet", "from pada import diffusion as D"),
    ("pada.networks.unet", "from pada.training.engine import Trainer"),
    ("pada.diffusion.ddim", "import pada.networks.unet"),
    ("pada.training.engine", "from pada.diffae import DiffAE"),
    ("pada.training.engine", "def f():\n    from pada.aging.model import PadaModel"),
    ("pada.training.checkpointing", "from pada.diffae.train import DiffAETask"),
    ("pada.diffae.train", "from pada.aging.train import PadaTask"),
    ("pada.diffae.model", "from pada.vl.faceclip import FaceCLIP"),
    ("pada.critics.base", "from pada.aging.pipeline import AgingPipeline"),
    ("pada.faces.align", "from pada.critics.geometry import ffhq_square"),
    ("pada.evaluation.metrics", "from pada.aging.pipeline import AgingPipeline"),
    ("pada.faces.io", "from ..data import labels"),
    ("pada.aging.model", "from pada.cli.age import run"),
])
def test_the_layer_check_catches_a_wrong_import(module, line):
    mods = _modules()
    assert violations(module, line, set(mods)), f"{line!r} in {module} should break the rules"
    assert not violations(module, "from pada.errors import PadaError", set(mods))


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
KNOWN_CLASHES: dict[str, str] = {}  # none today


def _public_definitions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in sorted(SRC.rglob("*.py")):
        for node in _tree(f).body:
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
    ("pada.critics.geometry", "ffhq_quad", "ffhq_square"),
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
    from pada.diffae.train import psnr as training_psnr
    from pada.evaluation.metrics import psnr

    assert training_psnr is psnr


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_moved_modules_forward_with_a_warning(old, new):
    mods = _modules()
    shim = _tree(mods[old])
    # a shim is a forward and nothing else: docstring, imports, `__getattr__ = moved(...)`, the -m runner
    kinds = {type(node).__name__ for node in shim.body}
    assert kinds <= {"Expr", "Import", "ImportFrom", "Assign", "If"}, f"{old} holds more than a forward"
    assert f'moved("{old}", "{new}")' in mods[old].read_text()
    old_mod, new_mod = importlib.import_module(old), importlib.import_module(new)
    own = [n for n, v in vars(new_mod).items() if getattr(v, "__module__", None) == new and n[0] != "_"]
    assert len(own) >= 2
    for name in own:
        with pytest.warns(DeprecationWarning, match=f"{old}.{name} is deprecated; it is now {new}.{name}"):
            assert getattr(old_mod, name) is getattr(new_mod, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        old_mod.no_such_name  # noqa: B018


def test_every_forwarding_shim_is_listed():
    """`moved(` hides an import from the layer check, so each use must be a listed shim."""
    def forwards(tree: ast.Module) -> bool:
        return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) == "moved"
                   for n in ast.walk(tree))

    assert {m for m, f in _modules().items() if forwards(_tree(f))} == set(MOVED)


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
# function length
# --------------------------------------------------------------------------------------------------
MAX_FUNCTION_LINES = 80  # lines of code, the docstring not counted
LONG_BECAUSE = "Long because"  # a longer function says why in its docstring, starting with these words
PENDING_LONG: dict[str, str] = {}  # "file:Class.function" -> why it is still long (none today)


def _function_rows(node: ast.AST, rel: str, prefix: str = "") -> list[tuple[int, str, str]]:
    rows = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            rows += _function_rows(child, rel, f"{prefix}{child.name}.")
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(child) or ""
            first = child.body[0]
            doc_lines = first.end_lineno - first.lineno + 1 if doc else 0
            rows.append((child.end_lineno - child.lineno + 1 - doc_lines, f"{rel}:{prefix}{child.name}", doc))
            rows += _function_rows(child, rel, f"{prefix}{child.name}.")
    return rows


def function_lengths() -> list[tuple[int, str, str]]:
    """``(lines of code, "file:Class.name", docstring)`` of every function in src/pada, longest first."""
    rows = []
    for f in sorted(SRC.rglob("*.py")):
        rows += _function_rows(_tree(f), str(f.relative_to(SRC.parent)))
    return sorted(rows, reverse=True)


def test_no_function_over_80_lines_unless_it_says_why():
    long = [f"{where} ({n} lines)" for n, where, doc in function_lengths()
            if n > MAX_FUNCTION_LINES and LONG_BECAUSE not in doc and where not in PENDING_LONG]
    assert not long, f"split these into named steps (or say '{LONG_BECAUSE} ...' in the docstring): {long}"


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


if __name__ == "__main__":
    for (a, b), where in sorted(import_edges().items()):
        print(f"{a:18s} -> {b:18s} {len(where):3d}  e.g. {where[0]}")
    print()
    for n, where, _ in function_lengths()[:15]:
        print(f"{n:4d}  {where}")
