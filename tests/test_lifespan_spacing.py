"""The lifespan's anchor spacing (pada.aging.backoff.space_anchors, ``PadaConfig.space_lifespan``): on each
side of the input's own age, every anchor changes the face no more than the side's outermost anchor times its
share of the distance, and no more than the next anchor out; only ever shorter (tiny random models)."""

from __future__ import annotations

import pytest
import torch

from pada.aging.backoff import edit_sizes, space_anchors
from pada.errors import PadaError
from test_aging_helpers import faces, one_thread, tiny_diffae
from test_contrast_bound import _coarse_pipeline, _linear_stand_in, _ratio

CENTRES = [2.5, 10.5, 20.5, 30.5, 43.0, 60.5, 80.0]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def _anchors(seed=0, n=7, dim=8):
    g = torch.Generator().manual_seed(seed)
    z_src = torch.randn(1, dim, generator=g)
    return z_src, z_src + torch.randn(n, dim, generator=g)


@pytest.mark.parametrize("source_age", [33.0, 50.0, 15.0])
def test_spaced_anchors_grow_away_from_the_source_and_only_shrink(source_age):
    d = _linear_stand_in()
    z_src, z = _anchors()
    before = _ratio(d, z_src, z)
    out, f = space_anchors(d, z_src, z, CENTRES, source_age)
    after = _ratio(d, z_src, out)
    torch.testing.assert_close(edit_sizes(d, z_src, out), after)
    for k in range(7):  # each edit shortened along itself (the stand-in is linear: sizes scale with f)
        assert 0.0 <= f[k] <= 1.0
        torch.testing.assert_close(out[k] - z_src[0], f[k] * (z[k] - z_src[0]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(after[k], f[k] * before[k], rtol=1e-5, atol=1e-6)
    c = torch.tensor(CENTRES)
    for side in (c < source_age, c >= source_age):
        order = sorted(torch.nonzero(side).flatten().tolist(), key=lambda k: abs(CENTRES[k] - source_age))
        outer = order[-1]
        assert f[outer] == pytest.approx(1.0)  # the side's furthest anchor keeps its edit
        sizes = [float(after[k]) for k in order]
        # no anchor changes the face more than the next one out
        assert all(a <= b + 1e-5 for a, b in zip(sizes, sizes[1:])), sizes
        for k in order:
            share = abs(CENTRES[k] - source_age) / abs(CENTRES[outer] - source_age)
            assert float(after[k]) <= float(before[outer]) * share + 1e-5
    # random edits: the spacing did shorten something, and an anchor at the source's own age is not edited
    assert min(f) < 1.0
    _, f_own = space_anchors(d, z_src, z, CENTRES, 30.5)
    assert f_own[3] == pytest.approx(0.0)


def test_spacing_without_a_coarse_path_measures_the_edit_in_z_and_checks_its_input():
    plain = tiny_diffae()  # tiny32: no coarse image path
    z_src, z = _anchors(dim=64)
    sizes = edit_sizes(plain, z_src, z)
    torch.testing.assert_close(sizes, (z - z_src).norm(dim=1))
    out, f = space_anchors(plain, z_src, z, CENTRES, 33.0)
    torch.testing.assert_close((out - z_src).norm(dim=1), torch.tensor(f) * sizes, rtol=1e-5, atol=1e-5)
    older = (out - z_src).norm(dim=1)[4:]
    assert older[0] <= older[1] <= older[2] + 1e-6
    with pytest.raises(PadaError, match="one target age per anchor"):
        space_anchors(plain, z_src, z, CENTRES[:5], 33.0)


def test_pipeline_lifespan_spaces_its_anchors_when_asked_or_by_the_model():
    p = _coarse_pipeline()
    x = faces(1)
    seen = []
    real_decode = p.decode
    p.decode = lambda x_T, z, *a, **k: seen.append(z.clone()) or real_decode(x_T, z, *a, **k)  # noqa: N803
    plain = p.lifespan(x, gender="male", frames_per_segment=1, calibrate=False)
    spaced = p.lifespan(x, gender="male", frames_per_segment=1, calibrate=False, space=True)
    p.decode = real_decode
    assert plain.anchor_scales is None and len(spaced.anchor_scales) == 7
    z_plain, z_spaced = seen
    e = torch.cat([p.pae(text=t, n=1, high_diversity=False) for t in plain.labels])
    want, f = space_anchors(p.diffae, p.encode(x), z_plain, p.target_ages(e), p.read_age(x))
    torch.testing.assert_close(z_spaced, want)
    assert f == pytest.approx(spaced.anchor_scales)
    assert min(f) < 1.0 and not torch.equal(spaced.images, plain.images)
    stored = _coarse_pipeline(space_lifespan=True)  # the model's own default, off per request
    assert torch.equal(stored.lifespan(x, gender="male", frames_per_segment=1, calibrate=False).images,
                       spaced.images)
    assert torch.equal(stored.lifespan(x, gender="male", frames_per_segment=1, calibrate=False,
                                       space=False).images, plain.images)
