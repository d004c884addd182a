"""The back-off (pada.aging.backoff): outputs whose skin brightness changed unevenly or whose skin lost its
structure are rendered again with a shorter edit, in the pipeline, the lifespan and the linear baseline
(tiny random models)."""

from __future__ import annotations

import pytest
import torch

from pada.aging.backoff import BACKOFF_SCALES, STRUCTURE_BACKOFF_SCALES, STRUCTURE_WHOLE_SCALES, back_off
from pada.aging.pipeline import AgingPipeline
from pada.aging.testing import TinyVL
from pada.errors import PadaError
from pada.evaluation.scores import blotch, skin_mask, structure_change
from test_aging_helpers import faces, one_thread, tiny_diffae, tiny_model

TEXT = "man's face in his eighties"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def _blob_renderer(x: torch.Tensor, calls: list):
    """A stand-in decoder: the input with a pale blob on the forehead as bright as the code is long
    (z_src = 0, so the code's length is the edit's)."""
    blob = torch.zeros(1, 1, 64, 64)
    blob[..., 20:30, 24:40] = 1.0

    def render(rows, z):
        calls.append((list(rows), z.clone()))
        return (x + z.norm(dim=1).view(-1, 1, 1, 1) * blob).clamp(-1, 1)
    return render


def _blob_setup():
    """A black input (z_src = 0), the log of the renders and the stand-in decoder drawing into it."""
    x, calls = torch.zeros(1, 3, 64, 64), []
    return x, calls, _blob_renderer(x, calls), torch.zeros(1, 8)


def test_back_off_shortens_only_blotched_edits_and_keeps_the_first_clean_one():
    x, calls, render, z_src = _blob_setup()
    z_age = torch.zeros(3, 8)
    z_age[0, 0], z_age[1, 0], z_age[2, 0] = 0.1, 0.6, 1.6  # clean, blotched at 1 and 0.75, hopeless
    images = render([0, 1, 2], z_age)
    calls.clear()
    before = blotch(images, x)
    limit = float(blotch(render([0], torch.tensor([[0.32] + [0.0] * 7])), x))  # an edit of 0.32
    calls.clear()
    assert float(before[0]) < limit < float(before[1])
    out, z, scales = back_off(images, z_src, z_age, x, limit, render)
    assert scales == [1.0, 0.5, 0.5]  # 0.6 -> 0.45 (still over) -> 0.3 (within); 1.6: least blotched
    assert [rows for rows, _ in calls] == [[1, 2], [1, 2]]  # output 0 was never rendered again
    assert torch.equal(out[0], images[0]) and torch.equal(z[0], z_age[0])
    assert torch.allclose(z[1], 0.5 * z_age[1]) and torch.allclose(z[2], 0.5 * z_age[2])
    after = blotch(out, x)
    assert float(after[1]) <= limit and limit < float(after[2]) < float(before[2])
    assert BACKOFF_SCALES == (0.75, 0.5) and STRUCTURE_BACKOFF_SCALES == (0.75, 0.5, 0.25)
    with pytest.raises(PadaError, match="blotch guard"):
        back_off(images, z_src, z_age, x, 0.0, render)
    with pytest.raises(PadaError, match="back-off scales"):
        back_off(images, z_src, z_age, x, limit, render, scales=(1.2,))


