"""The evaluation runner with fake pipelines / critics (exact numbers) and one tiny real pipeline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pada.data.groups import group_by_word
from pada.errors import PadaError
from pada.evaluation.fid import CriticFeatures
from pada.evaluation.runner import (
    ID_MATCH_TOLERANCE,
    Critics,
    EvalConfig,
    EvalData,
    evaluate_pipeline,
    reconstruction_metrics,
    run_evaluation,
    search_baseline_strength,
    summary_table,
    to_markdown,
    write_report,
)


# ------------------------------------------------------------------------------------------ fakes
class Out:
    def __init__(self, images):
        self.images = images


class BrightnessAge(torch.nn.Module):
    """Age critic: age = 40 + 40 * mean pixel value."""

    def forward(self, x):
        return torch.as_tensor(40 + 40 * x.mean(dim=(1, 2, 3)))


class PooledId(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.normalize(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1), dim=1)


class FakePipeline:
    """Output brightness encodes the target age exactly (so the brightness critic reads it back), plus
    'high' noise on the whole image and 'low' noise per pixel, each from the seed."""

    def __init__(self, age_bias: float = 0.0):
        self.age_bias = age_bias
        self.calls = []

    def age(self, image, *, text=None, ref=None, n, seed, high_diversity, low_diversity, steps=None, **kw):
        from pada.aging.pipeline import target_age_of_text

        self.calls.append((text, n, seed, high_diversity, low_diversity))
        self.kwargs = kw
        if text is None:  # reference-guided: the reference's brightness, i.e. its age for BrightnessAge
            level = float(ref.mean()) + self.age_bias / 40
        else:
            level = (target_age_of_text(text) + self.age_bias - 40) / 40  # mean pixel value for that age
        out = torch.full((n, *image.shape[1:]), level)
        g = torch.Generator().manual_seed(seed)
        if high_diversity:
            out = out + 0.1 * torch.randn(n, 1, 1, 1, generator=g)
        if low_diversity:
            px = torch.randn(n, *image.shape[1:], generator=g)
            out = out + 0.05 * (px - px.mean(dim=(1, 2, 3), keepdim=True))  # zero-mean: age unchanged
        return Out(out.clamp(-1, 1))

    # DiffAE round trip for reconstruction_metrics: decode adds a constant offset
    def encode(self, x):
        return x.flatten(1)[:, :4]

    def invert(self, x, z, steps=None):
        return x

    def decode(self, x_t, z, steps=None):
        return x_t + 0.2


def _data(m=3, size=16, real_counts=None):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(m, 3, size, size, generator=g) * 2 - 1
    real_counts = real_counts or {}

    def real(group, n):
        k = min(real_counts.get(group, 5), n)
        gg = torch.Generator().manual_seed(100 + group)
        return torch.rand(k, 3, size, size, generator=gg) * 2 - 1

    return EvalData(images=images, files=[f"{i}.png" for i in range(m)], ages=torch.tensor([30.0] * m),
                    genders=(["female", "male"] * m)[:m], groups=torch.tensor([3] * m), real_loader=real,
                    source="fake set")


def _critics():
    idc = PooledId()
    return Critics(BrightnessAge(), idc, CriticFeatures(idc), {"age": "bright", "identity": "pool",
                                                              "fid_features": "pool"})


# ------------------------------------------------------------------------------------------ tests
def test_config_rejects_bad_values():
    with pytest.raises(PadaError, match="unknown age group"):
        EvalConfig(targets=("fifties",))
    with pytest.raises(PadaError):
        EvalConfig(main_mode="sideways")


def test_age_mae_reads_back_the_bias_and_modes_separate_diversity():
    data, critics = _data(), _critics()
    cfg = EvalConfig(targets=("twenties", "sixties"), n_outputs=3, diversity=True)
    res = evaluate_pipeline(FakePipeline(age_bias=5.0), data, critics, cfg)
    for word in cfg.targets:
        e = res["per_target"][word]
        assert e["target_age"] == group_by_word(word).center
        # the "low" mode adds zero-mean pixel noise only -> every output's age is target + 5 exactly
        assert e["modes"]["low"]["age_mae"] == pytest.approx(5.0, abs=1e-3)
        assert e["modes"]["low"]["diversity_age_std"] == pytest.approx(0.0, abs=1e-3)
        # the "high" mode shifts the brightness of each output: ages spread, pixels differ
        assert e["modes"]["high"]["diversity_age_std"] > 0.5
        assert e["modes"]["both"]["diversity_pixel"] > e["modes"]["high"]["diversity_pixel"] > 0
        assert e["age_mae"] == e["modes"]["high"]["age_mae"]  # main mode = high
        assert e["n_images"] == 3 * 3
        assert e["fd"] is not None and e["fd"] >= 0
    assert res["overall"]["age_mae"] == pytest.approx(np.mean([res["per_target"][w]["age_mae"]
                                                               for w in cfg.targets]))


def test_each_face_gets_its_gender_description_and_seed():
    data, critics = _data(m=2), _critics()
    pipe = FakePipeline()
    evaluate_pipeline(pipe, data, critics, EvalConfig(targets=("forties",), n_outputs=2, seed=7,
                                                      diversity=False))
    assert pipe.calls == [("woman's face in her forties", 2, 7, True, False),
                          ("man's face in his forties", 2, 8, True, False)]


def test_frechet_distance_needs_two_real_images():
    data = _data(real_counts={group_by_word("eighties").index: 1})
    res = evaluate_pipeline(FakePipeline(), data, _critics(), EvalConfig(targets=("eighties",), n_outputs=2,
                                                                         diversity=False))
    e = res["per_target"]["eighties"]
    assert e["fd"] is None and "needs >= 2 real" in e["fd_note"]


def test_reconstruction_psnr_of_a_constant_offset():
    data = _data(m=2)
    data.images = data.images.clamp(-0.5, 0.5)  # keep x + 0.2 inside [-1, 1]
    r = reconstruction_metrics(FakePipeline(), data.images)
    assert r["psnr"] == pytest.approx(20.0, abs=1e-3)  # 0.1 on the [0, 1] scale
    assert 0 < r["ssim"] < 1 and r["n_images"] == 2


class FakeBaseline:
    """Identity falls with strength: output = (1 - s/4) * source + (s/4) * fixed other image."""

    def __init__(self):
        self.other = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1

    def age(self, image, *, text, n, seed, high_diversity, low_diversity, steps=None, strength=1.0, **kw):
        w = min(strength / 4, 1.0)
        return Out(((1 - w) * image + w * self.other).repeat(n, 1, 1, 1))


def test_baseline_strength_search_matches_identity():
    data, critics = _data(), _critics()
    cfg = EvalConfig(targets=("sixties",), baseline_strengths=(0.5, 1.0, 2.0, 4.0), baseline_search_images=3)
    _, table = search_baseline_strength(FakeBaseline(), data, critics, cfg, target_id=1.0)
    ids = [r["id_similarity"] for r in table]
    assert ids == sorted(ids, reverse=True)  # monotone in strength for this fake
    for k, row in enumerate(table):
        s, _ = search_baseline_strength(FakeBaseline(), data, critics, cfg, target_id=row["id_similarity"])
        assert s == cfg.baseline_strengths[k]


def test_baseline_strength_search_refines_between_grid_points():
    data, critics = _data(), _critics()
    grid = EvalConfig(targets=("sixties",), baseline_strengths=(0.5, 4.0), baseline_search_images=3,
                      baseline_refine=0)
    _, table = search_baseline_strength(FakeBaseline(), data, critics, grid, target_id=1.0)
    target = 0.3 * table[0]["id_similarity"] + 0.7 * table[1]["id_similarity"]  # nearer the 4.0 end
    s0, _ = search_baseline_strength(FakeBaseline(), data, critics, grid, target_id=target)
    cfg = EvalConfig(targets=("sixties",), baseline_strengths=(0.5, 4.0), baseline_search_images=3,
                     baseline_refine=3)
    s, rows = search_baseline_strength(FakeBaseline(), data, critics, cfg, target_id=target)
    assert s0 == 4.0 and len(rows) == 5
    assert [r.get("refined", False) for r in rows] == [False] * 2 + [True] * 3
    assert rows[2]["strength"] == pytest.approx(2 ** 0.5)  # geometric mean of 0.5 and 4
    pick = next(r for r in rows if r["strength"] == s)
    assert 0.5 < s < 4.0 and abs(pick["id_similarity"] - target) < abs(table[1]["id_similarity"] - target)
    # a target outside the grid's range: nothing to bisect
    _, rows = search_baseline_strength(FakeBaseline(), data, critics, cfg, target_id=2.0)
    assert len(rows) == 2


def test_run_evaluation_report_markdown_and_files(tmp_path):
    data, critics = _data(), _critics()
    cfg = EvalConfig(targets=("twenties", "eighties"), n_outputs=2, baseline_strengths=(1.0, 3.0),
                     baseline_search_images=2)
    models = {"PADA": FakePipeline(), "w/o L_age": FakePipeline(age_bias=12.0)}
    rep = run_evaluation(models, data, critics, cfg, baseline=FakeBaseline(), baseline_note="fake",
                         training_critics={"age": "bright", "identity": "arcface"})
    assert set(rep["models"]) == {"PADA", "w/o L_age"}
    assert "reconstruction" in rep["models"]["PADA"] and "reconstruction" not in rep["models"]["w/o L_age"]
    assert set(rep["models"]["w/o L_age"]["per_target"]["twenties"]["modes"]) == {"high"}
    assert rep["models"]["w/o L_age"]["overall"]["age_mae"] > rep["models"]["PADA"]["overall"]["age_mae"] + 5
    assert rep["baseline"]["strength"] in (1.0, 3.0) and rep["baseline"]["note"] == "fake"
    assert any("also used in training" in n for n in rep["notes"])  # the age evaluator 'bright'
    assert any("not Inception-FID" in n for n in rep["notes"])
    # per-face values stored, and the faces resampled for the checks with thin margins
    pt = rep["models"]["PADA"]["per_target"]["twenties"]
    assert len(pt["age_mae_per_face"]) == data.images.shape[0]
    assert sum(pt["age_mae_per_face"]) / len(pt["age_mae_per_face"]) == pytest.approx(pt["age_mae"], abs=1e-5)
    assert len(pt["modes"]["both"]["diversity_id_per_face"]) == data.images.shape[0]
    dw = rep["models"]["PADA"]["done_when"]
    bs = dw["age_mae_below_baseline"]["bootstrap"]
    assert bs["value"] == pytest.approx(dw["age_mae_below_baseline"]["value"], abs=1e-5)
    assert bs["low"] <= bs["value"] <= bs["high"] and bs["n_faces"] == data.images.shape[0]
    assert bs["pass_share"] == bs["share_below"]  # the check passes below 0
    div = dw["high_level_diversity"]["bootstrap"]
    assert div["value"] == pytest.approx(dw["high_level_diversity"]["value"], rel=1e-5)
    assert div["threshold"] == 0.1 and div["pass_share"] == 1.0 - div["share_below"]
    assert dw["lifespan_spearman"]["bootstrap"]["value"] == pytest.approx(dw["lifespan_spearman"]["value"])
    text = summary_table(rep)
    assert "faces resampled (2000 draws, 95 % interval" in text and "MAE−baseline" in text
    assert "PAE diversity +" in text
    # the identity gap left by matching the strength on the search faces is reported, and said when large
    gap = dw["age_mae_below_baseline"]["id_gap"]
    ids = rep["models"]["PADA"]["overall"]["id_similarity"], rep["baseline"]["overall"]["id_similarity"]
    assert gap == pytest.approx(ids[0] - ids[1])
    assert ("MAE<baseline not at equal ID" in text) == (abs(gap) > ID_MATCH_TOLERANCE)
    dw["age_mae_below_baseline"]["id_gap"] = 0.016
    assert "ID minus the baseline's +0.016 (matched on 2 faces" in summary_table(rep)
    dw["age_mae_below_baseline"]["id_gap"] = 0.001
    assert "not at equal ID" not in summary_table(rep)
    assert "bootstrap" not in rep["models"]["w/o L_age"]["done_when"]["age_mae_below_baseline"]
    md = to_markdown(rep)
    assert "| w/o L_age | twenties (20.5) |" in md and "DiffAE linear (strength" in md and "PSNR" in md
    js, mdp = write_report(rep, tmp_path / "out")
    back = json.loads(js.read_text())
    mae = rep["models"]["PADA"]["overall"]["age_mae"]
    assert back["models"]["PADA"]["overall"]["age_mae"] == pytest.approx(mae)
    assert mdp.read_text() == md
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_text_eps_reaches_pada_but_not_the_baseline():
    data, critics = _data(m=2), _critics()
    cfg = EvalConfig(targets=("sixties",), n_outputs=2, baseline_strengths=(1.0,), baseline_search_images=1,
                     text_eps=0.05, diversity=False, reconstruction=False)
    pada, base = FakePipeline(), FakeBaseline()
    base.kwargs = None
    age = base.age

    def spy(*a, **kw):
        base.kwargs = kw
        return age(*a, **kw)

    base.age = spy
    run_evaluation({"PADA": pada}, data, critics, cfg, baseline=base)
    assert pada.kwargs == {"eps": 0.05}
    assert "eps" not in base.kwargs and "strength" in base.kwargs
    assert EvalConfig().text_eps is None and EvalConfig().baseline_strengths[-1] == 24.0


def test_tiny_real_pipeline_and_linear_baseline():
    """AgingPipeline + LinearBaselinePipeline on a random tiny DiffAE: the protocol runs end to end."""
    pytest.importorskip("pada.diffae")
    from pada.aging.baseline import LinearBaselinePipeline
    from pada.aging.pipeline import AgingPipeline
    from pada.aging.testing import TinyAgeCritic, TinyIdentityCritic, TinyVL
    from pada.evaluation.runner import fit_baseline_direction
    from test_aging_helpers import faces, tiny_diffae, tiny_model  # tests/ is on sys.path under pytest

    pipe = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(), steps=2)
    x = faces(2)
    fit_data = EvalData(images=x, files=["a.png", "b.png"], ages=torch.tensor([25.0, 60.0]),
                        genders=["female", "male"], groups=torch.tensor([2, 5]), source="tiny")
    data = EvalData(images=x[:1], files=["a.png"], ages=torch.tensor([25.0]), genders=["female"],
                    groups=torch.tensor([2]), real_loader=lambda g, n: faces(3, seed=g)[:n], source="tiny")
    idc = TinyIdentityCritic()
    critics = Critics(TinyAgeCritic(), idc, CriticFeatures(idc), {"age": "tiny-age", "identity": "tiny-id",
                                                                 "fid_features": "tiny-id"})
    cfg = EvalConfig(targets=("sixties",), n_outputs=2, steps=2, baseline_strengths=(1.0,),
                     baseline_search_images=1, pipeline_options={"low_noise": 0.3})
    direction, note = fit_baseline_direction(pipe, None, 32, cfg, eval_data=fit_data)
    assert "2 evaluation faces" in note
    base = LinearBaselinePipeline(pipe.diffae, direction, steps=2, low_noise=0.3)  # as `pada evaluate` does
    rep = run_evaluation({"PADA": pipe}, data, critics, cfg, baseline=base, baseline_note=note)
    e = rep["models"]["PADA"]["per_target"]["sixties"]
    for key in ("age_mae", "id_similarity", "fd"):
        assert math.isfinite(e[key])
    assert e["modes"]["both"]["diversity_pixel"] > 0  # own start noise + PAE samples differ
    b = rep["baseline"]["per_target"]["sixties"]
    assert b["modes"]["high"]["diversity_pixel"] == pytest.approx(0.0, abs=1e-6)  # no PAE: identical
    assert b["modes"]["low"]["diversity_pixel"] > 0
    [own] = [n.split("low-level share: ")[1] for n in rep["notes"] if "low-level share: " in n]
    assert "'low_noise': 0.3" in own  # the baseline's own share, listed with its guards
    r = rep["models"]["PADA"]["reconstruction"]
    assert math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1


def test_runner_calls_match_the_real_pipeline_signatures():
    import inspect

    from pada.aging.baseline import LinearBaselinePipeline
    from pada.aging.pipeline import AgingPipeline

    for cls, extra in ((AgingPipeline, ()), (LinearBaselinePipeline, ("strength",))):
        params = inspect.signature(cls.age).parameters
        for name in ("text", "n", "seed", "high_diversity", "low_diversity", "steps", *extra):
            assert name in params, (cls.__name__, name)
    for meth in ("encode", "invert", "decode"):
        assert callable(getattr(AgingPipeline, meth))
    assert list(inspect.signature(AgingPipeline.invert).parameters)[:4] == ["self", "image", "z_src", "steps"]


class BrightnessGender(torch.nn.Module):
    """Gender critic: a bright image is read as male (index 1), a dark one as female."""

    def forward(self, x):
        male = (x.mean(dim=(1, 2, 3)) > 0).float()
        return torch.stack([1 - male, male], 1)


def test_gender_kept_per_target_in_the_report_and_summary():
    data = _data(m=3)
    data.images = torch.full_like(data.images, -0.3)  # dark inputs: read as women
    critics = _critics()
    critics.gender = BrightnessGender()
    cfg = EvalConfig(targets=("twenties", "eighties"), n_outputs=2, baseline=False, lifespan=False,
                     reference=False, reconstruction=False)
    rep = run_evaluation({"PADA": FakePipeline()}, data, critics, cfg)
    per = rep["models"]["PADA"]["per_target"]
    # the fake pipeline's eighties are bright (read as men), its twenties dark
    assert per["twenties"]["gender_kept"] == 1.0 and per["eighties"]["gender_kept"] == 0.0
    assert rep["models"]["PADA"]["overall"]["gender_kept"] == pytest.approx(0.5)
    table = summary_table(rep)
    assert "gender" in table.splitlines()[3]
    assert "| 0% |" in to_markdown(rep)  # the eighties row's gender-kept cell
    plain = run_evaluation({"PADA": FakePipeline()}, data, _critics(), cfg)  # no gender critic: not measured
    assert plain["models"]["PADA"]["per_target"]["eighties"]["gender_kept"] is None


def test_paired_bootstrap_of_a_difference_over_faces():
    from pada.evaluation.metrics import bootstrap_interval, paired_bootstrap
    from pada.evaluation.runner import bootstrap_checks

    g = torch.Generator().manual_seed(0)
    base = 10 + 5 * torch.rand(2, 16, generator=g)  # (targets, faces): faces differ a lot
    # a method that is 1 year better on every face: the interval is that year exactly
    out = paired_bootstrap(base - 1, base)
    assert (out["value"], out["low"], out["high"]) == pytest.approx((-1, -1, -1))
    assert out["share_below"] == 1.0 and out["n_faces"] == 16
    # better on half the faces by 1, worse on the other half by 1: centred on 0, interval straddles it
    sign = torch.tensor([1.0, -1.0]).repeat(8)
    out = paired_bootstrap(base + sign, base, seed=3)
    assert out["value"] == pytest.approx(0, abs=1e-9) and out["low"] < 0 < out["high"]
    assert 0.2 < out["share_below"] < 0.8
    # pairing: a face offset shared by both methods does not widen the interval
    shared = 20 * torch.rand(1, 16, generator=g)
    a, b = paired_bootstrap(base + sign + shared, base + shared, seed=3), out
    assert (a["low"], a["high"]) == pytest.approx((b["low"], b["high"]))
    assert paired_bootstrap(base[0] - 1, base[0])["value"] == pytest.approx(-1)  # one row as a 1-D list
    with pytest.raises(ValueError, match="equally shaped"):
        paired_bootstrap(base, base[:, :8])
    with pytest.raises(ValueError, match="at least 2 faces"):
        paired_bootstrap([[1.0]], [[2.0]])
    # a ratio of two tables: the interval holds the value, and more faces give a narrower one
    on, off = 1.2 + 0.3 * torch.rand(1, 64, generator=g), torch.ones(1, 64)
    ratio = bootstrap_interval(lambda x, y: x.mean((-2, -1)) / y.mean((-2, -1)) - 1, on, off, threshold=0.1)
    few = bootstrap_interval(lambda x, y: x.mean((-2, -1)) / y.mean((-2, -1)) - 1, on[:, :8], off[:, :8])
    assert ratio["low"] < ratio["value"] < ratio["high"] and ratio["share_below"] == 0.0
    assert ratio["high"] - ratio["low"] < few["high"] - few["low"]
    with pytest.raises(ValueError, match="same F faces"):
        bootstrap_interval(lambda x, y: x.mean(), on, off[:, :8])
    # reports without per-face values (written before they were stored) give no interval, not an error
    sub = {"per_target": {"tens": {"age_mae_per_face": [1.0, 2.0]}},
           "lifespan": {"spearman_per_face": [0.95, float("nan"), 0.85]}}
    checks = bootstrap_checks(sub, {"per_target": {"tens": {}}})
    assert set(checks) == {"lifespan_spearman"}
    assert checks["lifespan_spearman"]["n_faces"] == 2  # the NaN face left out
    assert checks["lifespan_spearman"]["value"] == pytest.approx(0.9)
    paired = bootstrap_checks(sub, {"per_target": {"tens": {"age_mae_per_face": [2.0, 3.0]}}})
    assert paired["age_mae_below_baseline"]["value"] == -1.0
    assert paired["age_mae_below_baseline"]["pass_share"] == 1.0
