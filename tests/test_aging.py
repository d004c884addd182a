"""PADA method: PAE, adaptive modulation, the six losses, the objective and training (tiny random models)."""

from __future__ import annotations

import math

import pytest
import torch

from pada.aging.config import LOSS_NAMES, LossConfig, PadaConfig
from pada.aging.losses import (
    age_triplet_loss,
    clip_direction_loss,
    identity_loss,
    norm_loss,
    rec_loss,
    tkl_loss,
)
from pada.aging.model import PadaModel
from pada.aging.modulation import compute_latent_stats
from pada.aging.objective import Frozen, PadaObjective
from pada.aging.pae import AgeEncoder, l2n
from pada.errors import CheckpointError, PadaError
from test_aging_helpers import PairDataset, faces, frozen_set, one_thread, pair_batch, tiny_diffae, tiny_model

# the tests read loss values with float(); torch warns once that those tensors require grad
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------ PAE
def test_age_encoder_shapes_sigma_init_and_reparameterisation():
    for param in ("softplus", "exp"):
        enc = AgeEncoder(PadaConfig(e_dim=16, z_dim=8, enc_hidden=32, sigma_param=param, sigma_init=0.2))
        e_img = l2n(torch.randn(5, 16, generator=gen()))
        mu, sigma = enc(e_img)
        assert mu.shape == sigma.shape == (5, 16) and mu.dtype == torch.float32
        assert bool((sigma > 0).all())
        assert abs(float(sigma.detach().mean()) - 0.2) < 0.05  # head bias sets the initial σ
        s1, s2 = enc.sample(mu, sigma, gen(1)), enc.sample(mu, sigma, gen(1))
        assert torch.equal(s1, s2)  # same generator state -> same sample
        assert not torch.allclose(s1, enc.sample(mu, sigma, gen(2)))
        assert torch.allclose(s1.norm(dim=-1), torch.ones(5), atol=1e-5)  # back on the unit sphere
        eta = torch.randn(5, 16, generator=gen(3))
        assert torch.allclose(enc.sample(mu, sigma, noise=eta), l2n(mu + sigma * eta))


def test_text_driven_pae_stays_close_to_the_text():
    cfg = PadaConfig(e_dim=512, z_dim=8, enc_hidden=16)
    enc = AgeEncoder(cfg)
    e_txt = l2n(torch.randn(3, 512, generator=gen()))
    s = enc.sample_text(e_txt, gen(1))
    cos = (s * e_txt).sum(-1)
    # ε = 1e-3, d = 512: ‖εη‖ ≈ 0.023, so the angle to e_txt is ≈ 0.023 rad (PADA_NOTES)
    assert bool((cos > math.cos(0.05)).all()) and bool((cos < 1 - 1e-6).all())
    wide = enc.sample_text(e_txt, gen(1), eps=0.1)
    assert float((wide * e_txt).sum(-1).mean()) < float(cos.mean())  # larger ε, more spread


def test_posterior_image_text_and_both():
    enc = AgeEncoder(PadaConfig(e_dim=16, z_dim=8, enc_hidden=16))
    e_img, e_txt = l2n(torch.randn(1, 16, generator=gen(0))), l2n(torch.randn(1, 16, generator=gen(1)))
    mu_t, s_t = enc.posterior(None, e_txt)
    assert torch.allclose(mu_t, e_txt) and torch.allclose(s_t, torch.full_like(s_t, 1e-3))
    mu_i, s_i = enc.posterior(e_img)
    mu_b, s_b = enc.posterior(e_img, e_txt, text_weight=0.5)
    assert torch.equal(s_b, s_i)
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b).detach())  # noqa: E731
    assert cos(mu_b, e_txt) > cos(mu_i, e_txt)  # pulled toward the text
    assert torch.allclose(enc.posterior(e_img, e_txt, text_weight=0.0)[0], mu_i, atol=1e-6)
    with pytest.raises(ValueError):
        enc.posterior(None, None)