def test_back_off_on_structure_catches_a_masked_face_the_blotch_score_lets_through():
    g = torch.Generator().manual_seed(0)
    x = (0.3 * torch.randn(1, 1, 64, 64, generator=g)).expand(1, 3, 64, 64).clone()  # skin with detail
    skin = skin_mask(64).bool()
    calls = []

    def render(rows, z):  # the skin's detail fades under an even grey mask as the code grows (z_src = 0)
        calls.append(list(rows))
        w = z.norm(dim=1).clamp(max=1.0).view(-1, 1, 1)
        out = x.repeat(z.shape[0], 1, 1, 1)
        out[..., skin] = (1 - w) * out[..., skin]
        return out

    z_src, z_age = torch.zeros(1, 8), torch.zeros(3, 8)
    z_age[0, 0], z_age[1, 0], z_age[2, 0] = 0.1, 0.8, 0.4
    images = render([0, 1, 2], z_age)
    calls.clear()
    s = structure_change(images, x)
    limit = float(structure_change(render([0], torch.tensor([[0.25] + [0.0] * 7])), x))
    calls.clear()
    assert float(s[0]) < limit < float(s[2]) < float(s[1])
    loose_blotch = float(blotch(images, x).max()) * 1.01  # the blotch score alone passes them all
    assert back_off(images, z_src, z_age, x, loose_blotch, render)[2] == [1.0, 1.0, 1.0] and calls == []
    out, z, scales = back_off(images, z_src, z_age, x, loose_blotch, render, structure_limit=limit)
    assert scales == [1.0, 0.25, 0.5]  # 0.8 -> 0.6 -> 0.4 -> 0.2 (within); 0.4 -> 0.3 -> 0.2 (within)
    assert calls == [[1, 2], [1, 2], [1]]
    assert bool((structure_change(out, x) <= limit).all())
    only = back_off(images, z_src, z_age, x, 0.0, render, structure_limit=limit)  # the blotch score off
    assert only[2] == scales and torch.equal(only[0], out)
    with pytest.raises(PadaError, match="blotch guard or a structure guard"):
        back_off(images, z_src, z_age, x, 0.0, render)
    with pytest.raises(PadaError, match="structure guard"):
        back_off(images, z_src, z_age, x, 0.0, render, structure_limit=1.5)


def test_structure_back_off_around_a_center_shortens_the_offset_last():
    """A draw whose own offset breaks the face: shortening the shared edit cannot clear it, so with the
    structure checked its whole edit is tried too (blotch-only back-offs keep every offset)."""
    g = torch.Generator().manual_seed(0)
    x = (0.3 * torch.randn(1, 1, 64, 64, generator=g)).expand(1, 3, 64, 64).clone()
    skin = skin_mask(64).bool()
    calls = []

    def render(rows, z):  # the skin fades as the code's second entry (the draw's offset) grows
        calls.append(list(rows))
        w = (2 * z[:, 1].abs()).clamp(max=1.0).view(-1, 1, 1)
        out = x.repeat(z.shape[0], 1, 1, 1)
        out[..., skin] = (1 - w) * out[..., skin]
        return out

    z_src, center = torch.zeros(1, 8), torch.zeros(1, 8)
    center[0, 0] = 0.6  # the shared edit does no harm here
    z_age = center.repeat(2, 1)
    z_age[0, 1], z_age[1, 1] = 0.02, 0.3  # a harmless offset and a breaking one
    images = render([0, 1], z_age)
    limit = float(structure_change(render([0], torch.tensor([[0.0, 0.1] + [0.0] * 6])), x))
    calls.clear()
    assert float(structure_change(images[:1], x)) < limit < float(structure_change(images[1:], x))
    out, z, scales = back_off(images, z_src, z_age, x, 0.0, render, center=center, structure_limit=limit)
    assert STRUCTURE_WHOLE_SCALES == (0.5, 0.25)
    assert calls == [[1]] * 5  # the shared edit at 0.75, 0.5, 0.25 (no help), the whole at 0.5, 0.25
    assert scales == [1.0, 0.25] and torch.allclose(z[1], 0.25 * z_age[1])  # offset 0.075: within
    assert bool((structure_change(out, x) <= limit).all())
    calls.clear()  # the blotch guard alone never shortens an offset
    blotchy = back_off(images, z_src, z_age, x, 1e-6, render, center=center)[1]
    assert len(calls) == len(BACKOFF_SCALES) and torch.equal(blotchy[:, 1], z_age[:, 1])


