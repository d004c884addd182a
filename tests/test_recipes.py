"""Training recipes as data (pada.recipes): the shipped ones are the commands that made the shipped weights,
typed options win over a recipe, bad recipes are one line, and the recipe travels with the weights."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from pada import recipes
from pada.aging.config import LossConfig
from pada.cli.recipes import trainer_parser
from pada.errors import PadaError

ROOT = Path(__file__).resolve().parents[1]

# The commands of scripts/train_default_models.sh before the recipes existed (RUNS=runs, default step
# counts), word for word: each shipped recipe must parse into exactly these options.
DIFFAE = ("--data data/demo/aligned/64 --preset pada64 --batch-size 32 --lr 2e-4 --ema-decay 0.999 --seed 0 "
          "--num-workers 1 --log-every 10 --ckpt-every 100 --no-progress ")  # the script's DIFFAE=(...)
FORMER_SCRIPT = {
    "diffae-demo64-1a": DIFFAE + (
        "--out runs/diffae64 --steps 1300 --sample-every 1000 --set warmup_steps=200 --resume"),
    "diffae-demo64-1a-ema": DIFFAE + (
        "--out runs/diffae64 --steps 1900 --sample-every 1000 --set warmup_steps=200 --set "
        "ema_warmup=true --resume"),
    "diffae-demo64-1b": DIFFAE + (
        "--out runs/diffae64v --steps 800 --model-set prediction=v --init-from "
        "runs/diffae64/checkpoints/step_00001900.pt --sample-every 500 --set warmup_steps=100 "
        "--set ema_warmup=true --resume"),
    "diffae-demo64-1c": DIFFAE + (
        "--seed 1 --out runs/diffae64v2 --steps 800 --model-set prediction=v "
        "--high-t-fraction 0.5 --init-from runs/diffae64v/checkpoints/step_00000800.pt "
        "--sample-every 500 --set warmup_steps=50 --set ema_warmup=true --resume"),
    "diffae-demo64-1d": (
        "--data data/demo/aligned/64 --preset pada64e --init-from runs/diffae64v2.safetensors "
        "--high-t-fraction 0.5 --coarse-weight 1 --z-noise 0.1 --batch-size 32 --lr 3e-4 "
        "--ema-decay 0.999 --seed 0 --num-workers 0 --log-every 10 --ckpt-every 100 "
        "--sample-every 500 --no-progress --set warmup_steps=30 --set ema_warmup=true --out "
        "runs/diffae64e --steps 300 --resume"),
    "diffae-demo64-1e": (
        "--data data/demo/aligned/64 --preset pada64e --init-from runs/diffae64e.safetensors "
        "--high-t-fraction 0.5 --coarse-weight 1 --z-noise 0.1 --feature-loss sface=0.2 "
        "--feature-loss dlib-age=0.2 --feature-loss dlib-gender=0.1 --feature-t-min 500 --batch-size 32 "
        "--lr 3e-4 --ema-decay 0.999 --seed 0 --num-workers 0 --log-every 10 --ckpt-every 100 "
        "--sample-every 100 --no-progress --set warmup_steps=30 --set ema_warmup=true --out "
        "runs/diffae64f --steps 1000 --resume"),
    "diffae-demo64-1f": "",
    "diffae-demo64-1g": "",
    "faceclip-demo": (
        "--data data/demo --out src/pada/vl/weights/faceclip.safetensors --cache "
        "runs/faceclip/cache --threads 1"),
    "pada-demo64-v3": (
        "--data data/demo --diffae runs/diffae64e.safetensors --vl faceclip --out runs/pada64v3 --steps "
        "400 --batch-size 8 --lr 3e-4 --seed 0 --log-every 10 --ckpt-every 100 --sample-faces "
        "0 --no-progress --resume --pada-set max_shift=0.35 --pada-set shift_subspace=16 "
        "--pada-set sigma_init=0.02 --pada-set eps=0.02 --loss-set lambda_id=0.6 --loss-set "
        "norm_target=shift --loss-set lambda_norm=0.1 --loss-set augment=0.5 --loss-set "
        "skip_same_group=true --loss-set lambda_div=0.5 --loss-set div_target=0.05 --loss-set "
        "t_min=200 --loss-set t_max=900 --loss-set lambda_dir=50 --loss-set dir_gain=2"),
    "pada-demo64-v4": (
        "--data data/demo --diffae runs/diffae64e.safetensors --vl faceclip --out runs/pada64v4 --steps "
        "400 --batch-size 8 --lr 3e-4 --seed 0 --log-every 10 --ckpt-every 100 --sample-faces "
        "0 --no-progress --resume --pada-set max_shift=0.35 --pada-set shift_subspace=16 "
        "--pada-set sigma_init=0.02 --pada-set eps=0.02 --pada-set draw_hidden=64 --loss-set lambda_id=0.6 "
        "--loss-set norm_target=shift --loss-set lambda_norm=0.1 --loss-set augment=0.5 --loss-set "
        "skip_same_group=true --loss-set t_min=200 --loss-set t_max=900 --loss-set lambda_dir=50 "
        "--loss-set dir_gain=2 --loss-set lambda_div=2 --loss-set div_target=0.08 --loss-set dir_spread=0.4"),
    # v5: the v4 recipe on the stage-1e DiffAE; v6 (shipped): the same on stage 1f (the shipped diffae-demo64)
    "pada-demo64-v5": "",
    "pada-demo64-v6": "",
    # v7 (shipped): v6 + the age direction in the shift subspace, draws spread further, the spread basis
    "pada-demo64-v7": "",
}
# 1f: the 1e recipe from the export of 1e, plus the chained feature loss
FORMER_SCRIPT["diffae-demo64-1f"] = (
    FORMER_SCRIPT["diffae-demo64-1e"].replace("runs/diffae64e.safetensors", "runs/diffae64f.safetensors")
    .replace("--out runs/diffae64f --steps 1000", "--out runs/diffae64g --steps 600")
    + " --feature-chain-t 200")
# 1g: the 1f recipe from the export of 1f with a 448-component eigenface code
FORMER_SCRIPT["diffae-demo64-1g"] = (
    FORMER_SCRIPT["diffae-demo64-1f"].replace("runs/diffae64f.safetensors", "runs/diffae64g.safetensors")
    .replace("--out runs/diffae64g --steps 600", "--out runs/diffae64h --steps 100")
    .replace("--ckpt-every 100", "--ckpt-every 50") + " --model-set coarse_pca=448")
FORMER_SCRIPT["pada-demo64-v5"] = (
    FORMER_SCRIPT["pada-demo64-v4"].replace("--diffae runs/diffae64e.safetensors",
                                            "--diffae runs/diffae64f.safetensors")
    .replace("runs/pada64v4", "runs/pada64v5"))
FORMER_SCRIPT["pada-demo64-v6"] = (
    FORMER_SCRIPT["pada-demo64-v4"].replace("--diffae runs/diffae64e.safetensors", "--diffae diffae-demo64")
    .replace("runs/pada64v4", "runs/pada64v6"))
FORMER_SCRIPT["pada-demo64-v7"] = (
    FORMER_SCRIPT["pada-demo64-v6"].replace("runs/pada64v6", "runs/pada64v7")
    .replace("div_target=0.08", "div_target=0.16").replace("dir_spread=0.4", "dir_spread=0.7")
    + " --pada-set shift_age_direction=true --pada-set spread_basis=true")  # the basis: inference only

def _derived(base: str, name: str, extra: str) -> str:
    """pada-demo64-``base``'s command writing to runs/pada64``name``, with ``extra`` settings added."""
    command = FORMER_SCRIPT[f"pada-demo64-{base}"]
    return command.replace(f"runs/pada64{base}", f"runs/pada64{name}") + " " + extra