# -------------------------------------------------------------------------------------- modulation
@torch.no_grad()
def test_modulation_identity_at_init_and_near_identity():
    z = torch.randn(4, 64, generator=gen()) * 3 + 1
    e = l2n(torch.randn(4, 32, generator=gen(1)))
    exact = tiny_model(init_gain=0.0)
    assert torch.allclose(exact(z, e), z, atol=1e-5)
    near = tiny_model(init_gain=1e-3)
    diff = (near(z, e) - z).norm() / z.norm()
    assert 0 < float(diff) < 1e-2
    trained_like = tiny_model(init_gain=1.0)
    assert float((trained_like(z, e) - z).norm() / z.norm()) > float(diff)


def test_modulation_dataset_statistics():
    model = tiny_model(init_gain=0.0, stats="dataset")
    z = torch.randn(4, 64, generator=gen())
    with pytest.raises(RuntimeError):
        model(z, l2n(torch.randn(4, 32)))
    data = [torch.randn(5, 64, generator=gen(i)) * 2 + 3 for i in range(4)]
    mean, std = compute_latent_stats(lambda x: x, data)
    allz = torch.cat(data)
    assert torch.allclose(mean, allz.mean(0), atol=1e-5) and torch.allclose(std, allz.std(0), atol=1e-4)
    model.modulation.set_statistics(mean, std)
    assert torch.allclose(model(z, l2n(torch.randn(4, 32))), z, atol=1e-5)  # still identity at init


def test_model_save_load_roundtrip(tmp_path):
    model = tiny_model(init_gain=0.5, stats="dataset", diffae="some-diffae", vl="tiny")
    model.modulation.set_statistics(torch.randn(64), torch.rand(64) + 0.5)
    path = model.save(tmp_path / "m.safetensors", extra_metadata={"note": "x"})
    back = PadaModel.load(path)
    assert back.cfg == model.cfg and PadaModel.read_config(path).diffae == "some-diffae"
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    z, e = torch.randn(2, 64), l2n(torch.randn(2, 32))
    assert torch.allclose(model(z, e), back(z, e))
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        PadaModel.load(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="no such"):
        PadaModel.load(tmp_path / "missing.safetensors")


def test_config_rejects_unknown_and_bad_values():
    with pytest.raises(PadaError):
        PadaConfig.from_dict({"e_dim": 4, "bogus": 1})
    with pytest.raises(PadaError):
        PadaConfig(stats="global")
    with pytest.raises(PadaError, match="L_foo"):
        LossConfig(disabled=("L_foo",))


# ------------------------------------------------------------------------------------------ losses
def test_tkl_exact_matches_gaussian_kl_and_stable_variant_prefers_the_text():
    mu, sigma = torch.randn(3, 8, generator=gen()), torch.rand(3, 8, generator=gen(1)) + 0.2
    e_txt = l2n(torch.randn(3, 8, generator=gen(2)))
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma),
                                            torch.distributions.Normal(e_txt, torch.ones_like(e_txt))).sum(-1)
    assert torch.allclose(tkl_loss(mu, sigma, e_txt, variant="exact"), ref, atol=1e-5)
    e_img = l2n(torch.randn(3, 8, generator=gen(3)))
    one = torch.ones(3, 8)
    at_text = tkl_loss(e_txt, one, e_txt, e_img)
    away = tkl_loss(-e_txt, one, e_txt, e_img)
    assert bool((at_text < away).all())
    # σ = 1 zeroes the σ terms: the stable value is −cos + distance
    assert torch.allclose(tkl_loss(e_img, one, e_txt, e_img), -(e_img * e_txt).sum(-1), atol=1e-5)
    assert bool((tkl_loss(e_img, one * 0.1, e_txt, e_img) > tkl_loss(e_img, one, e_txt, e_img)).all())


