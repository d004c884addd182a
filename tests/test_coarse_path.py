"""The coarse image path of a pada-only ``coarse_size`` DiffAE network (tiny random weights)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from pada.diffae import DiffAE
from pada.diffae.train import _add_coarse_path
from pada.errors import PadaError
from pada.networks.checkpoint import META_KEY, load_diffae, save_diffae
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")


def _net(seed: int = 0, **changes) -> DiffAEUNet:
    torch.manual_seed(seed)
    unet = DiffAEUNet(load_preset("tiny32").replace(**changes))
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))  # no zero-initialised layer left: every path is live
    return unet.eval()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_config_checks_the_coarse_fields():
    cfg = load_preset("tiny32")
    for bad in (3, 12, 64, 2):
        with pytest.raises(PadaError, match="coarse_size"):
            cfg.replace(coarse_size=bad)
    with pytest.raises(PadaError, match="style_modulation=False needs a coarse path"):
        cfg.replace(style_modulation=False)
    assert cfg.replace(coarse_size=8).coarse_size == 8


def test_coarse_network_shapes_and_extra_input_channels():
    unet = _net(coarse_size=16)
    assert unet.input_blocks[0][0].weight.shape[1] == 6
    z = torch.randn(2, 64)
    assert unet.coarse_image(z).shape == (2, 3, 16, 16)
    eps = unet(_images(2), torch.tensor([10, 900]), z)
    assert eps.shape == (2, 3, 32, 32) and torch.isfinite(eps).all()
    with pytest.raises(PadaError, match="no coarse image path"):
        _net().coarse_image(z)


def test_without_style_modulation_z_acts_only_through_the_coarse_image():
    unet = _net(coarse_size=8, style_modulation=False)
    x, t = _images(2), torch.tensor([500, 500])
    z1, z2 = torch.randn(2, 64), torch.randn(2, 64)
    c = unet.coarse_image(z1)
    with torch.no_grad():
        same = unet(x, t, z2, coarse=c)
        ref = unet(x, t, z1)
        other = unet(x, t, z2)
    assert torch.allclose(same, ref, atol=1e-6)  # another z with the same coarse image: same output
    assert not torch.allclose(other, ref, atol=1e-4)  # another z: another coarse image, another output
    # with style modulation on, z also acts directly
    unet2 = _net(coarse_size=8)
    with torch.no_grad():
        a = unet2(x, t, z1, coarse=unet2.coarse_image(z1))
        b = unet2(x, t, z2, coarse=unet2.coarse_image(z1))
    assert not torch.allclose(a, b, atol=1e-4)


def test_warm_start_from_a_network_without_coarse_path_computes_the_same_function():
    src = _net(seed=1)
    dst = _net(seed=2, coarse_size=8)
    dst.load_state_dict(_add_coarse_path(dst, src.state_dict()))
    x, t, z = _images(2), torch.tensor([3, 700]), torch.randn(2, 64)
    with torch.no_grad():
        assert torch.allclose(dst(x, t, z), src(x, t, z), atol=1e-5)


def test_loss_terms_keep_the_coarse_path_an_autoencoder():
    unet = _net(coarse_size=8).train()
    model = DiffAE(unet)
    x = _images(4)
    terms = model.loss_terms(x, torch.Generator().manual_seed(0), z_noise=0.1)
    assert set(terms) == {"coarse_mse", "eps_mse", "total"}
    assert torch.allclose(terms["total"], terms["coarse_mse"] + terms["eps_mse"])
    # the diffusion loss does not reach the coarse decoder (its input to the UNet is detached)
    model.loss_terms(x, torch.Generator().manual_seed(0), coarse_weight=0.0)["total"].backward()
    assert all(p.grad is None or not p.grad.any() for p in unet.coarse.parameters())
    assert unet.input_blocks[0][0].weight.grad.abs().sum() > 0
    unet.zero_grad(set_to_none=True)
    # diffusion_weight=0: the autoencoder alone (no UNet pass)
    only = model.loss_terms(x, torch.Generator().manual_seed(0), diffusion_weight=0.0)
    assert set(only) == {"coarse_mse", "total"}
    only["total"].backward()
    assert unet.input_blocks[0][0].weight.grad is None
    assert unet.coarse.fc.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.any() for p in unet.encoder.parameters())


def test_the_coarse_autoencoder_learns():
    torch.manual_seed(0)
    unet = DiffAEUNet(load_preset("tiny32").replace(coarse_size=8)).train()
    model = DiffAE(unet)
    x = _images(8, seed=3)
    opt = torch.optim.Adam(unet.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        out = model.loss_terms(x, torch.Generator().manual_seed(step), diffusion_weight=0.0)
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        losses.append(float(out["coarse_mse"]))
    assert losses[-1] < 0.5 * losses[0], losses


def test_coarse_network_save_load_round_trip(tmp_path):
    unet = _net(coarse_size=16, style_modulation=False, prediction="v")
    path = save_diffae(unet, tmp_path / "c.safetensors")
    back = load_diffae(path)
    assert back.config.coarse_size == 16 and back.config.style_modulation is False
    x, t, z = _images(1), torch.tensor([400]), torch.randn(1, 64)
    with torch.no_grad():
        assert torch.allclose(back(x, t, z), unet(x, t, z), atol=1e-5)


# ---- the eigenface code (coarse_pca) -------------------------------------------------------------------

def _faces(n: int, seed: int = 0) -> torch.Tensor:
    """Images that live near a low-dimensional subspace (what a PCA code must find)."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(6, 3, 32, 32, generator=g)
    basis = torch.nn.functional.avg_pool2d(basis, 5, 1, 2)  # smooth: survives the area downsampling
    w = torch.randn(n, 6, generator=g)
    return (torch.einsum("nk,kchw->nchw", w, basis) * 0.3).clamp(-1, 1)


