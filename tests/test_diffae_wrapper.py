"""The DiffAE wrapper: shapes, determinism, [-1, 1] range, x̂0 inverse of q_sample, loss, loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pada.diffae import DiffAE
from pada.errors import CheckpointError
from pada.networks.checkpoint import save_diffae
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet


@pytest.fixture(scope="module")
def model() -> DiffAE:
    torch.manual_seed(0)
    unet = DiffAEUNet(load_preset("tiny32")).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.1)
    return DiffAE(unet).eval()


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g) * 2 - 1


def test_encode_stochastic_render_shapes_and_range(model: DiffAE) -> None:
    x = _images(2, 0)
    with torch.no_grad():
        z = model.encode(x)
    assert z.shape == (2, 64)
    x_T = model.encode_stochastic(x, z, T=5)
    assert x_T.shape == x.shape and torch.isfinite(x_T).all()
    img = model.render(x_T, z, T=5)
    assert img.shape == x.shape
    assert img.min() >= -1 and img.max() <= 1
    assert not img.is_inference()  # usable by later autograd code
    # render(encode_stochastic(x)) is the DiffAE reconstruction path; with clip=False and many
    # steps DDIM inversion is near-exact for a smooth eps-model; here just check it is deterministic
    assert torch.equal(model.render(x_T, z, T=5), img)


def test_render_determinism_under_generator(model: DiffAE) -> None:
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    x_T = model.sample_noise(2, torch.Generator().manual_seed(2))
    a = model.render(x_T, z, T=4, eta=0.5, generator=torch.Generator().manual_seed(3))
    b = model.render(x_T, z, T=4, eta=0.5, generator=torch.Generator().manual_seed(3))
    c = model.render(x_T, z, T=4, eta=0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="Generator"):
        model.render(x_T, z, T=4, eta=0.5)


def test_predict_x0_inverts_q_sample(model: DiffAE) -> None:
    x0 = _images(3, 5)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([0, 400, 999])
    x_t = model.q_sample(x0, t, noise)
    back = model.predict_x0(x_t, t, noise)
    # error grows like sqrt(1/ᾱ_t) · float32 eps (ᾱ_999 ≈ 4e-5)
    torch.testing.assert_close(back[:2], x0[:2], atol=1e-4, rtol=0)
    torch.testing.assert_close(back[2], x0[2], atol=5e-3, rtol=0)
    # differentiable (PADA's losses act on x̂0)
    eps = noise.clone().requires_grad_(True)
    model.predict_x0(x_t, t, eps).sum().backward()
    assert eps.grad is not None and eps.grad.abs().sum() > 0


def test_loss_and_grad(model: DiffAE) -> None:
    x0 = _images(2, 7)
    l1 = model.loss(x0, generator=torch.Generator().manual_seed(0))
    l2 = model.loss(x0, generator=torch.Generator().manual_seed(0))
    assert l1.dim() == 0 and torch.isfinite(l1)
    assert torch.equal(l1, l2)
    l1.backward()
    grads = [p.grad for p in model.unet.encoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # encoder trained through z
    model.zero_grad(set_to_none=True)


def test_bf16_render_close(model: DiffAE) -> None:
    x = _images(1, 8)
    with torch.no_grad():
        z = model.encode(x)
    x_T = model.sample_noise(1, torch.Generator().manual_seed(9))
    ref = model.render(x_T, z, T=3)
    low = model.render(x_T, z, T=3, bf16=True)
    assert low.dtype == torch.float32
    assert (low - ref).abs().mean() < 0.1


def test_from_pretrained(tmp_path: Path, model: DiffAE) -> None:
    path = save_diffae(model.unet, tmp_path / "tiny.safetensors")
    loaded = DiffAE.from_pretrained(path)
    assert loaded.config == model.config
    assert loaded.unet.channels_last  # CPU default
    x = _images(2, 11)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), model.encode(x), atol=1e-5, rtol=1e-5)
    # exporting a channels_last model gives the same file as the original
    again = save_diffae(loaded.unet, tmp_path / "again.safetensors")
    assert again.read_bytes() == path.read_bytes()
    with pytest.raises(CheckpointError, match="neither a checkpoint file nor a registered"):
        DiffAE.from_pretrained(tmp_path / "nope.safetensors")


# ------------------------------------------------------------------------------- v-prediction networks
def test_v_prediction_helpers_invert_each_other() -> None:
    from pada import diffusion as D

    s = D.linear_schedule()
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    x_t = D.q_sample(s, x0, t, noise)
    v = D.v_target(s, x0, t, noise)
    assert torch.allclose(D.eps_from_v(s, x_t, t, v), noise, atol=1e-5)
    # at the last step v is almost -x0 (what a v-network must learn there), ε almost x_t
    assert (v[3] + x0[3]).abs().max() < 0.01 * noise[3].abs().max() + 1e-4


def test_v_network_is_seen_as_eps_by_sampler_and_loss(model: DiffAE, tmp_path: Path) -> None:
    from pada import diffusion as D

    unet_v = DiffAEUNet(load_preset("tiny32").replace(prediction="v")).eval()
    unet_v.load_state_dict(model.unet.state_dict())
    mv = DiffAE(unet_v).eval()
    x = _images(2, 5)
    t = torch.tensor([3, 900])
    with torch.no_grad():
        z = mv.encode(x)
        x_t = mv.q_sample(x, t, torch.randn_like(x))
        raw = unet_v(x_t, t, z)
        assert torch.equal(raw, model.unet(x_t, t, z))  # same weights, same raw output
        assert torch.allclose(mv.eps(x_t, t, z), D.eps_from_v(mv.schedule, x_t, t, raw))
        assert not torch.allclose(mv.eps(x_t, t, z), model.eps(x_t, t, z))
    # the sampler goes through the conversion: a different image than the ε reading of the same weights
    x_T = mv.sample_noise(2, torch.Generator().manual_seed(1))
    assert not torch.allclose(mv.render(x_T, z, T=3), model.render(x_T, z, T=3))
    # training loss is the v-MSE: replay the same t and noise draws
    g = torch.Generator().manual_seed(7)
    loss = mv.loss(x, g).detach()
    g = torch.Generator().manual_seed(7)
    tt = D.sample_timesteps(2, mv.T, g)
    noise = torch.randn(x.shape, generator=g)
    with torch.no_grad():
        want = (unet_v(D.q_sample(mv.schedule, x, tt, noise), tt, mv.encode(x))
                - D.v_target(mv.schedule, x, tt, noise)).square().mean()
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    # the choice travels with the file
    path = save_diffae(unet_v, tmp_path / "v.safetensors")
    assert DiffAE.from_pretrained(str(path)).config.prediction == "v"


def test_unknown_prediction_is_refused() -> None:
    from pada.errors import PadaError

    with pytest.raises(PadaError, match="prediction 'x0' unknown"):
        load_preset("tiny32").replace(prediction="x0")


def test_registry_preset_does_not_override_a_files_own_config(tmp_path: Path, monkeypatch) -> None:
    from pada import weights

    unet_v = DiffAEUNet(load_preset("tiny32").replace(prediction="v"))
    path = save_diffae(unet_v, tmp_path / "v.safetensors")
    entry = weights.WeightFile(name="fake-v", filename="v.safetensors", sha256=None, how_to_get="test",
                               recipe={"preset": "tiny32"})  # the preset alone would say prediction=eps
    monkeypatch.setattr(weights, "registry", lambda: {"fake-v": entry})
    monkeypatch.setattr(weights, "get", lambda name: entry)
    monkeypatch.setattr(weights, "resolve", lambda name: path)
    assert DiffAE.from_pretrained("fake-v").config.prediction == "v"


def test_sampler_option_of_render_and_encode_stochastic(model: DiffAE) -> None:
    """``sampler="multistep"`` runs the 2nd-order solver on even log-SNR steps; the default stays DDIM."""
    from pada import diffusion as D
    from pada.errors import PadaError

    x = _images(2, 5)
    with torch.no_grad():
        z = model.encode(x)
    fn = lambda xt, t: model.eps(xt, t, z)  # noqa: E731
    with torch.no_grad():
        ms_T = D.multistep_invert(fn, x, "logsnr6")  # noqa: N806
        ms = D.multistep_sample(fn, ms_T, "logsnr6")
        dd_T = D.ddim_invert(fn, x, 6)  # noqa: N806
    torch.testing.assert_close(model.encode_stochastic(x, z, T=6, sampler="multistep"), ms_T)
    torch.testing.assert_close(model.render(ms_T, z, T=6, sampler="multistep"), ms)
    torch.testing.assert_close(model.render(ms_T, z, T="logsnr6", sampler="multistep"), ms)  # a section
    assert torch.equal(model.encode_stochastic(x, z, T=6), model.encode_stochastic(x, z, T=6, sampler="ddim"))
    torch.testing.assert_close(model.encode_stochastic(x, z, T=6), dd_T)
    with pytest.raises(PadaError, match="deterministic"):
        model.render(ms_T, z, T=4, eta=0.5, generator=torch.Generator(), sampler="multistep")
    with pytest.raises(PadaError, match="unknown"):
        model.encode_stochastic(x, z, T=4, sampler="euler")
