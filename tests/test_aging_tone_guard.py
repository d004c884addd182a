"""The tone guard (pada.aging.guard): an x̂0 projection that keeps the skin's smoothed brightness near the
input's, inside DiffAE.render and the aging pipeline (tiny random models)."""

from __future__ import annotations

import pytest
import torch

from pada.aging.guard import ToneGuard
from pada.aging.pipeline import AgingPipeline
from pada.aging.testing import TinyVL
from pada.errors import PadaError
from pada.evaluation.scores import skin_mask, tone_change, tone_shift
from test_aging_helpers import faces, one_thread, tiny_diffae, tiny_model

TEXT = "man's face in his sixties"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def _face(size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 4, 4, generator=g) * 0.8 - 0.4
    return torch.nn.functional.interpolate(low, size=size, mode="bicubic", align_corners=False)


def test_guard_takes_out_only_the_shading_beyond_its_margin_on_the_skin():
    x = _face()
    guard = ToneGuard(x, 0.1)
    assert torch.equal(guard(x.clone()), x.clamp(-1, 1))  # the input itself: nothing to take out
    slight = x + 0.1  # 0.05 lighter on the 0-1 scale: within the margin
    assert torch.allclose(guard(slight), slight)
    washed = x + 0.5  # 0.25 lighter
    stripes = 0.2 * ((torch.arange(64) % 4) < 2).float().view(1, 1, 64, 1) - 0.1  # fine lines
    out = guard(washed + stripes)
    inside = torch.nn.functional.avg_pool2d(skin_mask(64)[None, None], 9, 1, 4)[0, 0] > 0.99
    core = skin_mask(64).bool() & inside  # the skin away from the mask's soft edge
    d = tone_shift(out, x)[0]
    assert float(d[core].abs().max()) < 0.15 and float(d[core].abs().mean()) < 0.12  # about the margin
    assert float(tone_shift(washed + stripes, x)[0][core].min()) > 0.2
    ring = skin_mask(64) == 0
    corner = torch.zeros(64, 64, dtype=torch.bool)
    corner[:6, :6] = True
    assert torch.allclose(out[..., corner], (washed + stripes).clamp(-1, 1)[..., corner])  # background kept
    assert bool(ring.any())
    # the lines survive: what the guard removed is smooth
    removed = (washed + stripes) - out
    assert float((removed[..., 1:, :] - removed[..., :-1, :]).abs().max()) < 0.12  # the stripes step by 0.2
    assert float((out[..., 1:, :] - out[..., :-1, :])[..., core[1:]].abs().max()) > 0.15
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="margin"):
            ToneGuard(x, bad)
    with pytest.raises(ValueError, match="square faces"):
        ToneGuard(x[..., :32], 0.1)
    rows = ToneGuard(torch.cat([x, -x]), 0.1)  # one reference per row
    assert torch.allclose(rows(torch.cat([washed + stripes] * 2))[:1], out, atol=1e-6)


@pytest.mark.parametrize("sampler", ["ddim", "multistep"])
def test_render_applies_the_guard_to_every_steps_clean_image(sampler):
    diffae = tiny_diffae()
    x_T = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    plain = diffae.render(x_T, z, 4, sampler=sampler)
    same = diffae.render(x_T, z, 4, sampler=sampler, x0_guard=lambda x0, t: x0)
    torch.testing.assert_close(same, plain, atol=1e-4, rtol=0)
    target = torch.full((1, 3, 32, 32), 0.3)
    seen = []

    def constant(x0, t):
        seen.append(int(t[0]))
        return target.expand_as(x0)

    out = diffae.render(x_T, z, 4, sampler=sampler, x0_guard=constant)
    torch.testing.assert_close(out, target.expand_as(out), atol=1e-4, rtol=0)
    assert len(seen) == 4 and seen == sorted(seen, reverse=True)  # once per step, noisy to clean