def test_config_checks_coarse_pca():
    cfg = load_preset("tiny32")
    with pytest.raises(PadaError, match="coarse_pca needs a coarse path"):
        cfg.replace(coarse_pca=8)
    with pytest.raises(PadaError, match="coarse_pca"):
        cfg.replace(coarse_size=8, coarse_pca=64)  # all of z
    assert cfg.replace(coarse_size=8, coarse_pca=8).coarse_pca == 8


def test_eigenface_code_is_the_last_entries_of_z_and_its_fit_reconstructs_the_coarse_image():
    unet = _net(coarse_size=8, coarse_pca=8, style_modulation=False)
    assert unet.encoder.out[3].weight.shape[0] == 56  # the learned encoder gives the other 56 entries
    x = _faces(64)
    report = unet.coarse.pca.fit(x, code_rms=0.3)
    assert report["variance_kept"] > 0.99 and report["psnr"] > 40
    z = unet.encode(x)
    assert z.shape == (64, 64)
    code = unet.coarse.pca.encode(x)
    assert torch.equal(z[:, -8:], code)
    assert abs(float(code.square().mean().sqrt()) - 0.3) < 1e-3
    small = torch.nn.functional.adaptive_avg_pool2d(x, 8)
    assert (unet.coarse.pca.decode(code) - small).abs().max() < 1e-3
    # a fresh coarse decoder draws exactly the PCA reconstruction (its learned path starts at zero)
    fresh = DiffAEUNet(load_preset("tiny32").replace(coarse_size=8, coarse_pca=8)).eval()
    fresh.coarse.pca.load_state_dict(unet.coarse.pca.state_dict())
    with torch.no_grad():
        assert (fresh.coarse_image(fresh.encode(x)) - small).abs().max() < 1e-3
    # the fitted buffers travel with the weights
    back = DiffAEUNet(unet.config)
    back.load_state_dict(unet.state_dict())
    assert torch.equal(back.coarse.pca.basis, unet.coarse.pca.basis)


def test_warm_start_into_an_eigenface_network_keeps_the_learned_code_and_fits_the_pca(tmp_path):
    from pada.diffae.train import main

    src = _net(seed=1)
    dst = _net(seed=2, coarse_size=8, coarse_pca=8)
    state = _add_coarse_path(dst, src.state_dict())
    dst.load_state_dict(state)
    x = _images(2)
    with torch.no_grad():
        assert torch.allclose(dst.encode(x)[:, :56], src.encode(x)[:, :56], atol=1e-5)
        t, z = torch.tensor([3, 700]), torch.randn(2, 64)
        assert torch.allclose(dst(x, t, z), src(x, t, z), atol=1e-5)  # the coarse input starts at zero weight
    # the training task fits the eigenface code once, and not again when it warm-starts from a fitted network
    a = tmp_path / "a"
    assert main(["--data", "synthetic:blobs:32", "--preset", "tiny32", "--model-set", "coarse_size=8",
                 "--model-set", "coarse_pca=8", "--out", str(a), "--steps", "1", "--ckpt-every", "1",
                 "--sample-every", "0", "--batch-size", "4", "--no-progress"]) == 0
    net_a = load_diffae(a / "diffae_ema.safetensors")
    assert net_a.coarse.pca.mean.abs().sum() > 0
    with safe_open(str(a / "diffae_ema.safetensors"), "pt") as f:  # the fit's report travels with the weights
        assert json.loads(f.metadata()[META_KEY])["metadata"]["pca_fit"]["psnr"] > 0
    b = tmp_path / "b"
    assert main(["--data", "synthetic:blobs:16:7", "--preset", "tiny32", "--model-set", "coarse_size=8",
                 "--model-set", "coarse_pca=8", "--out", str(b), "--steps", "1", "--ckpt-every", "0",
                 "--sample-every", "0", "--batch-size", "4", "--no-progress",
                 "--init-from", str(a / "diffae_ema.safetensors")]) == 0
    net_b = load_diffae(b / "diffae_ema.safetensors")
    assert torch.equal(net_b.coarse.pca.basis, net_a.coarse.pca.basis)