def _masking_decoder(x: torch.Tensor, z_src: torch.Tensor, scale: float):
    """A stand-in for ``AgingPipeline.decode``: the input ``x`` with its skin faded under an even grey mask
    as strong as the code's distance from ``z_src`` (times ``scale``, at most 1)."""
    skin = skin_mask(x.shape[-1]).bool()

    def decode(x_T, z, *args, **kwargs):
        w = ((z.cpu() - z_src).norm(dim=1) * scale).clamp(max=1.0).view(-1, 1, 1)
        out = x.repeat(z.shape[0], 1, 1, 1)
        out[..., skin] = (1 - w) * out[..., skin]
        return out
    return decode


def test_pipeline_lifespan_and_baseline_take_a_structure_guard():
    from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline

    p = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=4)
    g = torch.Generator().manual_seed(0)
    x = (0.3 * torch.randn(1, 1, 64, 64, generator=g)).expand(1, 3, 64, 64).clone()  # skin with detail
    z_src = p.encode(x).cpu()
    plain = p.age(x, text=TEXT, n=3, seed=1, eps=0.3, calibrate=False)
    d_len = (plain.z_age - z_src).norm(dim=1)
    p.decode = _masking_decoder(x, z_src, 1.0 / float(d_len.max()))  # the longest edit masks the skin fully
    plain = p.age(x, text=TEXT, n=3, seed=1, eps=0.3, calibrate=False)
    score = structure_change(plain.images, x)
    limit = 0.5 * float(score.min())  # every output over it
    held = p.age(x, text=TEXT, n=3, seed=1, eps=0.3, calibrate=False, structure_guard=limit)
    assert all(s in STRUCTURE_BACKOFF_SCALES for s in held.edit_scales)
    assert bool((structure_change(held.images, x) < score).all())
    assert held.edit_scales == p.age(x, text=TEXT, n=3, seed=1, eps=0.3, calibrate=False, blotch_guard=0.0,
                                     structure_guard=limit).edit_scales  # the blotch score plays no part here
    on = AgingPipeline(p.diffae, p.vl, tiny_model(init_gain=0.3, structure_guard=limit), steps=4)
    on.model.load_state_dict(p.model.state_dict())
    on.decode = p.decode
    assert torch.equal(on.age(x, text=TEXT, n=3, seed=1, eps=0.3, calibrate=False).images, held.images)
    assert torch.equal(on.age(x, text=TEXT, n=3, seed=1, eps=0.3, calibrate=False,
                              structure_guard=0.0).images, plain.images)
    with pytest.raises(PadaError, match="structure guard"):
        p.age(x, text=TEXT, n=1, structure_guard=-0.1)
    with pytest.raises(PadaError, match="structure_guard"):
        tiny_model(structure_guard=1.0)
    sweep = p.lifespan(x, gender="male", frames_per_segment=1, calibrate=False)
    swept = p.lifespan(x, gender="male", frames_per_segment=1, calibrate=False, structure_guard=limit)
    assert len(swept.edit_scales) == sweep.images.shape[0] and min(swept.edit_scales) < 1.0
    assert bool((structure_change(swept.images, x) <= structure_change(sweep.images, x) + 1e-6).all())
    d = LinearAgeDirection.fit(torch.randn(50, 64, generator=g), torch.rand(50, generator=g) * 60 + 10)
    base = LinearBaselinePipeline(p.diffae, d, steps=4, structure_guard=0.05)
    assert base.structure_guard == pytest.approx(0.05)
    res = base.age(x, target_age=80.0, strength=20.0, n=1)
    assert res.edit_scales is not None and len(res.edit_scales) == 1
    with pytest.raises(PadaError, match="structure guard"):
        LinearBaselinePipeline(p.diffae, d, steps=4, structure_guard=2.0)


