"""The shipped default models load offline and `pada age` runs with them out of the box."""

from __future__ import annotations

from pathlib import Path

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
def _readme_command(prefix: str) -> str:
    """The README's first shell line starting with ``prefix`` (so the test runs what the README says)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for line in readme.splitlines():
        if line.startswith(prefix):
            return line
    raise AssertionError(f"README has no line starting with {prefix!r}")


def test_readme_main_command_runs_verbatim(tmp_path, capsys, monkeypatch):
    """The README's main-job command, copied verbatim, writes a labelled grid from the shipped sample photo
    with the shipped default model."""
    import shlex

    cmd = shlex.split(_readme_command("pada age --example"))
    monkeypatch.chdir(tmp_path)
    assert main(cmd[1:]) == 0
    out = tmp_path / cmd[cmd.index("--out") + 1]
    grid = np.asarray(Image.open(out))
    assert grid.shape[1] > 5 * 128 and grid.std() > 5  # input + 4 results at >= 128 px, not blank
    assert "grace_hopper.jpg: face 0: box" in capsys.readouterr().out


DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def _held_out(size: int = 64):
    """The demo set's test split at ``size`` px (the held-out faces); skips the test where it is not built."""
    from pada.data.datasets import AlignedFaceDataset

    if not (DEMO / "aligned" / str(size)).is_dir():
        pytest.skip(f"demo set not built at {DEMO} (bash scripts/setup.sh builds it)")
    return AlignedFaceDataset(DEMO / "aligned" / str(size), DEMO / "labels.csv", size=size, split="test")

# (network, least SFace to its own face, least margin over someone else's z) on these 8 faces. Measured
# (T = 10): diffae-demo64 (stage 1f) own 0.269 vs swapped 0.124; diffae-demo64-1g (built, not shipped: the
# case runs where its file is installed) own 0.424 vs 0.111.
CARRIES_THE_FACE = [("diffae-demo64", 0.10, 0.015), ("diffae-demo64-1g", 0.35, 0.2)]


@pytest.mark.parametrize("name,own_min,own_margin", CARRIES_THE_FACE)
def test_shipped_diffae_code_carries_the_face(name, own_min, own_margin):
    """Rendering from fresh noise with z alone gives back the person more than someone else's z does
    (held-out demo faces; the quality gate of issue 7, measured in full by bench_diffae_quality.py)."""
    import torch

    from pada.critics.registry import load_critic
    from pada.data.datasets import AlignedFaceDataset
    from pada.diffae import DiffAE
    from pada.evaluation.metrics import identity_similarity

    if not (DEMO / "aligned" / "64").is_dir():
        pytest.skip(f"demo set not built at {DEMO} (bash scripts/setup.sh builds it)")
    from pada.errors import MissingWeightsError

    try:
        weights.resolve(name)
    except MissingWeightsError:
        pytest.skip(f"{name}: weights not installed ({weights.get(name).how_to_get})")
    ds = AlignedFaceDataset(DEMO / "aligned" / "64", DEMO / "labels.csv", size=64, split="test")
    x = torch.stack([ds[i]["image"] for i in range(8)])
    diffae = DiffAE.from_pretrained(name)
    assert diffae.config.prediction == "v"  # the file's own config wins over the registry preset
    with torch.inference_mode():
        z = diffae.encode(x)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        own = diffae.render(noise, z, T=10)
        swapped = diffae.render(noise, z.roll(1, 0), T=10)
    sface = load_critic("sface")
    cos_own = identity_similarity(sface, x, own).mean()
    cos_other = identity_similarity(sface, x, swapped).mean()
    assert float(cos_own) > float(cos_other) + own_margin, (float(cos_own), float(cos_other))
    assert float(cos_own) > own_min


def test_shipped_pada_keeps_a_face_for_old_targets():
    """The shipped PADA ages held-out faces into faces, not into critic-fooling texture: YuNet finds a face in
    every "eighties" output and its high-frequency energy stays within 1.5x the input's (v1, trained without
    the texture guards, failed both: no face was found in its old-target outputs), and each keeps its skin's
    structure (v7h, without the contrast bound v7i ships and the structure back-off of v7k, broke three of
    these four: 1 - SSIM 0.14-0.16)."""
    import torch

    from pada.aging.pipeline import AgingPipeline
    from pada.data.groups import description
    from pada.evaluation.scores import STRUCTURE_LIMIT, FaceFinder, hf_energy_ratio, structure_change

    ds = _held_out()
    pipe = AgingPipeline.from_pretrained("pada-demo64")
    assert pipe.model.cfg.max_shift > 0  # the bounded latent shift travels with the model file
    assert pipe.model.cfg.contrast_bound > 0  # and so does the contrast bound
    assert pipe.model.cfg.structure_guard > 0  # and the structure back-off (v7k)
    inputs, outputs, unbounded = [], [], []
    for i in range(4):
        item = ds[i]
        for off, out in ((None, outputs), (0.0, unbounded)):  # shipped defaults; v7h (no bound or guard)
            res = pipe.age(item["image"], text=description(6, item["gender"]), n=1, high_diversity=False,
                           steps=10, contrast_bound=off, structure_guard=off)
            out.append(res.images)
        inputs.append(item["image"][None])
    x, y = torch.cat(inputs), torch.cat(outputs)
    assert bool(FaceFinder()(y).all())
    assert bool((hf_energy_ratio(y, x) <= 1.5).all())
    assert float((y - x).abs().mean()) > 0.02  # and it does change the image
    lost = structure_change(y, x)
    assert bool((lost <= STRUCTURE_LIMIT).all()), lost
    assert float(structure_change(torch.cat(unbounded), x).mean()) > float(lost.mean())