def test_pipeline_outputs_keep_the_inputs_shading_with_the_guard_and_not_without():
    diffae, vl = tiny_diffae(), TinyVL(dim=32)
    p = AgingPipeline(diffae, vl, tiny_model(init_gain=0.3), steps=4)
    x = faces(1)[0]
    plain = p.age(x, text=TEXT, n=2, seed=1)
    off = p.age(x, text=TEXT, n=2, seed=1, tone_guard=0.0)
    assert torch.equal(plain.images, off.images)  # the model's default here: off
    guarded = p.age(x, text=TEXT, n=2, seed=1, tone_guard=0.05, calibrate=True)
    assert float(tone_change(plain.images, x[None], step=0.07).max()) > 0.2  # a random decoder re-tones
    assert float(tone_change(guarded.images, x[None], step=0.07).max()) < 0.1  # the soft edge spills a little
    on = AgingPipeline(diffae, vl, tiny_model(init_gain=0.3, tone_guard=0.05), steps=4)
    on.model.load_state_dict(p.model.state_dict())
    assert torch.equal(on.age(x, text=TEXT, n=2, seed=1, calibrate=True).images, guarded.images)
    sweep = on.lifespan(x, gender="male", frames_per_segment=1)
    assert float(tone_change(sweep.images, x[None], step=0.07).max()) < 0.1
    with pytest.raises(PadaError, match="tone guard"):
        p.age(x, text=TEXT, n=1, tone_guard=1.5)
    with pytest.raises(PadaError, match="tone_guard"):
        tiny_model(tone_guard=-0.1)


def test_background_guard_holds_the_backdrop_and_leaves_the_head():
    from pada.evaluation.scores import background_mask

    x = _face()
    guard = ToneGuard(x, 0.0, background=0.05)  # the background part alone
    whitened = x.clone()
    m = background_mask(64)
    whitened[..., m] += 0.8  # the backdrop 0.4 lighter
    head = x.clone()
    head[..., 20:44, 24:40] += 0.5  # the face lighter: not the background guard's business
    out = guard(torch.cat([whitened, head]))
    assert float((out[0] - x[0])[..., m].abs().mean()) < 0.2  # pulled back to within about the margin
    assert float((out[0] - x[0])[..., m].abs().mean()) < 0.5 * float((whitened - x)[..., m].abs().mean())
    assert torch.allclose(out[1][..., 24:40, 28:36], head[0][..., 24:40, 28:36])  # the middle of the head
    both = ToneGuard(x, 0.1, background=0.05)
    assert both.margin == 0.1 and both.background == 0.05
    with pytest.raises(ValueError, match="margin"):
        ToneGuard(x, 0.0)  # nothing to hold
    with pytest.raises(ValueError, match="background guard"):
        ToneGuard(x, 0.1, background=1.2)


def _plain_and_held(**guard):
    """A tiny pipeline whose random decoder changes colours, one face, and its results without and with
    ``guard`` (same seed)."""
    p = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=4)
    x = faces(1)[0]
    return p, x, p.age(x, text=TEXT, n=2, seed=1), p.age(x, text=TEXT, n=2, seed=1, **guard)


def test_pipeline_background_guard_keeps_the_backdrop():
    from pada.evaluation.scores import background_change

    p, x, plain, held = _plain_and_held(background_guard=0.03)
    assert float(background_change(plain.images, x[None], step=0.07).max()) > 0.2  # a random decoder moves it
    assert float(background_change(held.images, x[None], step=0.07).max()) < 0.05
    sweep = p.lifespan(x, gender="male", frames_per_segment=1, background_guard=0.03)
    assert float(background_change(sweep.images, x[None], step=0.07).max()) < 0.05
    with pytest.raises(PadaError, match="background guard"):
        p.age(x, text=TEXT, n=1, background_guard=-0.1)
    # stored in the model: its default, which a request can turn off
    on = AgingPipeline(p.diffae, p.vl, tiny_model(init_gain=0.3, background_guard=0.03), steps=4)
    on.model.load_state_dict(p.model.state_dict())
    assert torch.equal(on.age(x, text=TEXT, n=2, seed=1).images, held.images)
    assert torch.equal(on.age(x, text=TEXT, n=2, seed=1, background_guard=0.0).images, plain.images)
    with pytest.raises(PadaError, match="background_guard"):
        tiny_model(background_guard=1.0)


