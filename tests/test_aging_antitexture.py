"""PADA's guards against critic-fooling texture: bounded shift, augmented critic views, shift L_norm,
skipped same-group rows, the mode-seeking diversity term (tiny random models)."""

from __future__ import annotations

import pytest
import torch

from pada.aging.augment import apply_view, draw_views, subset
from pada.aging.config import LossConfig, PadaConfig
from pada.aging.modulation import bound_shift
from pada.aging.objective import Frozen, PadaObjective
from pada.errors import PadaError
from test_aging_helpers import PairDataset, frozen_set, one_thread, pair_batch, tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def frozen():
    return Frozen(*frozen_set())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_bound_shift_saturates_and_keeps_small_moves():
    z = torch.randn(5, 64, generator=gen(0))
    d = torch.randn(5, 64, generator=gen(1))
    d = d / d.norm(dim=-1, keepdim=True) * z.norm(dim=-1, keepdim=True)
    for r in (0.01, 0.3, 1.0, 10.0):
        out = bound_shift(z, z + r * d, 0.5)
        rel = (out - z).norm(dim=-1) / z.norm(dim=-1)
        assert (rel <= 0.5 + 1e-5).all()
        cos = torch.nn.functional.cosine_similarity(out - z, d, dim=-1)
        assert (cos > 0.9999).all()  # the direction is kept
    small = bound_shift(z, z + 0.01 * d, 0.5)
    assert torch.allclose(small, z + 0.01 * d, atol=1e-4)
    assert torch.equal(bound_shift(z, z + d, 0.0), z + d)  # 0: no bound


def test_model_applies_its_max_shift():
    model = tiny_model(init_gain=2.0, max_shift=0.2)
    z = torch.randn(4, 64, generator=gen(2))
    e = torch.nn.functional.normalize(torch.randn(4, 32, generator=gen(3)), dim=-1)
    z_age = model(z, e)
    rel = (z_age - z).norm(dim=-1) / z.norm(dim=-1)
    assert (rel <= 0.2 + 1e-5).all() and (rel > 0.05).all()
    with pytest.raises(PadaError, match="max_shift"):
        PadaConfig(max_shift=-1)


def test_views_are_mild_random_and_the_same_for_a_row():
    x = torch.rand(4, 3, 32, 32, generator=gen(4)) * 2 - 1
    view = draw_views(4, 1.0, gen(5), "cpu")
    a, b = apply_view(x, view), apply_view(x, view)
    assert torch.equal(a, b) and a.shape == x.shape
    assert 0.01 < float((a - x).abs().mean()) < 0.6
    # a subset of rows sees exactly the views those rows see in the full batch
    mask = torch.tensor([False, True, False, True])
    assert torch.allclose(apply_view(x[mask], subset(view, mask)), a[mask], atol=1e-5)
    # views remove a fine checkerboard far more than a smooth gradient
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float().expand(1, 3, 32, 32) * 2 - 1
    ramp = torch.linspace(-1, 1, 32).expand(1, 3, 32, 32)
    v1 = draw_views(1, 1.0, gen(6), "cpu")
    v1["sigma"] = torch.tensor([1.0])
    kept_checker = float(apply_view(checker, v1).std() / checker.std())
    kept_ramp = float(apply_view(ramp, v1).std() / ramp.std())
    assert kept_checker < 0.3 < 0.9 < kept_ramp
    with pytest.raises(PadaError, match="augment"):
        LossConfig(augment=2.0)


def test_objective_with_every_guard_on_trains_and_is_deterministic(frozen):
    cfg = LossConfig(t_max=300, augment=0.5, norm_target="shift", skip_same_group=True, lambda_div=1.0,
                     div_target=0.2, train_text_eps=0.05)
    model = tiny_model(init_gain=0.05, max_shift=0.5)
    obj = PadaObjective(model, frozen, cfg)
    out = obj(pair_batch(), gen())
    assert "L_div" in out and all(torch.isfinite(v) for v in out.values())
    expect = sum((cfg.lambda_div if k == "L_div" else cfg.weight(k)) * v
                 for k, v in out.items() if k != "total")
    assert torch.allclose(out["total"], expect)
    out["total"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.modulation.parameters())
    again = obj(pair_batch(), gen())
    assert all(torch.allclose(again[k], out[k]) for k in out)


def test_shift_norm_is_zero_at_identity_and_counts_relative_moves(frozen):
    cfg = LossConfig(disabled=("L_age", "L_clip", "L_tKL", "L_id", "L_rec"), norm_target="shift", t_max=300)
    ident = tiny_model(init_gain=0.0)
    assert float(PadaObjective(ident, frozen, cfg)(pair_batch(), gen())["L_norm"]) < 1e-10
    moved = tiny_model(init_gain=0.5)
    assert float(PadaObjective(moved, frozen, cfg)(pair_batch(), gen())["L_norm"]) > 0.0