def test_shipped_pada_low_level_diversity_keeps_the_person():
    """Low-level diversity with the shipped model (v7l: ``low_noise`` 0.3, the inverted start mixed with fresh
    noise): the results of one request differ, yet SFace reads them as the input's person, far more than
    results from fresh start noise alone (v7k's low-level diversity; identity 0.23 on 32 held-out faces)."""
    import torch

    from pada.aging.pipeline import AgingPipeline
    from pada.critics.registry import load_critic
    from pada.data.groups import description
    from pada.evaluation.metrics import embed

    ds = _held_out()
    pipe = AgingPipeline.from_pretrained("pada-demo64")
    assert pipe.model.cfg.low_noise == pytest.approx(0.3)  # travels with the model file
    sface = load_critic("sface")
    ids, variety = {None: [], 1.0: []}, []
    for i in range(4):
        item = ds[i]
        for share in ids:
            y = pipe.age(item["image"], text=description(6, item["gender"]), n=2, seed=i, steps=10,
                         high_diversity=False, low_diversity=True, low_noise=share).images
            e = embed(sface, torch.cat([item["image"][None], y]))
            ids[share].append(float((e[1:] @ e[0]).mean()))
            if share is None:
                variety.append(float((y[0] - y[1]).abs().mean()))
    kept, fresh = (sum(v) / len(v) for v in ids.values())
    assert kept > 0.6 and kept > fresh + 0.25, ids
    assert min(variety) > 0.01, variety  # the two results differ (the PAE mean is shared: only the noise)


def test_shipped_pada_results_differ_in_proportion_to_how_far_they_are_asked_to_move():
    """The spread cap of the shipped model (v7m: ``spread_cap`` 0.5, each draw's spread offset at most half
    its own edit): at "twenties", a short edit for these faces, the N results differ about half as much as
    with the spread uncapped (where they were mostly the offset: lighting, hair tone, and on young targets
    broken faces) and keep the person at least as well; at "eighties", a long edit, the cap changes little.
    On 4 held-out faces; measured on 16 in docs/pada_history.md ("Shipped model (v7m)")."""
    import torch

    from pada.aging.pipeline import AgingPipeline
    from pada.critics.registry import load_critic
    from pada.data.groups import description
    from pada.evaluation.metrics import embed

    ds = _held_out()
    pipe = AgingPipeline.from_pretrained("pada-demo64")
    assert pipe.model.cfg.spread_cap == pytest.approx(0.5)  # travels with the model file
    sface = load_critic("sface")
    variety, ids = {}, {}
    for group in (2, 6):  # twenties, eighties
        for cap in (None, 0.0):  # the model's cap, no cap
            for i in range(4):
                item = ds[i]
                y = pipe.age(item["image"], text=description(group, item["gender"]), n=3, seed=i, steps=10,
                             spread_cap=cap, calibrate=False).images  # the cap acts alike on any length
                e = embed(sface, torch.cat([item["image"][None], y]))
                ids.setdefault((group, cap), []).append(float((e[1:] @ e[0]).mean()))
                variety.setdefault((group, cap), []).append(float((y[:, None] - y[None]).abs().mean((2, 3, 4))
                                                                  .sum() / 6))  # mean over the 3 pairs
    young = [a / b for a, b in zip(variety[(2, None)], variety[(2, 0.0)])]
    old = [a / b for a, b in zip(variety[(6, None)], variety[(6, 0.0)])]
    assert max(young) < 0.7 and min(variety[(2, None)]) > 0.02, variety  # less variety, still some
    assert min(old) > 0.8, variety  # a long edit keeps its spread
    assert sum(ids[(2, None)]) >= sum(ids[(2, 0.0)]), ids