def test_linear_baseline_samples_under_the_background_guard():
    from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline
    from pada.evaluation.scores import background_change

    diffae = tiny_diffae()
    g = torch.Generator().manual_seed(0)
    d = LinearAgeDirection.fit(torch.randn(50, 64, generator=g), torch.rand(50, generator=g) * 60 + 10)
    x = faces(1)[0]
    plain = LinearBaselinePipeline(diffae, d, steps=4).age(x, target_age=80.0, strength=20.0, n=1)
    held = LinearBaselinePipeline(diffae, d, steps=4, background_guard=0.03)
    guarded = held.age(x, target_age=80.0, strength=20.0, n=1)
    assert float(background_change(plain.images, x[None], step=0.07).max()) > 0.2
    assert float(background_change(guarded.images, x[None], step=0.07).max()) < 0.05
    off = held.age(x, target_age=80.0, strength=20.0, n=1, background_guard=0.0)  # per call
    assert torch.equal(off.images, plain.images)
    with pytest.raises(PadaError, match="background guard"):
        LinearBaselinePipeline(diffae, d, steps=4, background_guard=1.5)


def test_saturation_guard_lets_colour_fade_but_not_intensify_in_the_head():
    from pada.aging.detail import head_region
    from pada.evaluation.scores import background_mask, chroma_strength, colour_cast, to_luma_chroma

    x = _face() * 0.5
    guard = ToneGuard(x, 0.0, saturation=0.01)  # the saturation part alone
    assert guard.saturation == 0.01 and guard.margin == 0.0
    assert torch.allclose(guard(x.clone()), x, atol=1e-5)  # the input itself: nothing to take out
    head = ~background_mask(64)
    inner = head_region(64)[0, 0] > 0.99  # inside the mask's soft edge
    orange = x.clone()
    orange[:, 0][:, head] += 0.3
    orange[:, 2][:, head] -= 0.3
    grey = x.mean(1, keepdim=True).expand_as(x).clone()  # every colour faded: allowed
    backdrop = x.clone()
    backdrop[:, 0][:, ~head] += 0.3  # outside the head: not this guard's business
    out = guard(torch.cat([orange, grey, backdrop]))
    rise = chroma_strength(out[:1]) - chroma_strength(x)
    free = chroma_strength(orange) - chroma_strength(x)
    assert float(free[0, 0][inner].mean()) > 0.08
    assert float(rise[0, 0][inner].mean()) < 0.012 and float(rise[0, 0][inner].max()) < 0.03  # ~ the margin
    assert float(colour_cast(out[:1], x)) < 0.5 * float(colour_cast(orange, x))
    luma_in, _ = to_luma_chroma(orange)
    luma_out, _ = to_luma_chroma(out[:1])
    assert float((luma_out - luma_in)[..., inner].abs().max()) < 1e-4  # brightness untouched
    assert torch.allclose(out[1:2], grey, atol=1e-5)
    corner = (slice(None), slice(None), slice(0, 6), slice(0, 6))
    assert torch.allclose(out[2:3][corner], backdrop[corner], atol=1e-5)
    with pytest.raises(ValueError, match="saturation guard"):
        ToneGuard(x, 0.1, saturation=1.0)


