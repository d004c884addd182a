"""bench_broken_faces: the by-eye labels it reads and how it scores a score against them."""

import json

import pytest
import torch

from bench_helpers import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_broken_faces")


def test_auc_counts_pairs_and_half_ties(bench):
    broken = torch.tensor([True, True, False, False])
    assert bench.auc(torch.tensor([0.9, 0.8, 0.1, 0.2]), broken) == 1.0  # every broken one worse
    assert bench.auc(torch.tensor([0.1, 0.2, 0.9, 0.8]), broken) == 0.0
    assert bench.auc(torch.tensor([0.5, 0.5, 0.5, 0.5]), broken) == 0.5  # ties: no information
    assert bench.auc(torch.tensor([0.9, 0.1, 0.5, 0.5]), broken) == 0.5
    assert bench.auc(torch.tensor([0.9, 0.8]), torch.tensor([True, True])) is None


def test_the_committed_labels_name_known_faces_and_groups(bench):
    from pada.data.groups import group_by_word

    doc = json.loads(bench.LABELS.read_text())
    faces = doc["faces"]
    assert len(faces) == len(set(faces)) == 32
    assert {s["split"] for s in doc["sets"]} == {"labelled first", "labelled after"}
    for s in doc["sets"]:
        group_by_word(s["group"])  # a known group word
        assert s["output"] in (0, 1) and set(s["broken"]) <= set(faces)


def test_a_missing_label_file_is_one_line_and_exit_2(bench, tmp_path, capsys):
    rc = bench.main(["--labels", str(tmp_path / "nope.json"), "--data", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nope.json" in err[0]


def test_render_uses_the_labelled_models_settings(bench):
    """The labels are v7h's results; the shipped file's defaults moved on (v7i), so the call passes v7h's."""
    from types import SimpleNamespace

    calls = []

    def age(image, **kw):
        calls.append(kw)
        return SimpleNamespace(images=torch.zeros(kw["n"], 3, 4, 4))

    doc = json.loads(bench.LABELS.read_text())
    assert doc["how_made"]["options"] == {"contrast_bound": 0.0, "draw_spread": 0.12}
    data = SimpleNamespace(images=torch.zeros(2, 3, 4, 4), genders=["female", "male"], files=["a", "b"])
    out = bench.render(SimpleNamespace(age=age), data, doc, 2)
    assert set(out) == {s["group"] for s in doc["sets"]} and out["eighties"].shape == (2, 2, 3, 4, 4)
    assert calls and all(c["contrast_bound"] == 0.0 and c["draw_spread"] == 0.12 for c in calls)
    assert [c["seed"] for c in calls[:2]] == [0, 1]
