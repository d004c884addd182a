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