def test_back_off_around_a_center_shortens_the_shared_edit_and_keeps_each_offset():
    x, calls, render, z_src = _blob_setup()
    center = torch.zeros(1, 8)
    center[0, 0] = 0.6  # the shared edit: blotched at full length, clean at 0.5
    z_age = center.repeat(3, 1)
    z_age[0, 1], z_age[1, 1], z_age[2, 2] = 0.05, -0.05, 0.08  # each draw's own offset
    images = render([0, 1, 2], z_age)
    limit = float(blotch(render([0], torch.tensor([[0.32, 0.08] + [0.0] * 6])), x))
    calls.clear()
    out, z, scales = back_off(images, z_src, z_age, x, limit, render, center=center)
    assert scales == [0.5, 0.5, 0.5]
    offsets = z - 0.5 * center
    assert torch.allclose(offsets, z_age - center)  # the draws stay as far apart as they were
    assert torch.allclose(z[:, 0], torch.full((3,), 0.3))
    plain_z = back_off(images, z_src, z_age, x, limit, render)[1]  # without a center the offsets shrink too
    assert torch.allclose(plain_z, 0.5 * z_age)
    with pytest.raises(PadaError, match="center"):
        back_off(images, z_src, z_age, x, limit, render, center=center[0])


def test_pipeline_lifespan_and_baseline_back_off_under_the_blotch_guard():
    from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline

    p = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=4)
    x = faces(1)[0]
    plain = p.age(x, text=TEXT, n=3, seed=1, eps=0.3)  # draws that differ
    assert plain.edit_scales is None
    score = blotch(plain.images, x[None])
    limit = float(score.min()) + 0.5 * float(score.max() - score.min())  # at least one output over it
    held = p.age(x, text=TEXT, n=3, seed=1, eps=0.3, blotch_guard=limit)
    assert len(held.edit_scales) == 3 and set(held.edit_scales) <= {1.0, *BACKOFF_SCALES}
    after = blotch(held.images, x[None])
    z_src = p.encode(x[None]).cpu()
    e_mean = p.pae(text=TEXT, n=1, high_diversity=False)
    center = p.modulate(p.encode(x[None]), e_mean).cpu()  # the code of the PAE mean
    assert not torch.allclose(plain.z_age, center.expand_as(plain.z_age), atol=1e-4)  # the draws differ
    for k, s in enumerate(held.edit_scales):
        if float(score[k]) <= limit:  # within the limit: untouched
            assert s == 1.0 and torch.equal(held.images[k], plain.images[k])
        else:  # rendered again from the shortened edit, and never more blotched
            assert s < 1.0 and float(after[k]) <= float(score[k])
            assert torch.allclose(held.z_age[k], z_src[0] + s * (center[0] - z_src[0])
                                  + (plain.z_age[k] - center[0]), atol=1e-5)
    assert any(s < 1.0 for s in held.edit_scales)
    for k in range(3):  # an output does not depend on how many others were asked for
        alone = p.age(x, text=TEXT, n=k + 1, seed=1, eps=0.3, blotch_guard=limit)
        assert torch.allclose(alone.images[k], held.images[k], atol=1e-4)
        assert alone.edit_scales[k] == held.edit_scales[k]
    with pytest.raises(PadaError, match="blotch guard"):
        p.age(x, text=TEXT, n=1, blotch_guard=1.5)
    # stored in the model: its default, which a request can turn off
    on = AgingPipeline(p.diffae, p.vl, tiny_model(init_gain=0.3, blotch_guard=limit), steps=4)
    on.model.load_state_dict(p.model.state_dict())
    assert torch.equal(on.age(x, text=TEXT, n=3, seed=1, eps=0.3).images, held.images)
    assert torch.equal(on.age(x, text=TEXT, n=3, seed=1, eps=0.3, blotch_guard=0.0).images, plain.images)
    with pytest.raises(PadaError, match="blotch_guard"):
        tiny_model(blotch_guard=1.0)
    sweep = p.lifespan(x, gender="male", frames_per_segment=1)
    swept = p.lifespan(x, gender="male", frames_per_segment=1, blotch_guard=limit)
    assert len(swept.edit_scales) == sweep.images.shape[0]
    assert bool((blotch(swept.images, x[None]) <= blotch(sweep.images, x[None]) + 1e-6).all())
    g = torch.Generator().manual_seed(0)
    d = LinearAgeDirection.fit(torch.randn(50, 64, generator=g), torch.rand(50, generator=g) * 60 + 10)
    free = LinearBaselinePipeline(p.diffae, d, steps=4).age(x, target_age=80.0, strength=20.0, n=1)
    tight = float(blotch(free.images, x[None])[0]) * 0.9
    base = LinearBaselinePipeline(p.diffae, d, steps=4, blotch_guard=tight)
    res = base.age(x, target_age=80.0, strength=20.0, n=1)
    assert base.blotch_guard == pytest.approx(tight) and res.edit_scales[0] < 1.0
    assert float(blotch(res.images, x[None])[0]) < float(blotch(free.images, x[None])[0])
    off = base.age(x, target_age=80.0, strength=20.0, n=1, blotch_guard=0.0)  # per call
    assert torch.equal(off.images, free.images) and off.edit_scales is None