# v7c: v7's run with two inference-only defaults stored in the model (trained tensors unchanged)
FORMER_SCRIPT["pada-demo64-v7c"] = _derived("v7", "v7c",
                                             "--pada-set draw_spread=0.12 --pada-set calibrate=true")
# v7d: v7c plus the tone guard, one more inference-only default (trained tensors unchanged)
FORMER_SCRIPT["pada-demo64-v7d"] = _derived("v7c", "v7d", "--pada-set tone_guard=0.1")
# v7e: v7d plus the gender hold, one more inference-only default (trained tensors unchanged)
FORMER_SCRIPT["pada-demo64-v7e"] = _derived("v7d", "v7e", "--pada-set hold_gender=true")
# v7f: v7e plus the background guard and a longer edit at old targets, inference-only defaults (same tensors)
FORMER_SCRIPT["pada-demo64-v7f"] = _derived(
    "v7e", "v7f", "--pada-set background_guard=0.05 --pada-set shift_gain=43:1,60.5:1.3,80:1.6")
# v7g: v7f plus the saturation guard, one more inference-only default (trained tensors unchanged)
FORMER_SCRIPT["pada-demo64-v7g"] = _derived("v7f", "v7g", "--pada-set saturation_guard=0.01")
# v7h: v7g plus the blotch back-off, one more inference-only default (trained tensors unchanged)
FORMER_SCRIPT["pada-demo64-v7h"] = _derived("v7g", "v7h", "--pada-set blotch_guard=0.06")
# v9 (tried in session 20): v7e with the gender hold seen by training too
FORMER_SCRIPT["pada-demo64-v9"] = _derived("v7e", "v9", "--loss-set train_hold=true")
# v10 (session 22): v7e plus the background guard, both guards seen by training
FORMER_SCRIPT["pada-demo64-v10"] = _derived("v7e", "v10",
                                             "--pada-set background_guard=0.05 --loss-set train_guard=true")