def test_triplet_clip_id_norm_rec_signs():
    f_src, f_ref = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert float(age_triplet_loss(f_src, f_ref, f_ref, 0.15)) == 0.0      # target looks like the reference
    assert float(age_triplet_loss(f_src, f_ref, f_src, 0.15)) == pytest.approx(1.15)  # looks like the source
    i_src, t_src = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    t_tar = torch.tensor([[1.0, 1.0]]) / 2**0.5
    aligned_tar = i_src + (t_tar - t_src)
    assert float(clip_direction_loss(aligned_tar, i_src, t_tar, t_src)) == pytest.approx(0.0, abs=1e-6)
    assert float(clip_direction_loss(i_src - (t_tar - t_src), i_src, t_tar, t_src)) == pytest.approx(2.0)
    r = l2n(torch.randn(2, 5, generator=gen()))
    assert torch.allclose(identity_loss(r, r), -torch.ones(2))
    assert torch.allclose(identity_loss(r, -r), torch.ones(2))
    z = torch.full((2, 4), 2.0)
    assert torch.allclose(norm_loss(z, "sum"), torch.full((2,), 16.0))
    assert torch.allclose(norm_loss(z, "mean"), torch.full((2,), 4.0))
    x = torch.zeros(2, 3, 2, 2)
    assert torch.equal(rec_loss(x, x), torch.zeros(2)) and float(rec_loss(x, x + 1).mean()) == 1.0


# --------------------------------------------------------------------------------------- objective
@pytest.fixture(scope="module")
def frozen():
    d, v, a, i = frozen_set()
    return Frozen(d, v, a, i)