def test_pipeline_and_baseline_sample_under_the_saturation_guard():
    from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline
    from pada.evaluation.scores import CAST_LIMIT, colour_cast

    p, x, plain, held = _plain_and_held(saturation_guard=0.005)
    assert float(colour_cast(plain.images, x[None]).max()) > CAST_LIMIT  # a random decoder paints colour
    assert float(colour_cast(held.images, x[None]).max()) < CAST_LIMIT
    sweep = p.lifespan(x, gender="male", frames_per_segment=1, saturation_guard=0.005)
    assert float(colour_cast(sweep.images, x[None]).max()) < CAST_LIMIT
    with pytest.raises(PadaError, match="saturation guard"):
        p.age(x, text=TEXT, n=1, saturation_guard=-0.1)
    on = AgingPipeline(p.diffae, p.vl, tiny_model(init_gain=0.3, saturation_guard=0.005), steps=4)
    on.model.load_state_dict(p.model.state_dict())
    assert torch.equal(on.age(x, text=TEXT, n=2, seed=1).images, held.images)  # the model's default
    assert torch.equal(on.age(x, text=TEXT, n=2, seed=1, saturation_guard=0.0).images, plain.images)
    with pytest.raises(PadaError, match="saturation_guard"):
        tiny_model(saturation_guard=1.0)
    g = torch.Generator().manual_seed(0)
    d = LinearAgeDirection.fit(torch.randn(50, 64, generator=g), torch.rand(50, generator=g) * 60 + 10)
    free = LinearBaselinePipeline(p.diffae, d, steps=4).age(x, target_age=80.0, strength=20.0, n=1)
    base = LinearBaselinePipeline(p.diffae, d, steps=4, saturation_guard=0.005)
    assert base.saturation_guard == 0.005
    guarded = base.age(x, target_age=80.0, strength=20.0, n=1)
    assert float(colour_cast(guarded.images, x[None])) < float(colour_cast(free.images, x[None]))
    assert torch.equal(base.age(x, target_age=80.0, strength=20.0, n=1, saturation_guard=0.0).images,
                       free.images)


def test_train_guard_shows_the_losses_the_guarded_edit():
    from pada.aging.config import LossConfig
    from pada.aging.objective import Frozen, PadaObjective
    from pada.aging.train import PadaTask, PadaTaskOptions
    from test_aging_helpers import PairDataset, frozen_set, pair_batch

    fr = Frozen(*frozen_set())
    options = PadaTaskOptions(sample_faces=0, loss={"train_guard": True})
    with pytest.raises(PadaError, match="train_guard=true needs"):
        PadaTask(options, diffae=fr.diffae, vl=fr.vl, age_critic=fr.age_critic, id_critic=fr.id_critic,
                 dataset=PairDataset(8)).build()

    def edited_x0(model, cfg):
        obj = PadaObjective(model, fr, cfg)
        s = obj._read_batch(pair_batch(4))
        obj._embed(s)
        g = torch.Generator().manual_seed(3)
        s.z_out = s.z_src + 5.0 * torch.randn(s.z_src.shape, generator=g)  # a large edit
        obj._denoise(s, torch.Generator().manual_seed(0))
        return s

    free = edited_x0(tiny_model(), LossConfig())
    held = edited_x0(tiny_model(background_guard=0.03, tone_guard=0.1), LossConfig(train_guard=True))
    assert torch.equal(free.x0_src, held.x0_src)
    # exactly the inference guard, with each row's unedited x̂0 as its reference
    assert torch.equal(held.x0_tar, ToneGuard(free.x0_src, 0.1, background=0.03)(free.x0_tar))
    assert float((held.x0_tar - free.x0_tar).abs().max()) > 0.1
    model = tiny_model(init_gain=0.5, background_guard=0.03, tone_guard=0.1)
    objective = PadaObjective(model, fr, LossConfig(train_guard=True))
    losses = objective(pair_batch(4), torch.Generator().manual_seed(0))
    losses["total"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with pytest.raises(ValueError, match="train_guard=true needs"):
        PadaObjective(tiny_model(), fr, LossConfig(train_guard=True))(pair_batch(4))