def test_skip_same_group_removes_rows_without_an_age_change(frozen):
    batch = pair_batch()
    batch["target_group"] = batch["source_group"].clone()  # every row asks for its own group
    keep = LossConfig(disabled=("L_clip", "L_tKL", "L_id", "L_norm", "L_rec"), t_max=300)
    skip = LossConfig(disabled=keep.disabled, t_max=300, skip_same_group=True)
    model = tiny_model(init_gain=0.5)
    assert float(PadaObjective(model, frozen, skip)(batch, gen())["L_age"]) == 0.0
    assert float(PadaObjective(model, frozen, keep)(batch, gen())["L_age"]) != 0.0


def test_diversity_term_pushes_draws_apart(frozen):
    cfg = LossConfig(disabled=("L_age", "L_clip", "L_tKL", "L_id", "L_norm", "L_rec"), lambda_div=1.0,
                     div_target=0.5, train_text_eps=0.1, t_max=300)
    model = tiny_model(init_gain=0.05)
    obj = PadaObjective(model, frozen, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(15):
        out = obj(pair_batch(), gen(step))
        first = float(out["L_div"]) if first is None else first
        opt.zero_grad()
        out["total"].backward()
        opt.step()
    assert float(out["L_div"]) < first


def test_shift_subspace_keeps_moves_among_the_directions_real_codes_vary_in(frozen):
    from pada.aging.model import PadaModel
    from pada.aging.train import PadaTask, PadaTaskOptions

    model = tiny_model(init_gain=2.0, max_shift=0.3, shift_subspace=4)
    real = torch.randn(40, 4, generator=gen(4)) @ torch.randn(4, 64, generator=gen(5))
    kept = model.modulation.set_subspace(real + 0.01 * torch.randn(40, 64, generator=gen(6)))
    assert kept > 0.99
    z = real[:3]
    e = torch.nn.functional.normalize(torch.randn(3, 32, generator=gen(7)), dim=-1)
    d = model(z, e) - z
    basis = model.modulation.shift_basis
    assert float(d.norm()) > 0.01  # it moves ...
    assert torch.allclose(d, (d @ basis.T) @ basis, atol=1e-5)  # ... only inside the subspace
    assert ((d.norm(dim=-1) / z.norm(dim=-1)) <= 0.3 + 1e-5).all()  # and within the bound
    with pytest.raises(PadaError, match="shift_subspace"):
        PadaConfig(z_dim=8, shift_subspace=9)
    # files without a subspace keep loading strictly (no shift_basis key), files with one carry it
    assert "modulation.shift_basis" not in tiny_model().state_dict()
    back = PadaModel(model.cfg)
    back.load_state_dict(model.state_dict())
    assert torch.equal(back.modulation.shift_basis, basis)
    # the training task fits the basis to the frozen DiffAE's codes of the training faces before step 1
    task = PadaTask(PadaTaskOptions(sample_faces=0, pada={"shift_subspace": 3}), diffae=frozen.diffae,
                    vl=frozen.vl, age_critic=frozen.age_critic, id_critic=frozen.id_critic,
                    dataset=PairDataset(8))
    task.build()
    b = task.model.modulation.shift_basis
    assert torch.allclose(b @ b.T, torch.eye(3), atol=1e-4)


def test_shift_age_direction_adds_the_age_direction_to_the_subspace(frozen):
    from pada.aging.model import PadaModel
    from pada.aging.train import PadaTask, PadaTaskOptions

    with pytest.raises(PadaError, match="shift_subspace > 0"):
        PadaConfig(z_dim=8, shift_age_direction=True)
    model = tiny_model(init_gain=2.0, shift_subspace=4, shift_age_direction=True, source_input=True)
    real = torch.randn(40, 4, generator=gen(4)) @ torch.randn(4, 64, generator=gen(5))
    w = torch.randn(64, generator=gen(8))  # mostly outside the directions the codes vary in
    with pytest.raises(ValueError, match="age direction"):
        model.modulation.set_subspace(real)
    model.modulation.set_subspace(real, w)
    basis = model.modulation.shift_basis
    assert basis.shape == (5, 64) and torch.allclose(basis @ basis.T, torch.eye(5), atol=1e-5)
    torch.testing.assert_close((w @ basis.T) @ basis, w, atol=1e-4, rtol=1e-4)  # w itself is reachable
    pcs = PadaModel(tiny_model(shift_subspace=4).cfg).modulation
    pcs.set_subspace(real)
    assert torch.allclose(basis[:4].abs(), pcs.shift_basis.abs(), atol=1e-4)  # the first rows: unchanged
    assert model.modulation.source_coords(real[:2]).shape == (2, 4)  # the source input reads the PCs only
    back = PadaModel(model.cfg)
    back.load_state_dict(model.state_dict())
    assert torch.equal(back.modulation.shift_basis, basis)
    # the training task fits the age direction and adds it, also without L_dir
    task = PadaTask(PadaTaskOptions(sample_faces=0, pada={"shift_subspace": 3, "shift_age_direction": True}),
                    diffae=frozen.diffae, vl=frozen.vl, age_critic=frozen.age_critic,
                    id_critic=frozen.id_critic, dataset=PairDataset(8))
    task.build()
    b = task.model.modulation.shift_basis
    assert b.shape[0] == 4 and torch.allclose(b @ b.T, torch.eye(4), atol=1e-4)


def test_direction_prior_pulls_the_shift_toward_the_data_age_direction(frozen):
    from pada.aging.train import PadaTask, PadaTaskOptions

    torch.manual_seed(0)
    model = tiny_model(init_gain=0.05)
    cfg = LossConfig(lambda_dir=1.0, disabled=("L_age", "L_clip", "L_id", "L_tKL", "L_rec", "L_norm"))
    obj = PadaObjective(model, frozen, cfg)
    batch = pair_batch(6)
    with pytest.raises(ValueError, match="set_age_direction|age direction"):
        obj(batch, gen(0))
    w = torch.randn(64, generator=gen(9)) * 0.01
    obj.set_age_direction(w)
    centre = [2.5, 10.5, 20.5, 30.5, 43.0, 60.5, 80.0]
    years = torch.tensor([centre[int(g)] for g in batch["target_group"]]) - \
        torch.tensor([centre[int(g)] for g in batch["source_group"]])
    assert years.abs().sum() > 0
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = obj(batch, gen(1))
        first = first if first is not None else float(out["L_dir"])
        opt.zero_grad()
        out["total"].backward()
        opt.step()
    assert float(out["L_dir"]) < 0.3 * first
    with pytest.raises(PadaError, match="lambda_dir"):
        LossConfig(lambda_dir=-1)
    # the training task fits the direction from the frozen DiffAE's codes before step 1
    task = PadaTask(PadaTaskOptions(sample_faces=0, loss={"lambda_dir": 0.5}), diffae=frozen.diffae,
                    vl=frozen.vl, age_critic=frozen.age_critic, id_critic=frozen.id_critic,
                    dataset=PairDataset(8))
    task.build()
    assert task.objective.age_direction is not None and task.objective.age_direction.shape == (64,)


CRITIC_LOSSES = ("L_age", "L_clip", "L_id", "L_tKL", "L_rec")


def direction_case():
    """A batch, an age direction w, a direction orthogonal to it, and the years each row asks for."""
    batch = pair_batch(6)
    w = torch.randn(64, generator=gen(9)) * 0.01
    other = torch.randn(64, generator=gen(10))
    other = (other - (other @ w) / (w @ w) * w) * 0.05  # orthogonal to w
    centre = [2.5, 10.5, 20.5, 30.5, 43.0, 60.5, 80.0]
    years = torch.tensor([centre[int(g)] for g in batch["target_group"]]) - \
        torch.tensor([centre[int(g)] for g in batch["source_group"]])
    return batch, w, other, years


def test_direction_prior_along_w_holds_only_the_amount_of_aging(frozen):
    """dir_mode="along" penalises only the shift's length along w (so L_div may spread the PAE draws
    orthogonally); "full" penalises the whole difference from Δa·w."""
    batch, w, other, years = direction_case()

    class Shift(torch.nn.Module):  # z_age = z_src + 0.5·Δa·w + an orthogonal part
        def forward(self, z_src, e_age, eta=None):
            return z_src + 0.5 * years[:, None] * w[None] + other[None] + 0 * e_age.sum()

    found = {}
    for mode in ("full", "along"):
        model = tiny_model()
        model.modulation = Shift()
        cfg = LossConfig(lambda_dir=1.0, dir_mode=mode, disabled=CRITIC_LOSSES)
        obj = PadaObjective(model, frozen, cfg)
        obj.set_age_direction(w)
        found[mode] = float(obj(batch, gen(1))["L_dir"])
    z_src = frozen.diffae.encode(batch["source"].float()).float()
    size = z_src.square().sum(-1)
    along = ((0.5 * years * w.norm()) ** 2 / size).mean()
    full = (((0.5 * years[:, None] * w[None] - other[None]).square().sum(-1)) / size).mean()
    assert found["along"] == pytest.approx(float(along), rel=1e-4)
    assert found["full"] == pytest.approx(float(full), rel=1e-4)
    assert found["along"] < found["full"]
    with pytest.raises(PadaError, match="dir_mode"):
        LossConfig(dir_mode="sideways")


def test_direction_prior_mean_mode_holds_the_pae_mean_and_only_the_draws_length_along_w(frozen):
    """dir_mode="mean": the PAE mean's (η = 0) whole shift against Δa·w, and of each draw's deviation from
    that mean only the part along w; a deviation across w costs nothing, one along w does."""
    batch, w, other, years = direction_case()

    def run(deviation):
        class Shift(torch.nn.Module):  # the mean: 0.5·Δa·w; a draw adds (η·1)·deviation
            def forward(self, z_src, e_age, eta=None):
                k = torch.zeros(z_src.shape[0]) if eta is None else eta.sum(-1)
                return z_src + 0.5 * years[:, None] * w[None] + k[:, None] * deviation[None] + 0 * e_age.sum()

        model = tiny_model()
        model.modulation = Shift()
        cfg = LossConfig(lambda_dir=1.0, dir_mode="mean", disabled=CRITIC_LOSSES)
        obj = PadaObjective(model, frozen, cfg)
        obj.set_age_direction(w)
        return float(obj(batch, gen(1))["L_dir"])

    z_src = frozen.diffae.encode(batch["source"].float()).float()
    size = z_src.square().sum(-1)
    mean_only = float(((0.5 * years * w.norm()) ** 2 / size).mean())
    assert run(other) == pytest.approx(mean_only, rel=1e-4)  # a draw may move across w for free
    assert run(torch.zeros(64)) == pytest.approx(mean_only, rel=1e-4)
    assert run(w * 5.0) > 1.5 * mean_only  # but not along it


def test_diversity_across_w_ignores_draws_that_differ_only_in_how_far_they_age(frozen):
    """div_across=true: L_div counts only the part of two draws' difference orthogonal to w."""
    batch, w, other, _ = direction_case()

    def run(deviation, across):
        class Shift(torch.nn.Module):  # each draw adds (η·1)·deviation
            def forward(self, z_src, e_age, eta=None):
                k = torch.zeros(z_src.shape[0]) if eta is None else eta.sum(-1)
                return z_src + k[:, None] * deviation[None] + 0 * e_age.sum()

        model = tiny_model()
        model.modulation = Shift()
        cfg = LossConfig(lambda_dir=1.0, lambda_div=1.0, div_target=1e3, div_across=across,
                         disabled=CRITIC_LOSSES)
        obj = PadaObjective(model, frozen, cfg)
        obj.set_age_direction(w)
        return float(obj(batch, gen(1))["L_div"])

    along = w / w.norm() * other.norm()  # as long as `other`, but along w
    assert run(along, True) == pytest.approx(1e3)  # no credit for differing along w
    assert run(along, False) < 1e3
    assert run(other, True) == pytest.approx(run(other, False), rel=1e-5)  # across w: all of it counts
    with pytest.raises(PadaError, match="div_across"):
        LossConfig(div_across=True)


def test_direction_prior_from_age_labels_follows_the_reference_s_own_age(frozen):
    """dir_target="label": image rows ask for the reference's labelled age, text rows for the target
    group's centre, both from the source's labelled age."""
    batch = pair_batch(6)
    w = torch.randn(64, generator=gen(9)) * 0.01
    model = tiny_model()

    class Still(torch.nn.Module):  # z_age = z_src: L_dir is then Δa²·‖w‖² / ‖z_src‖² per row
        def forward(self, z_src, e_age, eta=None):
            return z_src + 0 * e_age.sum()

    model.modulation = Still()
    cfg = LossConfig(lambda_dir=1.0, dir_target="label", disabled=CRITIC_LOSSES)
    obj = PadaObjective(model, frozen, cfg)
    obj.set_age_direction(w)
    got = float(obj(batch, gen(1))["L_dir"])
    centre = torch.tensor([2.5, 10.5, 20.5, 30.5, 43.0, 60.5, 80.0])
    is_img = torch.tensor([m == "image" for m in batch["mode"]])
    years = torch.where(is_img, batch["reference_age"], centre[batch["target_group"]]) - batch["source_age"]
    assert years[0] == 0  # the row whose reference is its source asks for no change
    size = frozen.diffae.encode(batch["source"].float()).float().square().sum(-1)
    assert got == pytest.approx(float((years.square() * w.square().sum() / size).mean()), rel=1e-4)
    del batch["reference_age"]
    with pytest.raises(ValueError, match="reference_age"):
        obj(batch, gen(1))
    with pytest.raises(PadaError, match="dir_target"):
        LossConfig(dir_target="guess")


def test_age_loss_skips_rows_whose_reference_is_a_stand_in(frozen):
    batch = pair_batch(6)
    obj = PadaObjective(tiny_model(), frozen, LossConfig())
    real = obj(batch, gen(1))
    assert float(real["L_age"]) != 0.0
    batch["reference_real"] = torch.zeros(6, dtype=torch.bool)  # text rows aimed at ages the data lacks
    out = obj(batch, gen(1))
    assert float(out["L_age"]) == 0.0
    assert torch.equal(out["L_clip"], real["L_clip"])  # the text losses still apply


def test_direction_spread_gives_each_pae_draw_its_own_amount_of_aging(frozen):
    from pada.aging.objective import _draw_rate

    eta = torch.randn(4000, 32, generator=gen(3))
    r = _draw_rate(eta)
    assert float(r.abs().max()) <= 1.0 and float(r.std()) > 0.4  # spread over [-1, 1], ~N(0, 1/4)
    assert torch.equal(r, _draw_rate(eta.clone()))  # a fixed function of the noise
    batch = pair_batch(6)
    w = torch.randn(64, generator=gen(9)) * 0.01
    model = tiny_model()

    class Still(torch.nn.Module):
        def forward(self, z_src, e_age, eta=None):
            return z_src + 0 * e_age.sum()

    model.modulation = Still()
    got = {}
    for spread in (0.0, 0.5):
        cfg = LossConfig(lambda_dir=1.0, dir_spread=spread, disabled=CRITIC_LOSSES)
        obj = PadaObjective(model, frozen, cfg)
        obj.set_age_direction(w)
        got[spread] = float(obj(batch, gen(1))["L_dir"])
    assert got[0.5] != pytest.approx(got[0.0], rel=1e-3)  # the draw changes what L_dir asks for
    with pytest.raises(PadaError, match="dir_spread"):
        LossConfig(dir_spread=1.0)


def test_draw_head_starts_silent_then_lets_each_draw_move_the_code():
    z = torch.randn(4, 64, generator=gen(4))
    e = torch.nn.functional.normalize(torch.randn(4, 32, generator=gen(5)), dim=-1)
    eta = torch.randn(4, 32, generator=gen(6))
    model = tiny_model(init_gain=0.3, draw_hidden=16)
    plain = model(z, e)
    assert torch.equal(model(z, e, eta), plain)  # the head's last layer starts at zero
    with torch.no_grad():
        model.modulation.draw[2].weight.normal_(0, 0.5, generator=gen(7))
    moved = model(z, e, eta)
    assert not torch.allclose(moved, plain, atol=1e-4)
    assert torch.allclose(model(z, e, torch.zeros_like(eta)), plain, atol=1e-6)  # η = 0: the PAE mean
    assert torch.equal(model(z, e, None), plain)
    # a model without a head ignores η, so files and callers without one behave as before
    assert torch.equal(tiny_model(init_gain=0.3)(z, e, eta), tiny_model(init_gain=0.3)(z, e))
    with pytest.raises(PadaError, match="draw_hidden"):
        PadaConfig(draw_hidden=-1)


def test_draw_gain_scales_what_the_draw_head_adds():
    e = torch.nn.functional.normalize(torch.randn(3, 32, generator=gen(5)), dim=-1)
    eta = torch.randn(3, 32, generator=gen(6))
    one = tiny_model(init_gain=0.3, draw_hidden=16)
    four = tiny_model(init_gain=0.3, draw_hidden=16, draw_gain=4.0)
    four.load_state_dict(one.state_dict())
    with torch.no_grad():
        for m in (one, four):
            m.modulation.draw[2].weight.copy_(torch.randn(64, 16, generator=gen(7)))
    mod1, mod4 = one.modulation, four.modulation
    torch.testing.assert_close(mod4.delta(e, eta) - mod4.delta(e), 4 * (mod1.delta(e, eta) - mod1.delta(e)))
    torch.testing.assert_close(mod4.delta(e), mod1.delta(e))  # the PAE mean (no η): unchanged
    with pytest.raises(PadaError, match="draw_gain"):
        PadaConfig(draw_gain=0.0)


def test_draw_head_round_trips_through_a_file(tmp_path):
    from pada.aging.model import PadaModel

    model = tiny_model(init_gain=0.3, draw_hidden=8)
    with torch.no_grad():
        model.modulation.draw[2].weight.normal_(0, 0.5, generator=gen(1))
    back = PadaModel.load(model.save(tmp_path / "m.safetensors"))
    assert back.cfg.draw_hidden == 8
    z, e, eta = torch.randn(2, 64), torch.randn(2, 32), torch.randn(2, 32)
    assert torch.equal(back(z, e, eta), model(z, e, eta))


def _with_subspace(model, codes):
    model.modulation.set_subspace(codes)
    return model


def test_source_input_starts_silent_and_then_makes_the_shift_depend_on_the_face():
    codes = torch.randn(40, 64, generator=gen(10))
    z = codes[:4]
    e = torch.nn.functional.normalize(torch.randn(1, 32, generator=gen(11)), dim=-1).expand(4, -1)
    with_src = _with_subspace(tiny_model(init_gain=0.3, shift_subspace=8, source_input=True), codes)
    without = _with_subspace(tiny_model(init_gain=0.3, shift_subspace=8), codes)
    assert torch.equal(with_src(z, e), without(z, e))  # W_c starts at zero
    # the coordinates are standardised on the codes the subspace was fitted to
    c = with_src.modulation.source_coords(codes)
    assert torch.allclose(c.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(c.std(0), torch.ones(8), atol=1e-5)
    with torch.no_grad():
        with_src.modulation.source.weight.normal_(0, 1.0, generator=gen(12))
    dz = with_src.modulation.delta(e, None, z)
    assert (dz - dz[:1]).abs().amax(-1)[1:].min() > 1e-3  # one target, a different Δz per face
    plain = without.modulation.delta(e, None, z)
    assert torch.equal(plain, plain[:1].expand_as(plain))  # Eq. 6's Δz ignores the face
    with pytest.raises(PadaError, match="shift_subspace"):
        PadaConfig(source_input=True)
    with pytest.raises(ValueError, match="z_src"):
        with_src.modulation.delta(e)


def test_source_input_learns_a_shift_that_depends_on_the_sources_age():
    """The linear baseline's edit, (target − â(z))·w: a target-only Δz cannot follow the source's age, the
    source input can. Same steps, same data; the error with the source input ends far lower."""
    g = gen(13)
    basis = torch.linalg.qr(torch.randn(64, 8, generator=g))[0].T  # (8, 64) orthonormal rows
    codes = torch.randn(256, 8, generator=g) @ basis + 0.05 * torch.randn(256, 64, generator=g) + 1.0
    w = basis[0] * 0.5
    src_age = (codes - codes.mean(0)) @ basis[0]
    targets = torch.nn.functional.normalize(torch.randn(3, 32, generator=g), dim=-1)
    target_age = torch.tensor([-2.0, 0.0, 2.0])
    errors = {}
    for source_input in (False, True):
        model = _with_subspace(tiny_model(init_gain=0.3, shift_subspace=8, source_input=source_input), codes)
        opt = torch.optim.Adam(model.modulation.parameters(), lr=3e-3)
        for step in range(150):
            k = torch.randint(3, (256,), generator=gen(100 + step))
            want = (target_age[k] - src_age)[:, None] * w
            loss = (model.modulation(codes, targets[k]) - codes - want).square().sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        errors[source_input] = float(loss)
    assert errors[True] < 0.3 * errors[False], errors


def test_source_input_round_trips_through_a_file(tmp_path):
    from pada.aging.model import PadaModel

    model = _with_subspace(tiny_model(init_gain=0.3, shift_subspace=8, source_input=True),
                           torch.randn(40, 64, generator=gen(14)))
    with torch.no_grad():
        model.modulation.source.weight.normal_(0, 0.5, generator=gen(15))
    back = PadaModel.load(model.save(tmp_path / "m.safetensors"))
    assert back.cfg.source_input
    assert torch.equal(back.modulation.source_mean, model.modulation.source_mean)
    z, e = torch.randn(2, 64), torch.randn(2, 32)
    assert torch.equal(back(z, e), model(z, e))


def test_draw_head_separates_draws_that_e_age_alone_barely_tells_apart(frozen):
    """With text draws ε = 1e-3 apart the modulation sees almost the same input twice; the draw head gives
    L_div an O(1) handle on the draw, so the same number of steps separates the draws far more."""
    cfg = LossConfig(disabled=("L_age", "L_clip", "L_tKL", "L_id", "L_norm", "L_rec"), lambda_div=1.0,
                     div_target=0.5, train_text_eps=1e-3, t_max=300)
    final = {}
    for hidden in (0, 16):
        model = tiny_model(init_gain=0.05, draw_hidden=hidden)
        obj = PadaObjective(model, frozen, cfg)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(12):
            out = obj(pair_batch(), gen(step))
            opt.zero_grad()
            out["total"].backward()
            opt.step()
        final[hidden] = float(obj(pair_batch(), gen(99))["L_div"])
    assert final[16] < 0.5 * final[0]


def _spread_model(spread=0.1, m=6):
    codes = torch.randn(40, 64, generator=gen(11))
    w = torch.randn(64, generator=gen(12))
    model = tiny_model(init_gain=0.3, shift_subspace=m, shift_age_direction=True, draw_spread=spread)
    model.modulation.set_subspace(codes, w)
    readout = torch.randn(64, generator=gen(13))
    return model, w, readout


def test_draw_spread_moves_each_draw_across_age_by_about_its_share_of_the_code():
    model, w, readout = _spread_model(0.1)
    mod = model.modulation
    with pytest.raises(ValueError, match="not fitted"):
        mod.spread(torch.randn(1, 64), torch.randn(1, 32))
    assert mod.set_spread_basis(torch.stack([w, readout])) == 4  # 6 principal rows less the 2 age ones
    z = torch.randn(1, 64, generator=gen(14)).expand(2000, -1)
    eta = torch.randn(2000, 32, generator=gen(15))
    off = mod.spread(z, eta)
    size = off.norm(dim=-1) / z.norm(dim=-1)
    assert 0.085 < float(size.mean()) < 0.105  # about draw_spread · ‖z_src‖ on average ...
    assert float(size.std()) > 0.02  # ... with a spread of its own, not one fixed length
    pcs = mod.shift_basis[:6]
    assert torch.allclose(off - (off @ pcs.T) @ pcs, torch.zeros_like(off), atol=1e-5)  # in the subspace
    assert float((off @ w).abs().max()) < 1e-4 and float((off @ readout).abs().max()) < 1e-4  # across age
    assert torch.equal(mod.spread(z[:3], torch.zeros(3, 32)), torch.zeros(3, 64))  # the PAE mean: nothing
    torch.testing.assert_close(mod.spread(z[:5], eta[:5], 0.3), 3 * mod.spread(z[:5], eta[:5]))
    edit = torch.randn(5, 64, generator=gen(16))
    across = mod.spread(z[:5], eta[:5], shift=edit)
    assert float((across * edit).sum(-1).abs().max()) < 1e-4  # nothing along each draw's own edit
    torch.testing.assert_close(across, mod.spread(z[:5], eta[:5]) - (mod.spread(z[:5], eta[:5]) * edit).sum(
        -1, keepdim=True) * edit / edit.square().sum(-1, keepdim=True))
    assert torch.equal(mod.spread(z[:5], eta[:5], 0.0), torch.zeros(5, 64))
    # a fixed map: the same draw gives the same offset in a new process / model
    again, _, _ = _spread_model(0.1)
    again.modulation.set_spread_basis(torch.stack([w, readout]))
    assert torch.equal(again.modulation.spread(z[:5], eta[:5]), mod.spread(z[:5], eta[:5]))


def test_spread_cap_bounds_each_offset_by_its_own_edit_and_keeps_its_direction():
    from pada.aging.modulation import cap_spread, spread_cap_value

    off = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.0, 0.4], [0.0, 0.0, 0.0]])  # lengths 5, 0.5, 0
    shift = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])  # lengths 2, 2, 1
    capped = cap_spread(off, shift, 0.5)  # limit 1 for every row
    torch.testing.assert_close(capped[0], off[0] / 5)  # 5 → 1, same direction
    torch.testing.assert_close(capped[1:], off[1:])  # within the limit (and the zero row): unchanged
    torch.testing.assert_close(cap_spread(off, 4 * shift, 0.5)[0], off[0] * 4 / 5)  # grows with the edit
    no_edit = cap_spread(off, torch.zeros_like(shift), 0.5)
    assert torch.equal(no_edit, torch.zeros_like(off))  # no edit, no spread
    model, w, readout = _spread_model(0.1)
    mod = model.modulation
    mod.set_spread_basis(torch.stack([w, readout]))
    z = torch.randn(1, 64, generator=gen(14)).expand(6, -1)
    eta = torch.randn(6, 32, generator=gen(15))
    edit = torch.randn(6, 64, generator=gen(16)) * torch.tensor([0.01, 0.02, 0.05, 0.5, 1.0, 2.0])[:, None]
    free, bound = mod.spread(z, eta, shift=edit), mod.spread(z, eta, shift=edit, cap=0.5)
    assert bool((bound.norm(dim=-1) <= 0.5 * edit.norm(dim=-1) + 1e-6).all())
    short = free.norm(dim=-1) > 0.5 * edit.norm(dim=-1)
    assert bool(short[:3].all()) and not bool(short[-1])  # short edits were capped, the longest was not
    torch.testing.assert_close(bound[~short], free[~short])
    cos = (bound * free).sum(-1) / (bound.norm(dim=-1) * free.norm(dim=-1))
    torch.testing.assert_close(cos, torch.ones(6))
    torch.testing.assert_close(mod.spread(z, eta, shift=edit, cap=0.0), free)  # 0 = no cap
    # no edit given: nothing to cap by
    torch.testing.assert_close(mod.spread(z, eta, cap=0.5), mod.spread(z, eta))
    capped_model, _, _ = _spread_model(0.1)
    capped_model.cfg.spread_cap = 0.5
    capped_model.modulation.set_spread_basis(torch.stack([w, readout]))
    # the model's default
    torch.testing.assert_close(capped_model.modulation.spread(z, eta, shift=edit), bound)
    assert spread_cap_value(0.25) == 0.25
    for bad in (-0.1, 11, float("nan"), "x", None):
        with pytest.raises(PadaError, match="spread cap"):
            spread_cap_value(bad)
    with pytest.raises(PadaError, match="spread_cap must be in"):
        PadaConfig(spread_cap=-1.0)


