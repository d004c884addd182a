"""The shipped default models load offline and `pada age` runs with them out of the box."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pada import weights
from pada.cli.main import main


@pytest.mark.parametrize("name", ["diffae-demo64", "pada-demo64", "faceclip"])
def test_shipped_weights_resolve_with_their_checksum(name):
    path = weights.resolve(name)  # sha256-checked
    entry = weights.get(name)
    assert path.is_file() and entry.repo_path and entry.recipe.get("command")


def test_shipped_pipeline_names_its_frozen_models():
    from pada.aging.model import PadaModel

    cfg = PadaModel.read_config(weights.resolve("pada-demo64"))
    assert cfg.diffae == "diffae-demo64" and cfg.vl == "faceclip"


@pytest.mark.slow
def test_pada_age_runs_out_of_the_box(tmp_path, capsys):
    from pada.faces import samples

    try:
        img = samples.grace_hopper()  # public-domain portrait shipped by matplotlib
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"sample photo unavailable: {exc}")
    photo = tmp_path / "hopper.png"
    Image.fromarray(img).save(photo)
    out = tmp_path / "aged.png"
    assert main(["age", str(photo), "--text", "woman's face in her sixties", "-n", "2", "--steps", "4",
                 "--out", str(out), "--device", "cpu"]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape[1] > 3 * 64 and grid.std() > 5  # input + 2 results, not a blank image