def _grad_norms(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_objective_terms_total_and_gradient_flow(frozen):
    model = tiny_model()
    obj = PadaObjective(model, frozen, LossConfig(t_max=300))
    out = obj(pair_batch(), gen())
    assert set(out) == set(LOSS_NAMES) | {"total"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    lc = obj.cfg
    expect = sum(lc.weight(k) * out[k] for k in LOSS_NAMES)
    assert torch.allclose(out["total"], expect)
    out["total"].backward()
    assert _grad_norms(model.age_encoder) > 0 and _grad_norms(model.modulation) > 0
    for net in (frozen.diffae.unet, frozen.vl, frozen.age_critic, frozen.id_critic):
        assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    # same generator seed -> same losses (all randomness from the generator)
    again = obj(pair_batch(), gen())
    assert all(torch.allclose(again[k], out[k]) for k in out)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_each_loss_alone_trains_the_right_modules(frozen, name):
    model = tiny_model(init_gain=0.05)
    only = LossConfig(disabled=tuple(n for n in LOSS_NAMES if n != name), t_max=300)
    out = PadaObjective(model, frozen, only)(pair_batch(), gen(1))
    assert set(out) == {name, "total"}
    out["total"].backward()
    # L_tKL acts on μ, σ only; every other term reaches both E_age (image rows) and the modulation.
    assert _grad_norms(model.age_encoder) > 0
    if name == "L_tKL":
        assert _grad_norms(model.modulation) == 0
    else:
        assert _grad_norms(model.modulation) > 0


def test_rec_loss_only_on_reference_equals_source_rows(frozen):
    batch = pair_batch()
    batch["ref_is_source"] = torch.zeros(6, dtype=torch.bool)
    out = PadaObjective(tiny_model(init_gain=0.5), frozen, LossConfig())(batch, gen())
    assert float(out["L_rec"]) == 0.0
    batch["ref_is_source"][1] = True
    out = PadaObjective(tiny_model(init_gain=0.5), frozen, LossConfig())(batch, gen())
    assert float(out["L_rec"]) > 0.0


def test_objective_needs_critics_of_enabled_losses(frozen):
    with pytest.raises(ValueError, match="age critic"):
        PadaObjective(tiny_model(), Frozen(frozen.diffae, frozen.vl, None, frozen.id_critic))
    PadaObjective(tiny_model(), Frozen(frozen.diffae, frozen.vl, None, None),
                  LossConfig(disabled=("L_age", "L_id")))


def test_a_few_adam_steps_lower_the_total_loss(frozen):
    model = tiny_model(init_gain=0.05)
    obj = PadaObjective(model, frozen, LossConfig(t_max=300))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = pair_batch()
    losses = []
    for _ in range(12):
        out = obj(batch, gen(7))  # same noise / timesteps each step: a fixed objective
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        losses.append(float(out["total"]))
    assert losses[-1] < losses[0] - 0.05 * abs(losses[0]), losses


# ----------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_engine_run_exports_a_loadable_model(tmp_path, frozen):
    from pada.aging.train import PadaTask, PadaTaskOptions
    from pada.training.engine import TrainConfig, Trainer

    opts = PadaTaskOptions(sample_faces=1, sample_steps=2, loss={"t_max": 300})
    task = PadaTask(opts, diffae=frozen.diffae, vl=frozen.vl, age_critic=frozen.age_critic,
                    id_critic=frozen.id_critic, dataset=PairDataset(8))
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), batch_size=4, max_steps=3, lr=1e-3, ema_decay=0.0,
                      log_every=1, ckpt_every=0, progress=False, tensorboard=False, cpu=True)
    result = Trainer(task, cfg).fit()
    assert result.step == 3 and len(result.history) == 3
    assert {"loss/total", "loss/L_age", "loss/L_rec"} <= set(result.history[0])
    [path] = result.exported
    model = PadaModel.load(path)
    assert model.cfg.z_dim == 64 and model.cfg.e_dim == 32
    for k, v in model.state_dict().items():
        assert torch.equal(v, result.modules["pada"].state_dict()[k].cpu()), k
    assert list((tmp_path / "run" / "samples").glob("*.png"))
    # the last training checkpoint exports the same model (pada train pada --export-from)
    from pada.aging.train import main as train_main

    [ckpt] = sorted((tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert train_main(["--export-from", str(ckpt), "--out", str(tmp_path / "again.safetensors")]) == 0
    again = PadaModel.load(tmp_path / "again.safetensors")
    assert again.cfg == model.cfg
    for k, v in again.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert train_main(["--export-from", str(path), "--out", str(tmp_path / "x.safetensors")]) == 1


def test_train_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    from pada.aging.train import main

    rc = main(["--data", str(tmp_path / "nope"), "--diffae", "x", "--out", str(tmp_path / "o"),
               "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "nope" in err[0] and err[0].startswith("error:")


def test_train_cli_options(tmp_path):
    from pada.aging.train import build_parser, options_from_args

    args = build_parser().parse_args(["--data", "d", "--diffae", "x", "--without", "L_id",
                                      "--without", "L_rec", "--pada-set", "eps=0.01",
                                      "--loss-set", "margin=0.2", "--stats", "dataset"])
    o = options_from_args(args)
    assert o.loss == {"disabled": ["L_id", "L_rec"], "margin": 0.2}
    assert o.pada == {"eps": 0.01, "stats": "dataset"}
    assert LossConfig(**o.loss).enabled("L_age") and not LossConfig(**o.loss).enabled("L_id")


def test_tiny_diffae_depends_on_z():
    d = tiny_diffae()
    x = faces(2)
    z = d.encode(x)
    t = torch.tensor([100, 100])
    assert not torch.allclose(d.unet(x, t, z), d.unet(x, t, z + 1.0))


def test_objective_under_bf16_autocast(frozen):
    model = tiny_model(init_gain=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = PadaObjective(model, frozen, LossConfig(t_max=300))(pair_batch(4), gen())
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in out.values())
    out["total"].backward()
    assert _grad_norms(model.modulation) > 0


@pytest.mark.slow
def test_engine_resume_is_exact(tmp_path, frozen):
    from pada.aging.train import PadaTask, PadaTaskOptions
    from pada.training.engine import TrainConfig, Trainer

    def run(out, steps, resume=""):
        task = PadaTask(PadaTaskOptions(sample_faces=0, loss={"t_max": 300}), diffae=frozen.diffae,
                        vl=frozen.vl, age_critic=frozen.age_critic, id_critic=frozen.id_critic,
                        dataset=PairDataset(8))
        cfg = TrainConfig(out_dir=str(out), batch_size=4, max_steps=steps, lr=1e-3, ema_decay=0.0,
                          log_every=1, ckpt_every=0, progress=False, tensorboard=False, cpu=True,
                          resume=resume, export=False)
        return Trainer(task, cfg).fit()

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4, resume="auto")
    for k, v in straight.modules["pada"].state_dict().items():
        assert torch.equal(v, resumed.modules["pada"].state_dict()[k]), k