# v8 (tried in session 19, not shipped): v7c's run plus L_tone
FORMER_SCRIPT["pada-demo64-v8"] = _derived("v7c", "v8",
                                            "--loss-set lambda_tone=400 --loss-set tone_margin=0.05")
# v11 (tried in session 27): v7h's run plus L_blotch
FORMER_SCRIPT["pada-demo64-v11"] = _derived("v7h", "v11",
                                             "--loss-set lambda_blotch=300 --loss-set blotch_margin=0.03")
# v7i: v7h with the contrast bound on and a wider draw spread, inference-only defaults (same tensors)
FORMER_SCRIPT["pada-demo64-v7i"] = _derived("v7h", "v7i",
                                             "--pada-set contrast_bound=0.5 --pada-set draw_spread=0.14")
# v7j: v7i with the lifespan's anchors spaced, an inference-only default (same tensors)
FORMER_SCRIPT["pada-demo64-v7j"] = _derived("v7i", "v7j", "--pada-set space_lifespan=true")
# v7k: v7j with the structure back-off on, an inference-only default (same tensors)
FORMER_SCRIPT["pada-demo64-v7k"] = _derived("v7j", "v7k", "--pada-set structure_guard=0.13")
# v7l: v7k with low-level diversity from a mixed start, an inference-only default (same tensors)
FORMER_SCRIPT["pada-demo64-v7l"] = _derived("v7k", "v7l", "--pada-set low_noise=0.3")
# v7m: v7l with each draw's spread capped by its own edit, an inference-only default (same tensors)
FORMER_SCRIPT["pada-demo64-v7m"] = _derived("v7l", "v7m", "--pada-set spread_cap=0.5")
# v7n: v7m with the calibrated length of young targets capped, an inference-only default (same tensors)
FORMER_SCRIPT["pada-demo64-v7n"] = _derived("v7m", "v7n", "--pada-set young_cap=0.5")
# v12 (tried in session 33): v7i's run with the contrast bound seen by training
FORMER_SCRIPT["pada-demo64-v12"] = _derived("v7i", "v12", "--loss-set train_bound=0.5")

def _configs(trainer: str, args) -> tuple:
    """What a trainer builds from its parsed options (the settings that reach the run)."""
    from pada.training.engine import config_from_args

    if trainer == "diffae":
        from pada.diffae.train import DEFAULTS, build_model_config

        return (config_from_args(args, DEFAULTS), build_model_config(args.preset, args.model_overrides))
    if trainer == "pada":
        from pada.aging.train import PADA_TRAIN_DEFAULTS, options_from_args

        return (config_from_args(args, PADA_TRAIN_DEFAULTS), options_from_args(args))
    return ()


def _without_recipe(args) -> dict:
    return {k: v for k, v in vars(args).items() if k != "recipe"}


def test_every_shipped_recipe_is_listed_here():
    assert sorted(recipes.recipe_names()) == sorted(FORMER_SCRIPT)
    for r in recipes.list_recipes():
        assert r.path.stem == r.name and r.description


@pytest.mark.parametrize("name", sorted(FORMER_SCRIPT))
def test_a_recipe_gives_the_same_run_as_its_explicit_flags(name):
    recipe = recipes.load_recipe(name)
    parser = trainer_parser(recipe.trainer)
    got, used = recipes.parse_with_recipe(parser, ["--recipe", name], recipe.trainer)
    want = parser.parse_args(shlex.split(FORMER_SCRIPT[name]))
    assert used == recipe and got.recipe == name and want.recipe is None
    assert _without_recipe(got) == _without_recipe(want)
    assert _configs(recipe.trainer, got) == _configs(recipe.trainer, want)
    # and `pada recipes NAME` prints a command that parses the same way
    command = recipes.recipe_command(recipe, parser)
    assert command.startswith(f"pada train {recipe.trainer} ")
    assert _without_recipe(parser.parse_args(shlex.split(command)[3:])) == _without_recipe(want)