def test_the_training_task_fits_the_spread_basis_across_the_data_age_direction(frozen):
    from pada.aging.train import PadaTask, PadaTaskOptions

    task = PadaTask(PadaTaskOptions(sample_faces=0, pada={"shift_subspace": 4, "spread_basis": True}),
                    diffae=frozen.diffae, vl=frozen.vl, age_critic=frozen.age_critic,
                    id_critic=frozen.id_critic, dataset=PairDataset(12))
    task.build()
    mod = task.model.modulation
    basis, pcs = mod.spread_basis, mod.shift_basis[:4]
    rank = float(basis.square().sum())
    assert 1.5 < rank < 3.5  # the 4 principal directions less the age ones (direction and read-out)
    torch.testing.assert_close((basis @ pcs.T) @ pcs, basis, atol=1e-4, rtol=0)  # inside the subspace
    assert task.model.cfg.draw_spread == 0  # carried, off by default
    bad = PadaTask(PadaTaskOptions(sample_faces=0, pada={"shift_subspace": 4, "spread_basis": True},
                                   loss={"train_spread": True}),
                   diffae=frozen.diffae, vl=frozen.vl, age_critic=frozen.age_critic,
                   id_critic=frozen.id_critic, dataset=PairDataset(12))
    with pytest.raises(PadaError, match="train_spread=true needs --pada-set draw_spread"):
        bad.build()


