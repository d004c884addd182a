"""PADA inference pipeline, lifespan sweep and the DiffAE linear baseline (tiny random models)."""

from __future__ import annotations

import pytest
import torch

from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline
from pada.aging.pipeline import AgingPipeline, output_seed, resolve_model, save_gif, save_grid
from pada.aging.testing import TinyVL
from pada.errors import PadaError
from test_aging_helpers import faces, one_thread, tiny_diffae, tiny_model

TEXT = "man's face in his sixties"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def diffae():
    return tiny_diffae()


@pytest.fixture(scope="module")
def vl():
    return TinyVL(dim=32)


def pipe(diffae, vl, init_gain=0.3, steps=4):
    return AgingPipeline(diffae, vl, tiny_model(init_gain=init_gain), steps=steps)


def test_age_shapes_dtypes_timings_and_determinism(diffae, vl):
    p = pipe(diffae, vl)
    x = faces(1)[0]
    r = p.age(x, text=TEXT, n=3, seed=5)
    assert r.images.shape == (3, 3, 32, 32) and r.images.dtype == torch.float32
    assert r.e_age.shape == (3, 32) and r.z_age.shape == (3, 64)
    assert float(r.images.abs().max()) <= 1.0
    assert set(r.timings) == {"encode", "invert", "decode"}
    assert r.seeds == [output_seed(5, i) for i in range(3)]
    again = p.age(x, text=TEXT, n=3, seed=5)
    assert torch.equal(r.images, again.images)
    other = p.age(x, text=TEXT, n=3, seed=6)
    assert not torch.allclose(r.e_age, other.e_age)


def test_each_output_is_reproducible_whatever_n(diffae, vl):
    p = pipe(diffae, vl)
    x, ref = faces(1)[0], faces(1, seed=9)[0]
    for kw in ({"text": TEXT}, {"ref": ref}, {"text": TEXT, "ref": ref}):
        two = p.age(x, n=2, seed=3, low_diversity=True, **kw)
        four = p.age(x, n=4, seed=3, low_diversity=True, **kw)
        assert torch.allclose(two.e_age, four.e_age[:2])
        assert torch.allclose(two.images, four.images[:2], atol=1e-4)


def test_high_level_diversity_on_and_off(diffae, vl):
    p = pipe(diffae, vl)
    x, ref = faces(1)[0], faces(1, seed=9)[0]
    on = p.age(x, ref=ref, n=3, high_diversity=True)
    assert not torch.allclose(on.e_age[0], on.e_age[1])
    assert not torch.allclose(on.images[0], on.images[1])
    off = p.age(x, ref=ref, n=3, high_diversity=False)
    mu, _ = p.model.age_encoder.posterior(vl.encode_image(ref[None]))
    for i in range(3):
        assert torch.allclose(off.e_age[i], torch.nn.functional.normalize(mu[0], dim=0), atol=1e-6)
    assert torch.allclose(off.images[0], off.images[2], atol=1e-5)  # same e_age, same inverted x_T
    low = p.age(x, ref=ref, n=2, high_diversity=False, low_diversity=True)
    assert torch.equal(low.e_age[0], low.e_age[1]) and not torch.allclose(low.images[0], low.images[1])
    with pytest.raises(PadaError):
        p.age(x, n=1)


def test_low_level_diversity_mixes_the_inverted_start_with_fresh_noise(diffae, vl):
    """``low_noise`` s: every output starts from sqrt(1 - s^2) x_T + s eps (x_T the inversion, eps the
    output's own fresh draw), so a small s keeps the input's layout and still varies the outputs; 1 is fresh
    noise."""
    from pada.aging.pipeline import mix_start_noise

    x_inv, eps = torch.randn(1, 3, 8, 8), torch.randn(2, 3, 8, 8)
    assert torch.allclose(mix_start_noise(x_inv, eps, 0.6), 0.8 * x_inv + 0.6 * eps)
    assert torch.equal(mix_start_noise(x_inv, eps, 1.0), eps)
    for bad in (0, 1.5, float("nan"), "a", None):
        with pytest.raises(PadaError, match="low noise"):
            mix_start_noise(x_inv, eps, bad)
    p = pipe(diffae, vl)
    x = faces(1, seed=2)[0]
    kw = {"text": TEXT, "n": 2, "seed": 3, "high_diversity": False}
    kept = p.age(x, **kw).images  # the inverted start: both outputs alike
    mixed = p.age(x, **kw, low_diversity=True, low_noise=0.3)
    fresh = p.age(x, **kw, low_diversity=True, low_noise=1.0).images
    z_src = p.encode(x[None])
    start = mix_start_noise(p.invert(x[None], z_src), p.start_noise(x.shape, mixed.seeds), 0.3)
    assert torch.allclose(mixed.images, p.decode(start, mixed.z_age), atol=1e-5)
    assert not torch.allclose(mixed.images[0], mixed.images[1], atol=1e-3)  # the outputs differ
    near, far = (float((o - kept).abs().mean()) for o in (mixed.images, fresh))
    assert near < 0.9 * far  # and nearer the inverted start's render (the tiny random decoder is chaotic)
    # the model's own share is the default (1.0 unless its configuration says otherwise)
    assert torch.equal(p.age(x, **kw, low_diversity=True).images, fresh)
    p.model.cfg.low_noise = 0.3
    try:
        assert torch.equal(p.age(x, **kw, low_diversity=True).images, mixed.images)
    finally:
        p.model.cfg.low_noise = 1.0
    with pytest.raises(PadaError, match="low noise must be in"):
        p.age(x, **kw, low_diversity=True, low_noise=0.0)
    with pytest.raises(PadaError, match="low_noise"):
        tiny_model(low_noise=1.2)