def test_resume_does_not_compare_the_eigenface_fit_report(tmp_path, monkeypatch):
    """The fit's PSNR is a measurement (its last digits depend on the thread count), not a setting."""
    from pada.diffae import train as diffae_task

    args = ["--data", "synthetic:blobs:32", "--preset", "tiny32", "--model-set", "coarse_size=8",
            "--model-set", "coarse_pca=8", "--out", str(tmp_path), "--ckpt-every", "1",
            "--sample-every", "0", "--batch-size", "4", "--no-progress", "--resume"]
    assert diffae_task.main(args + ["--steps", "1"]) == 0
    fit = diffae_task.fit_eigenface_code

    def fit_on_other_threads(unet, data):
        report = fit(unet, data)
        return {k: v + 1e-6 for k, v in report.items()}

    monkeypatch.setattr(diffae_task, "fit_eigenface_code", fit_on_other_threads)
    assert diffae_task.main(args + ["--steps", "2"]) == 0
    assert (tmp_path / "checkpoints" / "step_00000002.pt").exists()


# ---- the residual parameterisation (coarse_residual) -----------------------------------------------------

def test_config_checks_coarse_residual():
    with pytest.raises(PadaError, match="coarse_residual needs a coarse path"):
        load_preset("tiny32").replace(coarse_residual=True)


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_coarse_residual_network_reads_the_noisy_residual_and_shifts_its_v_output(prediction):
    from pada import diffusion as D

    unet = _net(coarse_size=8, style_modulation=False, prediction=prediction, coarse_residual=True)
    model = DiffAE(unet)
    x, t, z = _images(2), torch.tensor([50, 900]), torch.randn(2, 64)
    c_small = unet.coarse_image(z)
    c = torch.nn.functional.interpolate(c_small, size=32, mode="bilinear", align_corners=False)
    a, s = D.alpha_sigma(model.schedule, t, x)
    with torch.no_grad():
        raw = unet(x - a * c, t, z)  # what the network itself sees: the noisy residual x0 - c
        want = raw - s * c if prediction == "v" else raw
        if prediction == "v":
            want = D.eps_from_v(model.schedule, x, t, want)
        assert torch.allclose(model.eps(x, t, z), want, atol=1e-5)
        # the sampling loops take the same path (the coarse image computed once per loop)
        assert torch.allclose(model._model_fn(z, bf16=False)(x, t), want, atol=1e-5)


def test_coarse_residual_network_that_outputs_zero_implies_the_coarse_image_at_large_t():
    from pada import diffusion as D

    unet = _net(coarse_size=8, style_modulation=False, prediction="v", coarse_residual=True)
    with torch.no_grad():
        unet.out[2].weight.zero_()
        unet.out[2].bias.zero_()
    model = DiffAE(unet)
    z = torch.randn(2, 64)
    c = torch.nn.functional.interpolate(unet.coarse_image(z), size=32, mode="bilinear", align_corners=False)
    x_t = torch.randn(2, 3, 32, 32)
    t = torch.tensor([999, 999])
    with torch.no_grad():
        x0 = model.predict_x0(x_t, t, model.eps(x_t, t, z))
        plain = DiffAE(_net(coarse_size=8, style_modulation=False, prediction="v")).unet
        plain.load_state_dict(unet.state_dict())
        x0_plain = DiffAE(plain).predict_x0(x_t, t, DiffAE(plain).eps(x_t, t, z))
    a, s = D.alpha_sigma(model.schedule, t, x_t)
    # x̂0 = sqrt(ᾱ)·x_t + (1 - ᾱ)·c, up to the float32 cancellation of Eq. 3 at t = 999 (1/sqrt(ᾱ) ≈ 156)
    assert torch.allclose(x0, a * x_t + s * s * c, atol=2e-3)
    assert (x0 - c).abs().max() < 0.05
    assert (x0_plain - c).abs().max() > 0.5  # without the shift the same weights imply x̂0 ≈ 0


def test_coarse_residual_training_target_is_consistent():
    """With an oracle network that outputs the true v of the residual, the loss is zero."""
    from pada import diffusion as D

    unet = _net(coarse_size=8, style_modulation=False, prediction="v", coarse_residual=True)
    model = DiffAE(unet)
    x0 = _images(3)
    t = torch.tensor([10, 400, 990])
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    z = unet.encode(x0)
    c = torch.nn.functional.interpolate(unet.coarse_image(z), size=32, mode="bilinear", align_corners=False)

    def oracle(x_in, t_in, z_in, coarse=None):
        return D.v_target(model.schedule, x0 - c, t_in, noise)

    unet.forward = oracle
    with torch.no_grad():
        out = model.loss_terms(x0, generator=g, t=t, return_x0=True)
    assert out["v_mse"] < 1e-10
    assert torch.allclose(out["x0_pred"], x0.clamp(-1, 1), atol=1e-4)


def test_coarse_residual_round_trips_and_warm_starts_from_a_plain_coarse_network(tmp_path):
    unet = _net(coarse_size=8, style_modulation=False, prediction="v", coarse_residual=True)
    back = load_diffae(save_diffae(unet, tmp_path / "r.safetensors"))
    assert back.config.coarse_residual is True
    plain = _net(coarse_size=8, style_modulation=False, prediction="v")
    from pada.networks.checkpoint import check_state_dict

    check_state_dict(unet, plain.state_dict(), "plain", "residual")  # same keys and shapes: --init-from works