def test_blotch_reads_only_the_skin_region():
    x = torch.zeros(1, 3, 64, 64)
    crown = x.clone()
    crown[..., :10, :] = 0.8  # the top of the head lightened: outside the skin ellipse
    assert not bool(skin_mask(64)[:10].any())
    assert float(blotch(crown, x)[0]) == 0.0


def test_grid_captions_mark_the_results_the_back_off_shortened():
    from types import SimpleNamespace

    from pada.aging.photo import FaceResult, age_faces, face_grid, make_targets, result_caption

    x = faces(1)[0]
    answers = iter([[1.0, 0.5], None])  # the back-off caught result 1 of the first target; then it was off

    def age(image, **_):
        return SimpleNamespace(images=image.repeat(2, 1, 1, 1), images_hr=None, edit_scales=next(answers))

    fr = FaceResult(0, None, x)
    targets = make_targets([TEXT, "man's face in his sixties"])
    age_faces(SimpleNamespace(age=age), [fr], targets, n=2)
    assert fr.edit_scales == [[1.0, 0.5], None]
    assert [result_caption(fr, 0, i) for i in range(2)] == ["#0", "#1 x0.5"]
    assert [result_caption(fr, 1, i) for i in range(2)] == ["#0", "#1"]
    fr.out_ages = [[31.0, 52.4], [40.0, 41.0]]
    assert result_caption(fr, 0, 1) == "#1 ~52 x0.5"
    assert face_grid(fr, targets).ndim == 3  # the grid draws them


def test_results_whose_skin_lost_its_structure_are_marked():
    from types import SimpleNamespace

    from pada.aging.photo import (
        BROKEN_NOTE,
        FaceResult,
        age_faces,
        count_broken,
        make_targets,
        mark_broken_frames,
        result_caption,
    )
    from pada.evaluation.scores import STRUCTURE_LIMIT, gaussian_blur

    x = faces(1)[0]
    smeared = gaussian_blur(x[None], 6.0)  # the features washed out: what a person calls broken

    def age(image, **_):  # result 0 keeps the face, result 1 is the smeared one
        return SimpleNamespace(images=torch.cat([image, smeared]), images_hr=None, edit_scales=[1.0, 0.5])

    fr = FaceResult(0, None, x)
    age_faces(SimpleNamespace(age=age), [fr], make_targets([TEXT]), n=2)
    kept, lost = fr.structure[0]
    assert kept < 1e-6 < STRUCTURE_LIMIT < lost
    assert [result_caption(fr, 0, i) for i in range(2)] == ["#0", "#1 x0.5 !"]
    assert count_broken([fr]) == 1 and count_broken([FaceResult(1, None, x)]) == 0
    assert BROKEN_NOTE.format(n=1).startswith("note: 1 result(s) marked '!'")
    # a lifespan's frames: the smeared frame's caption gets the mark, an unlabelled frame gets it alone
    labels, n = mark_broken_frames(["twenties", "", ""], torch.cat([x[None], smeared, smeared]), x[None])
    assert labels == ["twenties", "!", "!"] and n == 2
    assert mark_broken_frames(["sixties"], smeared, x)[0] == ["! sixties"]