def test_typed_options_override_the_recipe():
    parser = trainer_parser("diffae")
    typed = ["--steps", "5", "--seed", "3", "--set", "warmup_steps=7", "--model-set", "dropout=0",
             "--out", "x"]
    args, _ = recipes.parse_with_recipe(parser, ["--recipe", "diffae-demo64-1c", *typed], "diffae")
    train, model = _configs("diffae", args)
    assert (train.max_steps, train.seed, train.out_dir, train.warmup_steps) == (5, 3, "x", 7)
    assert train.ema_warmup is True and train.batch_size == 32 and train.lr == 2e-4  # kept from the recipe
    assert model.prediction == "v" and model.dropout == 0.0
    typed = ["--loss-set", "lambda_dir=0", "--pada-set", "eps=0.1"]
    args, _ = recipes.parse_with_recipe(trainer_parser("pada"), ["--recipe=pada-demo64-v3", *typed], "pada")
    train, options = _configs("pada", args)
    loss = LossConfig(**options.loss)
    assert loss.lambda_dir == 0 and loss.dir_gain == 2 and loss.t_max == 900 and loss.augment == 0.5
    assert options.pada["eps"] == 0.1 and options.pada["max_shift"] == 0.35 and train.batch_size == 8


def test_a_base_recipe_is_extended():
    a, b = recipes.load_recipe("diffae-demo64-1a"), recipes.load_recipe("diffae-demo64-1a-ema")
    assert b.settings == {**a.settings, "steps": 1900, "set": ["warmup_steps=200", "ema_warmup=true"]}