def test_draw_spread_is_validated_and_round_trips_through_a_file(tmp_path):
    from pada.aging.model import PadaModel

    with pytest.raises(PadaError, match="draw_spread must be in"):
        PadaConfig(draw_spread=1.5)
    for bad in ({"draw_spread": 0.1}, {"spread_basis": True}):
        with pytest.raises(PadaError, match="shift_subspace >= 3"):
            PadaConfig(**bad)
    plain = tiny_model(init_gain=0.3)
    assert not hasattr(plain.modulation, "spread_basis")  # files without a spread load as before
    with pytest.raises(ValueError, match="no draw-spread basis"):
        plain.modulation.spread(torch.randn(1, 64), torch.randn(1, 32), 0.1)
    with pytest.raises(ValueError, match="draw_spread > 0 or spread_basis"):
        plain.modulation.set_spread_basis(torch.randn(1, 64))
    # a basis without a default spread: off unless a request asks
    carrier = tiny_model(init_gain=0.3, shift_subspace=6, spread_basis=True)
    assert carrier.cfg.draw_spread == 0 and carrier.modulation.spread_basis.shape == (6, 64)
    model, w, readout = _spread_model(0.2)
    model.modulation.set_spread_basis(torch.stack([w, readout]))
    back = PadaModel.load(model.save(tmp_path / "m.safetensors"))
    assert back.cfg.draw_spread == 0.2
    z, eta = torch.randn(3, 64), torch.randn(3, 32)
    assert torch.equal(back.modulation.spread(z, eta), model.modulation.spread(z, eta))


