"""The coarse image path of a pada-only ``coarse_size`` DiffAE network (tiny random weights)."""

from __future__ import annotations

import pytest
import torch

from pada.diffae import DiffAE
from pada.errors import PadaError
from pada.networks.checkpoint import load_diffae, save_diffae
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet
from pada.training.diffae_task import _add_coarse_path

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