def test_identity_modulation_reproduces_the_diffae_reconstruction(diffae, vl):
    x = faces(1, seed=4)[0]
    exact = pipe(diffae, vl, init_gain=0.0)
    r = exact.age(x, ref=x, n=2, high_diversity=True, reconstruct=True)
    assert torch.allclose(r.z_age, exact.encode(x).expand(2, -1).cpu(), atol=1e-5)
    assert torch.allclose(r.images, r.reconstruction.expand(2, -1, -1, -1), atol=1e-4)
    near = pipe(diffae, vl, init_gain=1e-3).age(x, ref=x, n=1, reconstruct=True)
    assert float((near.images - near.reconstruction).abs().max()) < 0.05


def test_lifespan_grid_and_gif(diffae, vl, tmp_path):
    p = pipe(diffae, vl)
    x = faces(1)[0]
    life = p.lifespan(x, frames_per_segment=2, steps=2)
    assert life.images.shape == (13, 3, 32, 32)  # 7 anchors, 2 frames per gap: 6*2 + 1
    assert life.anchors == [0, 2, 4, 6, 8, 10, 12] and life.labels[0] and not life.labels[1]
    assert "face" in life.labels[-1]
    assert p.infer_gender(x) in ("female", "male")
    custom = p.lifespan(x, texts=["a child", "an old person"], frames_per_segment=3, steps=2)
    assert custom.images.shape[0] == 4
    assert torch.allclose(custom.images[0], p.age(x, text="a child", high_diversity=False, steps=2).images[0],
                          atol=1e-4)
    grid = save_grid(life.images, tmp_path / "life.png", nrow=13)
    gif = save_gif(life.images, tmp_path / "life.gif")
    import imageio.v2 as imageio
    from PIL import Image

    assert Image.open(grid).size == (13 * 34 + 2, 36)
    assert len(imageio.mimread(gif)) == 13 + 11  # forward, then back without repeating the ends


def test_calibrated_lifespan_anchors_are_the_calibrated_age_edits(diffae, vl):
    p = pipe(diffae, vl)
    x = faces(1)[0]
    texts = ["a child", "an old person"]
    life = p.lifespan(x, texts=texts, frames_per_segment=2, steps=2, calibrate=True)
    assert life.images.shape[0] == 3 and len(life.calibration) == 2
    assert all(c["factor"] in c["factors"] for c in life.calibration) and "calibrate" in life.timings
    for k, text in zip((0, 2), texts):  # each anchor: what age() renders at the PAE mean, calibrated
        one = p.age(x, text=text, high_diversity=False, steps=2, calibrate=True)
        assert one.calibration["factor"] == life.calibration[k // 2]["factor"]
        torch.testing.assert_close(life.images[k], one.images[0], atol=1e-4, rtol=0)
    assert p.lifespan(x, texts=texts, frames_per_segment=1, steps=2).calibration is None  # the model's: off


def test_resolve_model_errors(tmp_path):
    with pytest.raises(PadaError, match="nope.safetensors"):
        resolve_model(tmp_path / "nope.safetensors")
    with pytest.raises(PadaError, match="pada train pada"):
        resolve_model("no-such-pada-model")


def test_from_pretrained_rebuilds_everything(diffae, vl, tmp_path):
    from pada.networks.checkpoint import save_diffae

    dpath = tmp_path / "diffae.safetensors"
    save_diffae(diffae.unet, dpath)
    model = tiny_model(init_gain=0.3, diffae=str(dpath), vl="tiny")
    mpath = model.save(tmp_path / "pada.safetensors")
    p = AgingPipeline.from_pretrained(mpath, vl=vl, steps=3)
    ref = AgingPipeline(diffae, vl, model, steps=3)
    x = faces(1)[0]
    assert torch.equal(p.model.age_encoder.mu_head.weight, model.age_encoder.mu_head.weight)
    assert torch.allclose(p.age(x, text=TEXT, n=2).images, ref.age(x, text=TEXT, n=2).images, atol=2e-3)


# ------------------------------------------------------------------------------------------ baseline
def test_linear_direction_recovers_a_planted_direction(tmp_path):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g) * 0.1
    ages = torch.rand(400, generator=g) * 70 + 5
    z = ages[:, None] * w + torch.randn(400, 16, generator=g) * 0.05 + 1.0
    d = LinearAgeDirection.fit(z, ages, ridge=1e-3)
    assert torch.nn.functional.cosine_similarity(d.direction, w, dim=0) > 0.99
    assert float((d.predict_age(z) - ages).abs().mean()) < 2.0
    moved = d.apply(z[:5], 70.0)
    assert float((d.predict_age(moved) - 70.0).abs().max()) < 2.0
    cm = LinearAgeDirection.fit(z, ages, method="class_means")
    assert torch.nn.functional.cosine_similarity(cm.direction, w, dim=0) > 0.95
    back = LinearAgeDirection.load(d.save(tmp_path / "dir.safetensors"))
    assert torch.equal(back.direction, d.direction) and back.age_mean == pytest.approx(d.age_mean)
    with pytest.raises(PadaError):
        LinearAgeDirection.fit(z, torch.full((400,), 30.0))