def _write(tmp_path: Path, name: str, content) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize("trainer, recipe, message", [
    ("diffae", "nope", "recipe 'nope': no such recipe .*known: diffae-demo64-1a"),
    ("diffae", "pada-demo64-v3", "recipe pada-demo64-v3 is for `pada train pada`, not `pada train diffae`"),
    ("pada", "nope", "recipe 'nope': no such recipe"),
    ("diffae", {"trainer": "diffae", "settings": {"data": "d", "bogus_key": 1}},
     "recipe bad: unknown setting 'bogus_key' \\(pada train diffae has no --bogus-key\\)"),
    ("diffae", {"trainer": "diffae", "settings": {"lr": "fast"}}, "recipe bad: lr: .*fast"),
    ("diffae", {"trainer": "diffae", "settings": {"no_progress": "yes"}},
     "recipe bad: no_progress: expected true"),
    ("diffae", {"trainer": "diffae", "settings": {"recipe": "x"}}, "recipe bad: unknown setting 'recipe'"),
    ("pada", {"trainer": "pada", "settings": {"stats": "median"}},
     "recipe bad: stats: 'median' is not one of"),
    ("diffae", {"trainer": "diffae", "setting": {}},
     "recipe .*bad.json: unknown field\\(s\\) \\['setting'\\]"),
    ("diffae", "{not json", "recipe .*bad.json: not valid JSON"),
    ("diffae", {"trainer": "diffae", "base": "bad"}, "recipe bad: its bases form a cycle"),
])
def test_a_bad_recipe_is_one_line_and_a_nonzero_exit(tmp_path, capsys, trainer, recipe, message):
    from pada.cli.main import main

    named = isinstance(recipe, str) and not recipe.startswith("{")
    name = recipe if named else _write(tmp_path, "bad", recipe)
    rc = main(["train", trainer, "--recipe", name, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: recipe"), err
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "run").exists()


def test_recipes_cli(capsys):
    from pada.cli.main import main

    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in FORMER_SCRIPT) and f"{len(FORMER_SCRIPT)} recipes" in out
    assert main(["recipes", "--trainer", "pada"]) == 0
    listed = capsys.readouterr().out
    assert "pada-demo64-v3" in listed.splitlines()[0]
    assert listed.index("pada-demo64-v9 ") < listed.index("pada-demo64-v10 ")  # natural order
    assert main(["recipes", "diffae-demo64-1d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == recipes.load_recipe("diffae-demo64-1d").record()
    assert main(["recipes", "nope"]) == 1


def test_the_script_and_the_registry_use_the_recipes():
    script = (ROOT / "scripts" / "train_default_models.sh").read_text()
    used = re.findall(r"train (\w+) --recipe ([\w.-]+)", script)
    # kept to reproduce replaced models and tried runs (docs/pada_history.md)
    replaced = {"pada-demo64-v3", "pada-demo64-v4", "pada-demo64-v5", "pada-demo64-v6",
                "pada-demo64-v7", "pada-demo64-v7c", "pada-demo64-v7d", "pada-demo64-v7e", "pada-demo64-v7f",
                "pada-demo64-v7g", "pada-demo64-v7h", "pada-demo64-v7i", "pada-demo64-v7j", "pada-demo64-v7k",
                "pada-demo64-v7l", "pada-demo64-v7m", "pada-demo64-v8",
                "pada-demo64-v9", "pada-demo64-v10", "pada-demo64-v11", "pada-demo64-v12"}
    assert {n for _, n in used} == set(FORMER_SCRIPT) - replaced
    for trainer, name in used:
        assert recipes.load_recipe(name).trainer == trainer
    commands = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"--(pada|loss|model)-set|--batch-size|--lr ", commands)  # settings not repeated
    from pada import weights

    made_by = {"diffae-demo64": "diffae", "pada-demo64": "pada", "faceclip": "faceclip"}
    for entry, trainer in made_by.items():
        names = weights.get(entry).recipe["recipes"]
        assert names and all(recipes.load_recipe(n).trainer == trainer for n in names)
    last = recipes.load_recipe(weights.get("diffae-demo64").recipe["recipes"][-1])
    assert last.settings["preset"] == weights.get("diffae-demo64").recipe["preset"]


def test_the_recipe_is_recorded_with_the_weights(tmp_path):
    from pada.diffae.train import EXPORT_NAME, main
    from pada.networks.checkpoint import read_safetensors_metadata

    out = tmp_path / "run"
    path = _write(tmp_path, "tiny", {
        "trainer": "diffae", "description": "a tiny test run",
        "settings": {"data": "synthetic:blobs:8", "preset": "tiny32", "batch_size": 4, "steps": 1,
                     "no_progress": True, "holdout": 1, "sample_every": -1, "ckpt_every": 1,
                     "set": ["tensorboard=false"]}})
    assert main(["--recipe", path, "--out", str(out)]) == 0
    record = recipes.load_recipe(path).record()
    assert record["name"] == "tiny" and record["settings"]["preset"] == "tiny32"
    meta = read_safetensors_metadata(out / EXPORT_NAME)["metadata"]
    assert meta["recipe_file"] == record
    assert meta["recipe"] == f"pada train diffae --recipe {path} --out {out}"
    # the checkpoint carries it too, so an export from it records the recipe as well
    assert main(["--export-from", str(out / "checkpoints" / "step_00000001.pt"),
                 "--out", str(tmp_path / "again.safetensors")]) == 0
    assert read_safetensors_metadata(tmp_path / "again.safetensors")["metadata"]["recipe_file"] == record


def test_pada_and_faceclip_record_the_recipe(tmp_path):
    import torch.nn as nn

    from pada.aging.model import PadaModel
    from pada.aging.train import PadaTask, PadaTaskOptions
    from test_aging_helpers import tiny_model

    record = recipes.load_recipe("pada-demo64-v3").record()
    task = PadaTask(PadaTaskOptions(), recipe_file=record)
    assert task.state_dict() == {"recipe_file": record}
    [path] = task.export(nn.ModuleDict({"pada": tiny_model()}), tmp_path, {"steps": 1})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["recipe_file"]) == record
    assert PadaModel.load(path).cfg.z_dim == 64
    assert PadaTask(PadaTaskOptions()).state_dict() == {}
    with pytest.raises(PadaError, match="recipe faceclip-demo is for `pada train faceclip`"):
        recipes.parse_with_recipe(trainer_parser("pada"), ["--recipe", "faceclip-demo"], "pada")


@pytest.mark.parametrize("argv, message", [
    (["--recipe"], "argument --recipe: expected one argument"),
    (["--recipe", "diffae-demo64-1a", "--recipe=diffae-demo64-1b"], "give one recipe"),
    (["--data", "x", "--rec", "diffae-demo64-1a"], "write the option out in full"),  # not silently ignored
])
def test_the_recipe_option_itself(argv, message):
    with pytest.raises(PadaError, match=message):
        recipes.parse_with_recipe(trainer_parser("diffae"), argv, "diffae")