def test_train_spread_lets_the_critic_losses_see_the_spread_draws_but_not_l_dir(frozen):
    model, w, readout = _spread_model(0.3, m=6)
    model.modulation.set_spread_basis(torch.stack([w, readout]))
    batch = pair_batch(6)
    got = {}
    for train_spread in (False, True):
        cfg = LossConfig(lambda_dir=1.0, lambda_div=1.0, div_target=5.0, train_spread=train_spread)
        obj = PadaObjective(model, frozen, cfg)
        obj.set_age_direction(w * 0.01)
        got[train_spread] = obj(batch, gen(1))
    seen, plain = got[True], got[False]
    assert torch.equal(seen["L_dir"], plain["L_dir"]) and torch.equal(seen["L_norm"], plain["L_norm"])
    assert not torch.equal(seen["L_id"], plain["L_id"])  # the identity critic scores the spread draws
    assert float(seen["L_div"]) < float(plain["L_div"])  # two spread draws lie further apart
    seen["total"].backward()
    assert model.modulation.gamma[0].weight.grad is not None
    off = tiny_model(init_gain=0.3, shift_subspace=6, spread_basis=True)
    with pytest.raises(ValueError, match="draw_spread > 0"):
        PadaObjective(off, frozen, LossConfig(train_spread=True))(batch, gen(1))


