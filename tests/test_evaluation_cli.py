"""`pada evaluate` wiring: arguments -> data -> runner -> report files (fake pipeline and critics)."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from pada.cli.main import main
from pada.data.labels import label_row, write_labels
from pada.faces.io import save_image
from test_evaluation_runner import BrightnessAge, FakePipeline, PooledId  # tests/ is on sys.path


@pytest.fixture
def face_folder(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, age in enumerate([22, 24, 31, 45, 58, 63, 75, 78]):
        name = f"{i:03d}.png"
        save_image(tmp_path / "faces" / name, rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        rows.append(label_row(name, float(age), p_male=float(i % 2)))
    write_labels(tmp_path / "faces" / "labels.csv", rows)
    return tmp_path / "faces"


@pytest.fixture
def fakes(monkeypatch):
    from pada.aging import pipeline as pl
    from pada.evaluation import runner
    from pada.evaluation.fid import CriticFeatures

    made = []

    def from_pretrained(model, device=None, steps=25, trust_pickle=False, **kw):
        if not str(model).endswith(".safetensors"):
            from pada.errors import PadaError

            raise PadaError(f"{model}: no such PADA model file")
        p = FakePipeline()
        p.image_size = 32
        p.diffae, p.vl = object(), object()
        p.model = types.SimpleNamespace(cfg=types.SimpleNamespace(age_critic="dlib-age", id_critic="arcface",
                                                                  diffae="d", vl="v"))
        assert trust_pickle is False  # no --trust-pickle given
        p.sampler = kw.pop("sampler")
        made.append((model, device, steps, p.sampler, sorted(kw)))
        return p

    def load_critics(age, identity, fid, device="cpu", **kw):
        idc = PooledId()
        return runner.Critics(BrightnessAge(), idc, CriticFeatures(idc),
                              {"age": age, "identity": identity, "fid_features": fid})

    monkeypatch.setattr(pl.AgingPipeline, "from_pretrained", staticmethod(from_pretrained))
    monkeypatch.setattr(runner, "load_critics", load_critics)
    monkeypatch.setattr(pl.PadaModel, "read_config", staticmethod(
        lambda path: types.SimpleNamespace(diffae="d", vl="v")))
    monkeypatch.setattr(pl, "resolve_model", lambda m: m)
    return made


def test_evaluate_writes_report(face_folder, fakes, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["evaluate", "--model", "m.safetensors", "--data", str(face_folder), "--split", "all",
               "--targets", "twenties,eighties", "--n", "2", "--no-baseline", "--no-reconstruction",
               "--device", "cpu", "--out", str(out), "--quiet"])
    assert rc == 0
    md = capsys.readouterr().out
    assert "| PADA | twenties (20.5) |" in md and "| PADA | eighties (80) |" in md
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_faces"] == 8 and rep["config"]["targets"] == ["twenties", "eighties"]
    # FakePipeline renders the target age exactly in the 'low' mode; the brightness critic reads it back
    for word in ("twenties", "eighties"):  # 2 real faces in each of these groups (batched loader)
        e = rep["models"]["PADA"]["per_target"][word]
        assert e["fd_n_real"] == 2 and e["fd"] is not None and e["fd"] >= 0
    low = rep["models"]["PADA"]["per_target"]["twenties"]["modes"]["low"]
    assert low["age_mae"] == pytest.approx(0, abs=1e-3)
    assert any("also used in training" in n for n in rep["notes"])  # dlib-age trained and evaluates
    assert (out / "report.md").read_text() == md
    assert fakes == [("m.safetensors", "cpu", 25, "ddim", [])]  # the paper's protocol by default


def test_evaluate_ablation_and_errors(face_folder, fakes, capsys):
    rc = main(["evaluate", "--model", "m.safetensors", "--ablation", "w/o L_id=a.safetensors", "--data",
               str(face_folder), "--split", "all", "--targets", "sixties", "--n", "1", "--no-baseline",
               "--no-diversity", "--no-reconstruction", "--device", "cpu", "--quiet", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert list(rep["models"]) == ["PADA", "w/o L_id"]
    assert rep["model_paths"]["w/o L_id"] == "a.safetensors"
    assert fakes[-1] == ("a.safetensors", "cpu", 25, "ddim", ["diffae", "vl"])  # shares the frozen models
    assert main(["evaluate", "--model", "m.safetensors", "--data", str(face_folder),
                 "--targets", "fifties"]) == 1
    assert "unknown age group 'fifties'" in capsys.readouterr().err
    assert main(["evaluate", "--model", "m.safetensors", "--data", str(face_folder / "nope"), "--quiet",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope: no such folder" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", "m.safetensors", "--data", str(face_folder), "--ablation", "noequals"])


def test_evaluate_quick_preset_and_pipeline_options(face_folder, fakes, tmp_path, capsys):
    out = tmp_path / "quick"
    rc = main(["evaluate", "--model", "m.safetensors", "--data", str(face_folder), "--split", "all",
               "--quick", "--n", "3", "--pipeline-option", "shift_bound=0.3", "--device", "cpu",
               "--out", str(out), "--quiet"])
    assert rc == 0
    md = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    c = rep["config"]
    # the preset: 4 faces, 10 steps, all seven targets, diversity on sixties, no baseline / FD; --n wins
    assert rep["n_faces"] == 4 and c["steps"] == 10 and c["n_outputs"] == 3 and len(c["targets"]) == 7
    assert c["diversity_targets"] == ["sixties"] and "baseline" not in rep
    assert rep["critics"]["fid_features"] == "none" and c["pipeline_options"] == {"shift_bound": 0.3}
    sub = rep["models"]["PADA"]
    assert "reference" in sub and "lifespan" not in sub and "reconstruction" not in sub
    assert sub["overall"]["target_spearman"] is not None  # monotonicity from the seven targets' outputs
    assert md.rstrip().endswith("```") and "done when:" in md  # the summary closes the markdown
    assert fakes == [("m.safetensors", "cpu", 10, "ddim", [])]
    # the contact sheet: 4 faces x (input + 7 targets) of 32 px with 2 px padding
    from pada.faces.io import load_image

    sheet = load_image(out / "outputs_PADA.png")
    assert sheet.shape == (4 * 34 + 2, 8 * 34 + 2, 3)
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", "m.safetensors", "--data", str(face_folder), "--pipeline-option", "x"])


def test_evaluate_sampler_option_reaches_every_pipeline_and_the_report(face_folder, fakes, capsys):
    rc = main(["evaluate", "--model", "m.safetensors", "--data", str(face_folder), "--split", "all",
               "--targets", "sixties", "--n", "1", "--no-baseline", "--no-diversity", "--no-reconstruction",
               "--device", "cpu", "--quiet", "--json", "--sampler", "multistep"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert fakes[-1] == ("m.safetensors", "cpu", 8, "multistep", [])  # the sampler's own default steps
    assert rep["sampling"]["PADA"]["sampler"] == "multistep"


def test_training_faces_are_a_seeded_choice_of_the_train_split(face_folder):
    from pada.errors import PadaError
    from pada.evaluation.runner import load_eval_data, training_faces

    folder = face_folder
    a = training_faces(folder, 32, n=3, seed=0)
    assert [it["file"] for it in a] == [it["file"] for it in training_faces(folder, 32, n=3, seed=0)]
    assert len(a) == 3 and a[0]["image"].shape == (3, 32, 32)
    test = set(load_eval_data(folder, 32, test_fraction=0.5).files)
    every = training_faces(folder, 32, n=100, seed=1, test_fraction=0.5)
    assert every and not test & {it["file"] for it in every}  # never a test face
    with pytest.raises(PadaError, match="train split"):
        training_faces(folder, 32, n=2, test_fraction=0.999999)