def test_shipped_pada_results_on_the_photos_crop_are_sharp_and_closer_to_the_person():
    """The detail transfer (``image_hr``) on held-out faces with the shipped model: the 256 px results keep
    the photo's high-frequency energy (the enlarged 64 px results keep about a tenth of it), a face is found
    in each, and SFace reads them as nearer the input than the enlarged results (measured in full by
    benchmarks/bench_detail_transfer.py: 0.83 against 0.79 over 16 faces x 7 targets x 4)."""
    import torch

    from pada.aging.detail import upsample
    from pada.aging.pipeline import AgingPipeline
    from pada.critics.registry import load_critic
    from pada.data.groups import description
    from pada.evaluation.metrics import identity_similarity
    from pada.evaluation.scores import FaceFinder, laplacian_energy

    big, small = _held_out(256), _held_out()
    pipe = AgingPipeline.from_pretrained("pada-demo64")
    inputs, sharp, enlarged = [], [], []
    for i in range(4):
        item, hr = small[i], big[i]["image"]
        res = pipe.age(item["image"], text=description(5, item["gender"]), n=1, high_diversity=False,
                       image_hr=hr)
        inputs.append(hr[None])
        sharp.append(res.images_hr)
        enlarged.append(upsample(res.images, 256))
    x, y, u = torch.cat(inputs), torch.cat(sharp), torch.cat(enlarged)
    assert y.shape == (4, 3, 256, 256) and bool(FaceFinder()(y).all())
    kept = laplacian_energy(y) / laplacian_energy(x)
    assert bool((kept > 0.5).all()) and float((laplacian_energy(u) / laplacian_energy(x)).max()) < 0.3
    sface = load_critic("sface")
    assert float(identity_similarity(sface, x, y).mean()) > float(identity_similarity(sface, x, u).mean())


def test_shipped_pada_lifespan_ages_step_by_step():
    """The shipped model spaces its lifespan's anchors (``space_lifespan``, since v7j): without it "sixties"
    and "eighties" both reach the contrast bound and render nearly alike (mean pixel change between the two
    frames 0.007-0.029 on the first held-out faces) while forty to sixty jumps; spaced, that last step is
    several times larger and the largest step smaller (on 32 faces the sweep's Spearman rose from 0.840 to
    0.876)."""
    import torch

    from pada.aging.pipeline import AgingPipeline

    ds = _held_out()
    pipe = AgingPipeline.from_pretrained("pada-demo64")
    assert pipe.model.cfg.space_lifespan  # the setting travels with the model file
    steps = {}
    for space in (True, False):
        rows = []
        for i in (0, 2):
            item = ds[i]
            im = pipe.lifespan(item["image"], gender=item["gender"], frames_per_segment=1, steps=4,
                               space=space, structure_guard=0.0).images  # the spacing alone (v7j)
            rows.append((im[1:] - im[:-1]).abs().mean(dim=(1, 2, 3)))  # (6,) change, anchor to anchor
        steps[space] = torch.stack(rows)
    assert bool((steps[True][:, -1] > 3 * steps[False][:, -1]).all()), steps
    # and no step carries most of the change (unspaced: the forty-to-sixty one, 0.11)
    assert bool((steps[True].max(dim=1).values < steps[False].max(dim=1).values).all()), steps


def test_shipped_pada_young_targets_are_shorter_edits_that_keep_the_eyes():
    """The young cap of the shipped model (v7n: ``young_cap`` 0.5): a target younger than the face gets a
    calibrated edit of at most half the modulation's own, where uncapped the calibration picked 0.75-1.25
    because the VL read-out takes darkened eyes and brows for youth. Capped, the eye band darkens less
    (the grey, lilac and heavy-brow results of the long edits, docs/pada_method.md "Shipped model (v7n)"),
    the results keep more of the person and still read younger than the input. On 4 held-out faces at
    "toddler"; measured on 16 and 32 in docs/pada_method.md."""
    import torch

    from pada.aging.pipeline import AgingPipeline
    from pada.critics.registry import load_critic
    from pada.data.groups import description
    from pada.evaluation.metrics import embed, predict_ages

    def eye_band(t):  # mean luma (0-1) of the brow-and-eye band of a 64 px aligned crop
        y = (0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2] + 1) / 2
        return y[:, 24:32, 18:46].mean(dim=(1, 2))

    ds = _held_out()
    pipe = AgingPipeline.from_pretrained("pada-demo64")
    assert pipe.model.cfg.young_cap == pytest.approx(0.5)  # travels with the model file
    sface, age = load_critic("sface"), load_critic("dlib-age")
    dark, ids, ages, inputs = {}, {}, {}, []
    for i in range(4):
        item = ds[i]
        x = item["image"][None]
        inputs.append(float(predict_ages(age, x)[0]))
        for cap in (None, 0.0):  # the model's cap, no cap
            r = pipe.age(item["image"], text=description(0, item["gender"]), n=2, seed=i,
                         **({} if cap is None else {"young_cap": cap}))
            assert (r.calibration["factor"] <= 0.5) == (cap is None), r.calibration  # uncapped: 0.75-1.25
            dark.setdefault(cap, []).append(float((eye_band(x) - eye_band(r.images)).mean()))
            e = embed(sface, torch.cat([x, r.images]))
            ids.setdefault(cap, []).append(float((e[1:] @ e[0]).mean()))
            ages.setdefault(cap, []).append(float(predict_ages(age, r.images).mean()))
    assert sum(dark[None]) < 0.8 * sum(dark[0.0]), dark  # the eyes and brows darken less (measured 0.72x)
    assert sum(ids[None]) > sum(ids[0.0]), ids  # more of the person kept
    assert sum(ages[None]) < sum(inputs) - 4 * 2.0, (ages, inputs)  # still younger than the input, on average
