"""The contrast bound (pada.aging.backoff.bound_contrast): every edit is shortened, before it is rendered,
so that its change to the DiffAE's coarse image stays within a multiple of the input's coarse-image
contrast; in the pipeline (outputs, calibration, lifespan), the linear baseline and ``pada age`` (tiny
random models)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pada.aging.backoff import bound_contrast, contrast_bound_value
from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline
from pada.aging.pipeline import AgingPipeline
from pada.aging.testing import TinyVL
from pada.diffae import DiffAE
from pada.errors import PadaError
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet
from test_aging_helpers import faces, one_thread, tiny_diffae, tiny_model

TEXT = "man's face in his eighties"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def _linear_stand_in(seed: int = 0):
    """A DiffAE stand-in whose coarse image is a fixed linear map of z (as the eigenface code is)."""
    m = torch.randn(8, 3 * 4 * 4, generator=torch.Generator().manual_seed(seed))
    unet = SimpleNamespace(coarse=object(), coarse_image=lambda z: (z @ m).view(-1, 3, 4, 4))
    return SimpleNamespace(unet=unet)


def _ratio(diffae, z_src, z):
    """(N,) coarse change of each row's edit over its source's coarse contrast (one or one per row)."""
    c0 = diffae.unet.coarse_image(z_src)
    flat = c0.flatten(1)
    contrast = (flat - flat.mean(dim=1, keepdim=True)).norm(dim=1)
    return (diffae.unet.coarse_image(z) - c0).flatten(1).norm(dim=1).detach() / contrast


def test_bound_shortens_long_edits_along_their_own_direction_and_leaves_short_ones():
    d = _linear_stand_in()
    g = torch.Generator().manual_seed(1)
    z_src = torch.randn(1, 8, generator=g)
    edits = torch.randn(3, 8, generator=g) * torch.tensor([[0.05], [1.0], [3.0]])  # short, long, longer
    z = z_src + edits
    before = _ratio(d, z_src, z)
    assert before[0] < 0.4 < before[1] < before[2]
    out = bound_contrast(d, z_src, z, 0.4)
    assert torch.equal(out[0], z[0])  # within the bound: untouched
    after = _ratio(d, z_src, out)
    torch.testing.assert_close(after[1:], torch.full((2,), 0.4), rtol=1e-4, atol=1e-5)  # at the bound
    for k in (1, 2):  # the same direction, shorter
        f = float((out[k] - z_src[0]).norm() / edits[k].norm())
        torch.testing.assert_close(out[k] - z_src[0], f * edits[k], rtol=1e-4, atol=1e-5)
        assert 0.0 < f < 1.0
    assert torch.equal(bound_contrast(d, z_src, z, 0.0), z)  # 0 = off


def test_bound_needs_a_coarse_image_path_and_a_sane_value():
    plain = tiny_diffae()  # tiny32 without a coarse path
    z = torch.zeros(2, 64)
    with pytest.raises(PadaError, match="coarse image path"):
        bound_contrast(plain, z[:1], z, 0.5)
    assert torch.equal(bound_contrast(plain, z[:1], z, 0.0), z)
    for bad in (-0.1, 11.0, float("nan"), "x"):
        with pytest.raises(PadaError, match="contrast bound"):
            contrast_bound_value(bad)


def _coarse_pipeline(**cfg) -> AgingPipeline:
    torch.manual_seed(0)
    unet = DiffAEUNet(load_preset("tiny32").replace(coarse_size=8))
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return AgingPipeline(DiffAE(unet.eval()), TinyVL(dim=32), tiny_model(init_gain=0.3, **cfg), steps=2)


def test_pipeline_bounds_outputs_calibration_and_lifespan():
    p = _coarse_pipeline()
    x = faces(1)
    z_src = p.encode(x)
    free = p.age(x, text=TEXT, n=2, seed=0, calibrate=False)
    ratio = _ratio(p.diffae, z_src, free.z_age)
    bound = 0.5 * float(ratio.min())  # both outputs are over it
    held = p.age(x, text=TEXT, n=2, seed=0, calibrate=False, contrast_bound=bound)
    for k in range(2):  # each edit shortened along itself, by the factor its coarse change asks for
        f = bound / float(ratio[k])
        torch.testing.assert_close(held.z_age[k], (z_src + f * (free.z_age[k:k + 1] - z_src))[0],
                                   rtol=1e-4, atol=1e-5)
    assert not torch.equal(held.images, free.images)
    # the calibration's candidates are bounded too: a long candidate of an over-long edit sits at the bound
    e_mean = p.pae(text=TEXT, n=1, high_diversity=False)
    x_T = p.invert(x, z_src, 2)
    seen = []
    real_decode = p.decode
    p.decode = lambda x_T, z, *a, **k: seen.append(z.clone()) or real_decode(x_T, z, *a, **k)  # noqa: N803
    cal = p.calibrate(x_T, z_src, e_mean, contrast_bound=bound)
    z_mean = p.modulate(z_src, e_mean, contrast_bound=0.0)
    free_codes = torch.cat([z_src + f * (z_mean - z_src) for f in cal["factors"]])
    torch.testing.assert_close(seen[-1], bound_contrast(p.diffae, z_src, free_codes, bound))
    assert not torch.equal(seen[-1], free_codes)
    p.decode = real_decode
    # the lifespan's anchors (and the frames between them); the model's own value is the default
    sweep = p.lifespan(x, gender="male", frames_per_segment=1, calibrate=False, contrast_bound=bound)
    stored = _coarse_pipeline(contrast_bound=bound)
    assert torch.equal(stored.lifespan(x, gender="male", frames_per_segment=1, calibrate=False).images,
                       sweep.images)
    assert torch.equal(stored.age(x, text=TEXT, n=2, seed=0, calibrate=False).z_age, held.z_age)
    with pytest.raises(PadaError, match="contrast bound"):
        p.age(x, text=TEXT, n=1, contrast_bound=-1.0)
    with pytest.raises(PadaError, match="coarse image path"):  # a DiffAE without one says so
        AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(), steps=2).age(x, text=TEXT,
                                                                                contrast_bound=0.5)


def test_linear_baseline_takes_the_bound():
    p = _coarse_pipeline()
    x = faces(1)
    g = torch.Generator().manual_seed(0)
    d = LinearAgeDirection.fit(torch.randn(50, 64, generator=g), torch.rand(50, generator=g) * 60 + 10)
    free = LinearBaselinePipeline(p.diffae, d, steps=2).age(x, target_age=80.0, strength=20.0)
    z_src = p.encode(x)
    bound = 0.5 * float(_ratio(p.diffae, z_src, free.z_age)[0])
    base = LinearBaselinePipeline(p.diffae, d, steps=2, contrast_bound=bound)
    held = base.age(x, target_age=80.0, strength=20.0)
    assert (held.z_age - z_src).norm() < (free.z_age - z_src).norm()
    assert torch.equal(base.age(x, target_age=80.0, strength=20.0, contrast_bound=0.0).z_age, free.z_age)
    with pytest.raises(PadaError, match="contrast bound"):
        LinearBaselinePipeline(p.diffae, d, steps=2, contrast_bound=20.0)


def test_cli_option(tmp_path, capsys, monkeypatch):
    import pada.cli.age as age_cli
    from pada.cli.main import main

    p = _coarse_pipeline()
    monkeypatch.setattr(age_cli, "load_pipeline", lambda model, device, steps, trust_pickle=False: p)
    from PIL import Image

    crop = tmp_path / "crop.png"
    Image.fromarray((faces(1)[0].permute(1, 2, 0).numpy() * 127.5 + 127.5).astype("uint8")).save(crop)
    seen = []
    real_age = p.age
    monkeypatch.setattr(p, "age", lambda *a, **k: seen.append(k.get("contrast_bound")) or real_age(*a, **k))
    args = ["age", str(crop), "--aligned", "--age", "70", "-n", "1", "--device", "cpu", "--no-estimates",
            "--out", str(tmp_path / "a.png")]
    assert main([*args, "--contrast-bound", "0.4"]) == 0 and seen[-1] == pytest.approx(0.4)
    assert main(args) == 0 and seen[-1] is None  # the model's own
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        main([*args, "--contrast-bound", "11"])
    assert bad.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--contrast-bound" in err[0]


def test_evaluation_baseline_gets_the_model_bound_or_the_option(tmp_path):
    from pada.cli.evaluate import _baseline

    main = _coarse_pipeline(contrast_bound=0.3)
    g = torch.Generator().manual_seed(0)
    path = LinearAgeDirection.fit(torch.randn(50, 64, generator=g),
                                  torch.rand(50, generator=g) * 60 + 10).save(tmp_path / "w.safetensors")
    args = SimpleNamespace(baseline_direction=str(path), pipeline_option=[])
    assert _baseline(args, None, main, None, 32, "cpu", 2)[0].contrast_bound == pytest.approx(0.3)
    args.pipeline_option = [("contrast_bound", 0.2)]
    assert _baseline(args, None, main, None, 32, "cpu", 2)[0].contrast_bound == pytest.approx(0.2)
    # and the low-level diversity's share the same way (the model's, else the option)
    assert _baseline(args, None, main, None, 32, "cpu", 2)[0].low_noise == main.model.cfg.low_noise
    args.pipeline_option = [("low_noise", 0.3)]
    assert _baseline(args, None, main, None, 32, "cpu", 2)[0].low_noise == pytest.approx(0.3)


def test_bound_per_row_source_and_its_gradient_for_training():
    d = _linear_stand_in(2)
    g = torch.Generator().manual_seed(4)
    z_src = torch.randn(3, 8, generator=g)
    edits = torch.randn(3, 8, generator=g) * torch.tensor([[0.05], [2.0], [3.0]])
    rows = torch.cat([bound_contrast(d, z_src[k:k + 1], z_src[k:k + 1] + edits[k:k + 1], 0.4)
                      for k in range(3)])
    torch.testing.assert_close(bound_contrast(d, z_src, z_src + edits, 0.4), rows)  # one source per row
    assert torch.equal(rows[0], (z_src + edits)[0])
    # grad=True: a held edit's rendered length is fixed, so the gradient cannot lengthen it
    z = (z_src + edits).requires_grad_(True)
    out = bound_contrast(d, z_src, z, 0.4, grad=True)
    torch.testing.assert_close(out.detach(), rows)
    (out * edits).sum().backward()  # how far each output goes along its own edit
    along = (z.grad * edits).sum(dim=1)
    assert along[0] == pytest.approx(float(edits[0].square().sum()), rel=1e-5)  # unheld: free
    torch.testing.assert_close(along[1:], torch.zeros(2), atol=1e-5, rtol=0)  # held: no longer at any length
    z2 = (z_src + edits).requires_grad_(True)
    (bound_contrast(d, z_src, z2, 0.4) * edits).sum().backward()  # inference form: the factor is a constant
    assert float((z2.grad * edits).sum(dim=1)[1]) > 0.01


def _coarse_frozen():
    from pada.aging.objective import Frozen
    from pada.aging.testing import TinyAgeCritic, TinyIdentityCritic

    return Frozen(_coarse_pipeline().diffae, TinyVL(dim=32), TinyAgeCritic(), TinyIdentityCritic())


def test_train_bound_shows_the_losses_the_bounded_edit():
    from pada.aging.config import LossConfig
    from pada.aging.objective import PadaObjective
    from pada.aging.train import PadaTask, PadaTaskOptions
    from test_aging_helpers import PairDataset, frozen_set, pair_batch

    fr = _coarse_frozen()
    model = tiny_model(init_gain=0.5)

    def step(cfg):
        obj = PadaObjective(model, fr, cfg)
        s = obj._read_batch(pair_batch(4))
        obj._embed(s)
        s.eta = torch.randn(s.B, 32, generator=torch.Generator().manual_seed(1))
        s.mu, s.sigma = model.age_encoder(s.e_img)
        s.z_age = obj._modulate(s.z_src, obj._e_age(s, s.eta), s.eta)
        return s, obj._rendered(s, s.z_age, s.eta)

    s, free = step(LossConfig())
    ratio = _ratio(fr.diffae, s.z_src, free)
    bound = 0.5 * float(ratio.max())
    s, held = step(LossConfig(train_bound=bound))
    assert torch.equal(s.z_age, free)  # L_dir / L_norm still see the modulation's own shift
    torch.testing.assert_close(held, bound_contrast(fr.diffae, s.z_src, free, bound))
    # at the bound up to the tiny network's non-linear coarse path (the factor assumes a linear one)
    assert float(_ratio(fr.diffae, s.z_src, held).max()) <= bound * 1.05
    assert held.requires_grad and not torch.equal(held, free)
    objective = PadaObjective(model, fr, LossConfig(train_bound=bound))
    losses = objective(pair_batch(4), torch.Generator().manual_seed(0))
    model.zero_grad()
    losses["total"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with pytest.raises(PadaError, match="train_bound must be in"):
        LossConfig(train_bound=-0.5)
    plain = frozen_set()  # a DiffAE without a coarse path: one line before any training
    options = PadaTaskOptions(sample_faces=0, loss={"train_bound": 0.5})
    with pytest.raises(PadaError, match="train_bound=R needs a DiffAE with a coarse image path"):
        PadaTask(options, diffae=plain[0], vl=plain[1], age_critic=plain[2], id_critic=plain[3],
                 dataset=PairDataset(8)).build()