def test_linear_baseline_has_the_same_api(diffae):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 64, generator=g)
    d = LinearAgeDirection.fit(z, torch.rand(50, generator=g) * 60 + 10)
    base = LinearBaselinePipeline(diffae, d, steps=3)
    x = faces(1)[0]
    r = base.age(x, text=TEXT, n=2)
    assert r.images.shape == (2, 3, 32, 32) and r.e_age is None
    assert torch.allclose(r.images[0], r.images[1], atol=1e-5)  # no PAE: one output per x_T
    young = base.age(x, text="a toddler boy's face", n=1)
    assert not torch.allclose(young.z_age, r.z_age[:1])
    weak = base.age(x, target_age=60.5, strength=0.0, n=1)
    assert torch.allclose(weak.z_age, diffae.encode(x[None]), atol=1e-5)
    assert not torch.allclose(base.age(x, text=TEXT, n=2, low_diversity=True).images[0],
                              base.age(x, text=TEXT, n=2, low_diversity=True).images[1])
    # low-level diversity from a mixed start, as PADA's (low_noise; the evaluation gives it the model's)
    from pada.aging.pipeline import decode_chunked, mix_start_noise

    mixed = base.age(x, text=TEXT, n=2, seed=1, low_diversity=True, low_noise=0.3)
    x_inv = diffae.encode_stochastic(x[None], diffae.encode(x[None]), 3, sampler=base.sampler)
    fresh = torch.cat([torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(s))
                       for s in mixed.seeds])
    want = decode_chunked(diffae, mix_start_noise(x_inv, fresh, 0.3), mixed.z_age, 3, sampler=base.sampler)
    assert torch.allclose(mixed.images, want, atol=1e-5)
    shared = LinearBaselinePipeline(diffae, d, steps=3, low_noise=0.3)
    assert torch.equal(shared.age(x, text=TEXT, n=2, seed=1, low_diversity=True).images, mixed.images)
    with pytest.raises(PadaError, match="low noise"):
        LinearBaselinePipeline(diffae, d, low_noise=0.0)
    with pytest.raises(PadaError):
        base.age(x, text="some free text", n=1)


def test_fit_from_dataset_encodes_labelled_items(diffae):
    from pada.aging.baseline import fit_from_dataset

    items = [{"image": faces(1, seed=i)[0], "age": float(10 + 5 * i), "group": i % 7} for i in range(10)]
    d = fit_from_dataset(diffae, items, batch_size=4, ridge=1e-6)  # 10 codes in 64-d: an exact fit
    assert d.direction.shape == (64,) and d.age_mean == pytest.approx(32.5)
    assert float((d.predict_age(diffae.encode(torch.stack([it["image"] for it in items]))) -
                  torch.tensor([it["age"] for it in items])).abs().mean()) < 1.0


def test_find_data_layouts(tmp_path):
    from pada.aging.train import find_data

    (tmp_path / "aligned" / "64").mkdir(parents=True)
    (tmp_path / "aligned" / "256").mkdir()
    (tmp_path / "labels.csv").write_text("file\n")
    assert find_data(str(tmp_path), "", 64) == (tmp_path / "aligned" / "64", tmp_path / "labels.csv")
    assert find_data(str(tmp_path), "", 128)[0] == tmp_path / "aligned" / "256"
    assert find_data(str(tmp_path), "", 512)[0] == tmp_path / "aligned" / "256"
    with pytest.raises(PadaError, match="no such labels"):
        find_data(str(tmp_path), str(tmp_path / "x.csv"), 64)
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(PadaError, match="pada label"):
        find_data(str(tmp_path), "", 64)


class _Opaque:
    """A pickled object in a checkpoint: loading it needs full unpickling."""