def test_back_off_scores_each_output_against_its_own_reference():
    """With one reference per output (the input rendered from each output's fresh start noise), an output
    equal to its reference is clean however far it is from the input image; a reference of the wrong
    shape is an error naming it."""
    x, calls, render, z_src = _blob_setup()
    z_age = torch.zeros(2, 8)
    z_age[:, 0] = 0.6
    images = render([0, 1], z_age)
    calls.clear()
    limit = 0.5 * float(blotch(images, x).min())
    assert back_off(images, z_src, z_age, x, limit, render)[2] != [1.0, 1.0]  # against the image: caught
    calls.clear()
    refs = images.clone()
    refs[1] = x[0]  # output 1 is still scored against the plain input
    out, _, scales = back_off(images, z_src, z_age, refs, limit, render)
    assert scales[0] == 1.0 and scales[1] < 1.0 and [rows for rows, _ in calls][0] == [1]
    assert torch.equal(out[0], images[0])
    with pytest.raises(PadaError, match="reference"):
        back_off(images, z_src, z_age, torch.zeros(3, 3, 64, 64), limit, render)


def test_pipelines_back_off_fresh_noise_outputs_against_the_input_rendered_from_that_noise(monkeypatch):
    """From fresh start noise (``low_diversity``) the face is laid out anew, so the pipeline and the linear
    baseline hand the back-off the input's own code rendered from each output's noise; from the inverted
    noise, the input image."""
    import pada.aging.baseline as baseline_mod
    import pada.aging.pipeline as pipeline_mod
    from pada.aging.baseline import LinearAgeDirection, LinearBaselinePipeline

    seen = []

    def spy(images, z_src, z_age, image, *args, **kwargs):
        seen.append(image.detach().cpu().clone())
        return images, z_age, [1.0] * images.shape[0]

    monkeypatch.setattr(pipeline_mod, "back_off", spy)
    monkeypatch.setattr(baseline_mod, "back_off", spy)
    p = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=4)
    x = faces(1)
    z_src = p.encode(x)
    p.age(x, text=TEXT, n=3, seed=1, calibrate=False, low_diversity=True, structure_guard=0.1)
    x_T = p.start_noise(x.shape[1:], [pipeline_mod.output_seed(1, i) for i in range(3)])
    own = p.decode(x_T, z_src.expand(3, -1), 4, x0_guard=p.tone_guard(x, None, None, None))
    assert seen[-1].shape == (3, *x.shape[1:]) and torch.allclose(seen[-1], own, atol=1e-5)
    p.age(x, text=TEXT, n=3, seed=1, calibrate=False, structure_guard=0.1)
    assert torch.equal(seen[-1], x.cpu())
    g = torch.Generator().manual_seed(0)
    d = LinearAgeDirection.fit(torch.randn(50, 64, generator=g), torch.rand(50, generator=g) * 60 + 10)
    base = LinearBaselinePipeline(p.diffae, d, steps=4, structure_guard=0.1)
    base.age(x, target_age=80.0, strength=2.0, n=2, low_diversity=True)
    assert seen[-1].shape == (2, *x.shape[1:]) and not torch.allclose(seen[-1], x.expand(2, -1, -1, -1))
    base.age(x, target_age=80.0, strength=2.0, n=2)
    assert torch.equal(seen[-1], x.cpu())