def _term_alone_trains_down(frozen, name: str, **weights):
    """Off by default; zero without a shift; the only term of the total when the critics' terms are off;
    ten Adam steps on it alone lower it on the same draws."""
    cfg = LossConfig(disabled=("L_age", "L_clip", "L_tKL", "L_id", "L_norm", "L_rec"), t_max=300, **weights)
    assert name not in PadaObjective(tiny_model(), frozen, LossConfig(t_max=300))(pair_batch(), gen())
    ident = PadaObjective(tiny_model(init_gain=0.0), frozen, cfg)(pair_batch(), gen())
    assert float(ident[name]) < 1e-12  # no shift: x̂0_tar = x̂0_src
    model = tiny_model(init_gain=0.5)
    obj = PadaObjective(model, frozen, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(obj(pair_batch(), gen(0))[name])
    for step in range(10):
        out = obj(pair_batch(), gen(step))
        assert torch.allclose(out["total"], cfg.weight(name) * out[name])
        opt.zero_grad()
        out["total"].backward()
        opt.step()
    assert 0.0 < first and float(obj(pair_batch(), gen(0))[name]) < first  # the same draws, after


def test_tone_term_is_zero_within_its_margin_and_pulls_the_skin_shading_back(frozen):
    from pada.aging.losses import tone_loss

    x = torch.zeros(2, 3, 32, 32)
    lighter = x.clone()
    lighter[1, :, 12:28, 10:22] += 0.4  # row 1: its skin 0.2 lighter on the 0-1 scale
    per = tone_loss(x, lighter, margin=0.05)
    assert per.shape == (2,) and float(per[0]) == 0.0 and float(per[1]) > 0.0
    assert float(tone_loss(x, lighter, margin=0.5)[1]) == 0.0  # within a wide margin: free
    _term_alone_trains_down(frozen, "L_tone", lambda_tone=100.0, tone_margin=0.0)
    with pytest.raises(PadaError, match="lambda_tone"):
        LossConfig(lambda_tone=-1.0)


def test_blotch_term_is_free_for_an_even_change_and_pulls_a_blob_back(frozen):
    from pada.aging.losses import blotch_loss
    from pada.evaluation.scores import blotch

    x = torch.zeros(3, 3, 32, 32)
    even, blob = x.clone(), x.clone()
    even[1] += 0.4  # row 1: the whole face 0.2 lighter: even, free
    blob[2, :, 12:20, 10:22] += 0.6  # row 2: a pale blob on the forehead
    changed = torch.cat([x[:1], even[1:2], blob[2:3]])
    per = blotch_loss(x, changed, margin=0.02)
    assert per.shape == (3,) and float(per[0]) == 0.0 and float(per[1]) < 1e-10 and float(per[2]) > 1e-4
    # the loss measures what the evaluation's blotch score measures
    assert float(per[2]) == pytest.approx((float(blotch(changed[2:], x[:1])[0]) - 0.02) ** 2, rel=1e-3)
    assert float(blotch_loss(x, changed, margin=0.9)[2]) == 0.0  # within a wide margin: free
    _term_alone_trains_down(frozen, "L_blotch", lambda_blotch=100.0, blotch_margin=0.0)
    with pytest.raises(PadaError, match="lambda_blotch"):
        LossConfig(lambda_blotch=-1.0)