def test_from_pretrained_refuses_a_pickled_diffae_unless_trusted(tmp_path):
    from pada.aging.testing import TinyVL
    from pada.errors import CheckpointError
    from test_aging_helpers import tiny_diffae, tiny_model

    diffae = tiny_diffae()
    ckpt = tmp_path / "last.ckpt"
    state = {f"ema_model.{k}": v for k, v in diffae.unet.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": _Opaque()}, ckpt)
    model = tiny_model(diffae=str(ckpt), diffae_preset="tiny32", vl="faceclip")
    path = model.save(tmp_path / "pada.safetensors")
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        AgingPipeline.from_pretrained(path, vl=TinyVL(dim=32))
    pipe = AgingPipeline.from_pretrained(path, vl=TinyVL(dim=32), trust_pickle=True)
    for k, v in diffae.unet.state_dict().items():  # the EMA weights of the official layout, by preset
        assert torch.equal(pipe.diffae.unet.state_dict()[k], v), k


class _CountingDiffAE:
    """Wraps a DiffAE and records the batch size of every render call."""

    def __init__(self, diffae):
        self.inner, self.batches = diffae, []

    def render(self, x_T, z, *a, **kw):  # noqa: N803
        self.batches.append(int(x_T.shape[0]))
        return self.inner.render(x_T, z, *a, **kw)


def test_decode_in_bounded_chunks_matches_one_batch(diffae):
    from pada.aging.pipeline import decode_chunked, default_chunk

    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(1, 3, 32, 32, generator=g)
    z = torch.randn(11, 64, generator=g)
    spy = _CountingDiffAE(diffae)
    chunked = decode_chunked(spy, x_T, z, 3)
    assert spy.batches == [8, 3] and default_chunk("cpu") == 8  # the default CPU chunk bounds the batch
    whole = decode_chunked(spy, x_T, z, 3, batch_size=11)
    assert spy.batches[-1] == 11
    assert chunked.shape == (11, 3, 32, 32) and chunked.device.type == "cpu"
    assert torch.allclose(chunked, whole, atol=1e-4)
    spy.batches.clear()
    per_row = decode_chunked(spy, x_T.expand(11, -1, -1, -1), z, 3, batch_size=4)
    assert spy.batches == [4, 4, 3] and torch.allclose(per_row, whole, atol=1e-4)
    with pytest.raises(PadaError, match="batch_size"):
        decode_chunked(spy, x_T, z, 3, batch_size=0)


def test_identical_requests_decode_once(diffae):
    from pada.aging.pipeline import decode_chunked

    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(1, 3, 32, 32, generator=g)
    z = torch.randn(1, 64, generator=g).expand(5, -1)
    spy = _CountingDiffAE(diffae)
    out = decode_chunked(spy, x_T, z, 3)
    assert spy.batches == [1] and out.shape == (5, 3, 32, 32)
    assert torch.allclose(out, decode_chunked(spy, x_T.expand(5, -1, -1, -1), z, 3, batch_size=5), atol=1e-5)
    assert spy.batches == [1, 5]  # a per-row x_T is decoded as asked


def test_sampler_option_reaches_inversion_and_decode(diffae, vl):
    """``sampler=`` runs the named sampler in both loops (the same result as the pure functions) and is
    checked up front: an unknown name or η > 0 with the deterministic solver is one PadaError."""
    from pada import diffusion as D

    x = faces(1, seed=2)[0]
    p = pipe(diffae, vl, steps=5)
    ms = p.age(x, text=TEXT, n=2, seed=1, sampler="multistep", inversion_steps=4, reconstruct=True)
    dd = p.age(x, text=TEXT, n=2, seed=1, sampler="ddim", inversion_steps=4, reconstruct=True)
    assert not torch.allclose(ms.images, dd.images, atol=1e-4)
    with torch.no_grad():
        z_src = p.encode(x)
        x_T = D.samplers.invert("multistep", lambda xt, t: diffae.eps(xt, t, z_src), x[None], 4)  # noqa: N806
        recon = D.samplers.sample("multistep", lambda xt, t: diffae.eps(xt, t, z_src), x_T, 5)
    torch.testing.assert_close(ms.reconstruction, recon, atol=1e-4, rtol=0)
    # the pipeline's default sampler is a setting (multistep unless told); per call wins
    assert torch.equal(p.age(x, text=TEXT, n=2, seed=1, inversion_steps=4).images, ms.images)
    p_dd = AgingPipeline(diffae, vl, p.model, steps=5, sampler="ddim")
    assert torch.equal(p_dd.age(x, text=TEXT, n=2, seed=1, inversion_steps=4).images, dd.images)
    assert torch.equal(p_dd.age(x, text=TEXT, n=2, seed=1, inversion_steps=4, sampler="multistep").images,
                       ms.images)
    life = p.lifespan(x, gender="male", frames_per_segment=1, steps=3, sampler="multistep")
    assert torch.isfinite(life.images).all()
    with pytest.raises(PadaError, match="deterministic: eta must be 0"):
        p.age(x, text=TEXT, n=1, eta=0.5, sampler="multistep")
    with pytest.raises(PadaError, match="sampler 'dpm' unknown"):
        p.age(x, text=TEXT, n=1, sampler="dpm")
    with pytest.raises(PadaError, match="sampler 'dpm' unknown"):
        AgingPipeline(diffae, vl, p.model, sampler="dpm")


def test_pae_draws_hand_their_noise_to_a_draw_head(diffae, vl):
    p = AgingPipeline(diffae, vl, tiny_model(init_gain=0.3, draw_hidden=8), steps=4)
    with torch.no_grad():
        p.model.modulation.draw[2].weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    e_age, eta = p.pae_draws(text=TEXT, n=3, seed=2)
    assert torch.equal(e_age, p.pae(text=TEXT, n=3, seed=2)) and eta.shape == e_age.shape
    mu, sigma = p.model.age_encoder.posterior(e_txt=vl.encode_text([TEXT]))
    assert torch.allclose(e_age[1:2], p.model.age_encoder.sample(mu, sigma, noise=eta[1:2]), atol=1e-6)
    mean, zero = p.pae_draws(text=TEXT, n=2, high_diversity=False)
    assert torch.equal(zero, torch.zeros_like(zero))
    z = p.encode(faces(1)[0][None])
    with_noise, without = p.modulate(z, e_age, eta), p.modulate(z, e_age)
    assert not torch.allclose(with_noise, without, atol=1e-5)
    r = p.age(faces(1)[0], text=TEXT, n=3, seed=2)
    assert torch.allclose(r.z_age, with_noise, atol=1e-5)  # age() passes the noise on


def test_default_sampling_is_multistep_with_each_sampler_s_own_steps(diffae, vl):
    from pada.cli.age import SAMPLER_CHOICES, SAMPLER_HELP
    from pada.diffusion.samplers import AGING_SAMPLER, DEFAULT_SAMPLER, SAMPLERS

    p = AgingPipeline(diffae, vl, tiny_model())
    assert p.sampler == AGING_SAMPLER == "multistep"
    assert DEFAULT_SAMPLER == "ddim"  # DiffAE itself keeps the official sampler
    assert p.steps_for() == 8 and p.steps_for("ddim") == 25 and p.steps_for("ddim", 7) == 7
    assert AgingPipeline(diffae, vl, tiny_model(), steps=12).steps_for("ddim") == 12
    # the torch-free CLI copy of the table agrees with it
    assert SAMPLER_CHOICES[0] == AGING_SAMPLER and set(SAMPLER_CHOICES) == set(SAMPLERS)
    for spec in SAMPLERS.values():
        assert spec.name in SAMPLER_HELP and f"{spec.default_steps} steps" in SAMPLER_HELP
    calls = []
    real = diffae.render

    def spy(x_T, z, steps, **kw):  # noqa: N803
        calls.append((steps, kw.get("sampler")))
        return real(x_T, z, steps, **kw)

    diffae.render = spy
    try:
        p.age(faces(1)[0], text=TEXT, n=1)
    finally:
        del diffae.render
    assert calls == [(8, "multistep")]


def _spread_setup(diffae, vl, spread: float):
    """A tiny pipeline whose model spreads its draws by ``spread``, one face's code z, three PAE draws
    (e_age, eta) and their learned codes (what training sees: no spread)."""
    model = tiny_model(init_gain=0.3, draw_hidden=8, shift_subspace=4, shift_age_direction=True,
                       draw_spread=spread)
    gen = torch.Generator().manual_seed(3)
    model.modulation.set_subspace(torch.randn(20, model.cfg.z_dim, generator=gen),
                                  torch.randn(model.cfg.z_dim, generator=gen))
    model.modulation.set_spread_basis(torch.randn(2, model.cfg.z_dim, generator=gen))
    p = AgingPipeline(diffae, vl, model, steps=3)
    z = p.encode(faces(1)[0][None])
    e_age, eta = p.pae_draws(text=TEXT, n=3, seed=2)
    return p, model, z, e_age, eta, model.modulation(z.expand(3, -1), e_age, eta)


def test_draw_spread_separates_the_draws_at_inference_only(diffae, vl):
    p, model, z, e_age, eta, learned = _spread_setup(diffae, vl, 0.2)
    spread = p.modulate(z, e_age, eta)
    torch.testing.assert_close(spread - learned,
                               model.modulation.spread(z.expand(3, -1), eta, shift=learned - z))
    along = ((spread - learned) * (learned - z)).sum(-1)  # a draw neither undoes nor extends its own edit
    assert float(along.abs().max()) < 1e-5 * float((learned - z).norm() * (spread - learned).norm())
    torch.testing.assert_close(p.modulate(z, e_age, eta, draw_spread=0.0), learned)
    torch.testing.assert_close(p.modulate(z, e_age), model.modulation(z.expand(3, -1), e_age))  # PAE mean
    r = p.age(faces(1)[0], text=TEXT, n=3, seed=2, steps=2)
    torch.testing.assert_close(r.z_age, spread, atol=1e-5, rtol=0)
    off = p.age(faces(1)[0], text=TEXT, n=3, seed=2, steps=2, draw_spread=0.0)
    assert float((r.images - off.images).abs().max()) > 1e-4  # the spread reaches the images
    with pytest.raises(PadaError, match="draw spread must be in"):
        p.age(faces(1)[0], text=TEXT, n=1, steps=2, draw_spread=2.0)
    plain = AgingPipeline(diffae, vl, tiny_model(init_gain=0.3), steps=3)
    with pytest.raises(PadaError, match="no draw-spread basis"):
        plain.age(faces(1)[0], text=TEXT, n=2, steps=2, draw_spread=0.1)


def test_spread_cap_shortens_the_draws_offsets_by_their_own_edit_at_inference(diffae, vl):
    p, model, z, e_age, eta, learned = _spread_setup(diffae, vl, 0.5)
    free = p.modulate(z, e_age, eta) - learned
    capped = p.modulate(z, e_age, eta, spread_cap=0.1) - learned
    edit = (learned - z).norm(dim=-1)
    assert bool((free.norm(dim=-1) > 0.1 * edit).all())  # the test's offsets are long enough to be capped
    torch.testing.assert_close(capped.norm(dim=-1), 0.1 * edit)
    expected = model.modulation.spread(z.expand(3, -1), eta, shift=learned - z, cap=0.1)
    torch.testing.assert_close(capped, expected)
    r = p.age(faces(1)[0], text=TEXT, n=3, seed=2, steps=2, spread_cap=0.1)
    torch.testing.assert_close(r.z_age, learned + capped, atol=1e-5, rtol=0)
    model.cfg.spread_cap = 0.1  # the model's default is read when the request does not say
    torch.testing.assert_close(p.age(faces(1)[0], text=TEXT, n=3, seed=2, steps=2).z_age, r.z_age)
    torch.testing.assert_close(p.modulate(z, e_age, eta, spread_cap=0.0) - learned, free)  # 0 = no cap
    for draws in (True, False):  # a bad cap is an error whether or not the draws are sampled
        with pytest.raises(PadaError, match="spread cap"):
            p.age(faces(1)[0], text=TEXT, n=1, steps=2, spread_cap=-1.0, high_diversity=draws)


def test_shift_gain_spec_is_parsed_interpolated_and_validated(tmp_path):
    from pada.aging.config import PadaConfig
    from pada.aging.gain import gain_at, parse_shift_gain

    knots = parse_shift_gain(" 30:1, 40:2 ,80:1.5")
    assert knots == ((30.0, 1.0), (40.0, 2.0), (80.0, 1.5))
    assert [gain_at(knots, a) for a in (0, 30, 35, 40, 60, 80, 110)] == [1.0, 1.0, 1.5, 2.0, 1.75, 1.5, 1.5]
    assert parse_shift_gain("") == () and gain_at((), 50) == 1.0
    for bad, msg in (("30", "not AGE:GAIN"), ("30:x", "not AGE:GAIN"), ("40:1,30:2", "ages must increase"),
                     ("30:0", "outside"), ("30:5", "outside"), ("130:1", "outside")):
        with pytest.raises(PadaError, match=msg):
            parse_shift_gain(bad)
        with pytest.raises(PadaError, match=msg):
            PadaConfig(shift_gain=bad)
    model = tiny_model(init_gain=0.3, shift_gain="30:1,60:2")
    model.save(tmp_path / "g.safetensors")
    assert type(model).load(tmp_path / "g.safetensors").cfg.shift_gain == "30:1,60:2"


def test_shift_gain_scales_each_edit_by_its_target_age(diffae, vl):
    from pada.data.groups import AGE_GROUPS, description

    p = AgingPipeline(diffae, vl, tiny_model(init_gain=0.3, shift_gain="20.5:1,60.5:3"), steps=3)
    for gender in ("female", "male"):  # the read-out finds each group from its own description
        e = vl.encode_text([description(g, gender) for g in AGE_GROUPS])
        assert p.target_ages(e).tolist() == [g.center for g in AGE_GROUPS]
    x = faces(1)[0]
    z = p.encode(x[None])
    e_age, eta = p.pae_draws(text="woman's face in her sixties", n=2, seed=1)
    learned = p.model.modulation(z.expand(2, -1), e_age, eta)
    assert p.target_ages(e_age).tolist() == [60.5, 60.5]
    torch.testing.assert_close(p.modulate(z, e_age, eta) - z, 3 * (learned - z))  # the model's spec
    torch.testing.assert_close(p.modulate(z, e_age, eta, shift_gain=""), learned)  # off
    torch.testing.assert_close(p.modulate(z, e_age, eta, shift_gain="10:0.5") - z, 0.5 * (learned - z))
    young = p.pae(text="woman's face in her twenties", n=1, high_diversity=False)
    torch.testing.assert_close(p.modulate(z, young), p.model.modulation(z, young))  # gain 1 there
    on = p.age(x, text="woman's face in her sixties", n=2, seed=1, steps=2)
    off = p.age(x, text="woman's face in her sixties", n=2, seed=1, steps=2, shift_gain="")
    torch.testing.assert_close(on.z_age - z, 3 * (off.z_age - z), atol=1e-5, rtol=1e-4)
    assert float((on.images - off.images).abs().max()) > 1e-4
    span = p.lifespan(x, gender="female", frames_per_segment=1, steps=2, shift_gain="")
    gained = p.lifespan(x, gender="female", frames_per_segment=1, steps=2)
    torch.testing.assert_close(span.images[:3], gained.images[:3], atol=1e-5, rtol=0)  # gain 1 up to twenties
    assert float((span.images[-2:] - gained.images[-2:]).abs().max()) > 1e-4


def test_calibration_read_out_and_choice():
    from pada.aging.gain import CALIBRATION_FACTORS, pick_factor, read_ages
    from pada.data.groups import AGE_GROUPS

    protos = torch.eye(7, 16)
    centres = [g.center for g in AGE_GROUPS]
    sharp = read_ages(protos, 5 * torch.eye(7, 16), scale=1000.0)  # each embedding on its own prototype
    torch.testing.assert_close(sharp, torch.tensor(centres))
    mid = read_ages(protos, protos[5:7].sum(0, keepdim=True), scale=100.0)  # halfway: sixty and eighty
    assert abs(float(mid[0]) - (centres[5] + centres[6]) / 2) < 1e-4
    f = CALIBRATION_FACTORS  # (0.5, 0.75, 1, 1.25, 1.5)
    assert pick_factor([40, 45, 50, 55, 60], 50, f) == 1.0
    assert pick_factor([40, 45, 50, 55, 60], 41, f) == 0.5  # an overshooting face gets a shorter edit
    assert pick_factor([40, 45, 50, 55, 60], 58, f, cost=0) == 1.5
    # lengthening must pay: 1.25 brings 5 years but costs 0.25 * 8 = 2; 1.5 brings 1 more for 2 more
    assert pick_factor([40, 45, 50, 55, 56], 60, f) == 1.25
    assert pick_factor([50, 50, 50, 50, 50], 80, f) == 0.5  # nothing reaches it: the shortest of the ties
    # the texture guard: a length whose render is too detailed does not compete (1.25 -> 1.0 here) ...
    assert pick_factor([40, 45, 50, 55, 56], 60, f, hf_ratios=[0.9, 1.0, 1.1, 1.4, 1.6]) == 1.0
    # ... and if every one is, the least detailed wins
    assert pick_factor([40, 45, 50, 55, 56], 60, f, hf_ratios=[1.45, 1.4, 1.5, 1.6, 1.7]) == 0.75
    with pytest.raises(ValueError, match="3 ages for 5 factors"):
        pick_factor([1, 2, 3], 10, f)
    with pytest.raises(ValueError, match="2 high-frequency ratios"):
        pick_factor([1, 2, 3, 4, 5], 10, f, hf_ratios=[1, 1])
    # the patch guard: a length whose render is patchy does not compete either (1.25 -> 1.0 here) ...
    patchy = [0.01, 0.012, 0.018, 0.024, 0.03]
    assert pick_factor([40, 45, 50, 55, 56], 60, f, patches=patchy, patch_guard=0.02) == 1.0
    assert pick_factor([40, 45, 50, 55, 56], 60, f, patches=patchy) == 1.25  # guard 0: off
    # ... both guards apply together, and if no length passes both, the one over its limits least wins
    assert pick_factor([40, 45, 50, 55, 56], 60, f, hf_ratios=[1.0, 1.4, 1.0, 1.0, 1.0], patches=patchy,
                       patch_guard=0.02) == 1.0
    assert pick_factor([40, 45, 50, 55, 56], 60, f, hf_ratios=[1.0] * 5,
                       patches=[0.05, 0.04, 0.03, 0.045, 0.06], patch_guard=0.02) == 1.0
    with pytest.raises(ValueError, match="4 patch scores"):
        pick_factor([1, 2, 3, 4, 5], 10, f, patches=[0.0] * 4, patch_guard=0.02)


def test_young_cap_gives_targets_younger_than_the_face_short_candidate_lengths():
    from pada.aging.config import PadaConfig
    from pada.aging.gain import CALIBRATION_FACTORS, calibration_factors

    assert calibration_factors(2.5, 35.0, 0.5) == (0.25, 0.375, 0.5)  # younger than the face: capped
    assert calibration_factors(60.5, 35.0, 0.5) == CALIBRATION_FACTORS  # older: the usual lengths
    assert calibration_factors(35.0, 35.0, 0.5) == CALIBRATION_FACTORS  # its own age is not younger
    assert calibration_factors(2.5, None, 0.5) == CALIBRATION_FACTORS  # the face's age unknown
    assert calibration_factors(2.5, 35.0, 0.0) == CALIBRATION_FACTORS  # 0 = off
    for bad in (-0.1, 1.6, float("nan")):
        with pytest.raises(PadaError, match="young cap must be in"):
            calibration_factors(2.5, 35.0, bad)
        with pytest.raises(PadaError, match="young cap must be in"):
            PadaConfig(young_cap=bad)


def test_young_cap_reaches_the_calibration_of_age_and_lifespan(diffae, vl):
    p = pipe(diffae, vl)
    x = faces(1)[0]
    young = "a toddler girl's face"
    own = p.read_age(x[None])
    assert float(p.target_ages(p.pae(text=young, n=1, high_diversity=False))[0]) < own  # a younger target
    cal = p.age(x, text=young, n=1, steps=2, calibrate=True, young_cap=0.4).calibration
    assert cal["factors"] == pytest.approx([0.2, 0.3, 0.4]) and cal["factor"] in cal["factors"]
    assert p.age(x, text=young, n=1, steps=2, calibrate=True).calibration["factors"] == \
        [0.5, 0.75, 1.0, 1.25, 1.5]  # the model's default: off
    capped = AgingPipeline(diffae, vl, tiny_model(init_gain=0.3, calibrate=True, young_cap=0.4), steps=4)
    capped.model.load_state_dict(p.model.state_dict())
    assert capped.age(x, text=young, n=1, steps=2).calibration == cal  # the model's default read
    assert capped.age(x, text=TEXT, n=1, steps=2).calibration["factors"] == [0.5, 0.75, 1.0, 1.25, 1.5]
    life = capped.lifespan(x, texts=[young, TEXT], frames_per_segment=1, steps=2)
    assert [c["factors"] for c in life.calibration] == [[0.5, 0.75, 1.0, 1.25, 1.5]] * 2  # not the model's
    life = capped.lifespan(x, texts=[young, TEXT], frames_per_segment=1, steps=2, young_cap=0.4)
    assert life.calibration[0]["factors"] == pytest.approx([0.2, 0.3, 0.4])  # the toddler anchor: capped
    assert life.calibration[1]["factors"] == [0.5, 0.75, 1.0, 1.25, 1.5]
    for call in (lambda: p.age(x, text=young, n=1, steps=2, young_cap=2.0),
                 lambda: p.lifespan(x, texts=[young, TEXT], steps=2, young_cap=-1.0)):
        with pytest.raises(PadaError, match="young cap must be in"):
            call()


def test_calibrate_scales_every_edit_by_the_chosen_factor(diffae, vl):
    p = pipe(diffae, vl)
    x = faces(1)[0]
    plain = p.age(x, text=TEXT, n=2, seed=2, steps=2)
    cal = p.age(x, text=TEXT, n=2, seed=2, steps=2, calibrate=True)
    c = cal.calibration
    assert plain.calibration is None and set(cal.timings) == {"encode", "invert", "calibrate", "decode"}
    assert c["factors"] == [0.5, 0.75, 1.0, 1.25, 1.5] and len(c["read_ages"]) == len(c["hf_ratios"]) == 5
    assert c["target_age"] == 60.5 and c["factor"] in c["factors"]
    # the choice follows the read-out: recompute it from the reported ages
    from pada.aging.gain import pick_factor
    assert pick_factor(c["read_ages"], c["target_age"]) == c["factor"]
    z = p.encode(x[None])
    torch.testing.assert_close(cal.z_age - z, c["factor"] * (plain.z_age - z), atol=1e-5, rtol=1e-4)
    # the candidate renders are the PAE-mean edit at each length from the inverted x_T
    x_inv = p.invert(x, z, 2)
    e_mean = p.pae(text=TEXT, n=1, high_diversity=False)
    z_mean = p.modulate(z, e_mean)
    forced = p.calibrate(x_inv, z, e_mean, 2, factors=(1.0,))
    assert forced["factor"] == 1.0
    from pada.aging.gain import read_ages
    one = p.decode(x_inv, z_mean, 2)
    read = float(read_ages(p.group_prototypes(), vl.encode_image(one))[0])
    assert abs(forced["read_ages"][0] - read) < 0.01
    fresh = p.age(x, text=TEXT, n=2, seed=2, steps=2, calibrate=True, low_diversity=True)
    assert fresh.calibration == c  # calibrated on the inversion whatever the outputs start from
    # the patch guard scores each render (patch_change against the input) and the choice respects it
    from pada.evaluation.scores import patch_change
    assert c["patches"] is None  # off by default
    tight = p.age(x, text=TEXT, n=2, seed=2, steps=2, calibrate=True, patch_guard=1e-6).calibration
    assert tight["read_ages"] == c["read_ages"] and len(tight["patches"]) == 5
    renders = p.decode(x_inv, torch.cat([z + k * (z_mean - z) for k in tight["factors"]]), 2)
    torch.testing.assert_close(torch.tensor(tight["patches"]), patch_change(renders, x[None]), atol=1e-4,
                               rtol=0)
    assert tight["factor"] == pick_factor(tight["read_ages"], tight["target_age"],
                                          hf_ratios=tight["hf_ratios"], patches=tight["patches"],
                                          patch_guard=1e-6)
    with pytest.raises(PadaError, match="patch guard must be in"):
        p.age(x, text=TEXT, n=1, steps=2, calibrate=True, patch_guard=1.5)
    with pytest.raises(PadaError, match="patch_guard must be in"):
        tiny_model(patch_guard=-0.1)
    guarded = AgingPipeline(diffae, vl, tiny_model(init_gain=0.3, calibrate=True, patch_guard=1e-6), steps=4)
    guarded.model.load_state_dict(p.model.state_dict())
    assert guarded.age(x, text=TEXT, n=2, seed=2, steps=2).calibration == tight  # the model's default
    on = AgingPipeline(diffae, vl, tiny_model(init_gain=0.3, calibrate=True), steps=4)
    on.model.load_state_dict(p.model.state_dict())
    assert on.age(x, text=TEXT, n=2, seed=2, steps=2).calibration == c  # the model's default
    assert on.age(x, text=TEXT, n=2, seed=2, steps=2, calibrate=False).calibration is None
