"""DiffAE network structure: official key lists, parameter counts, presets, config validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pada.errors import PadaError
from pada.networks.config import DiffAEConfig, list_presets, load_preset
from pada.networks.unet import DiffAEUNet
from shared_fixtures import official_fixtures


def _fixtures() -> Path:
    return official_fixtures()


# Official totals recorded with the fixtures (tests/fixtures/PROVENANCE.md): all params, encoder params.
OFFICIAL_COUNTS = {
    "ffhq256_autoenc": (168_492_291, 30_150_400),
    "ffhq128_autoenc": (128_545_155, 24_673_536),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_official_key_list_and_shapes(name: str) -> None:
    ref = []
    for line in (_fixtures() / f"keys_{name}.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        ref.append((key, shape))
    with torch.device("meta"):
        model = DiffAEUNet(load_preset(name))
    mine = [(k, str(tuple(v.shape))) for k, v in model.state_dict().items()]
    assert len(mine) == len(ref)
    # same keys, same shapes, same order as the official state_dict
    for got, want in zip(mine, ref):
        assert got == want
    total, enc = OFFICIAL_COUNTS[name]
    assert model.num_parameters() == total
    assert model.num_parameters(encoder=True) == enc


def test_presets_listed_and_sizes() -> None:
    names = list_presets()
    for want in ("ffhq256_autoenc", "ffhq128_autoenc", "pada64", "tiny32"):
        assert want in names
    with torch.device("meta"):
        pada64 = DiffAEUNet(load_preset("pada64"))
        tiny = DiffAEUNet(load_preset("tiny32"))
    assert 3_000_000 <= pada64.num_parameters() <= 5_000_000
    assert 100_000 <= tiny.num_parameters() <= 600_000
    assert load_preset("pada64").style_channels == 512
    c = load_preset("pada64c")  # the experimental coarse-path preset: pada64 + a 32x32 coarse image path
    assert (c.coarse_size, c.style_modulation, c.prediction) == (32, False, "v")
    with torch.device("meta"):
        assert DiffAEUNet(c).num_parameters(encoder=True) == pada64.num_parameters(encoder=True)


@pytest.mark.parametrize("name", ["tiny32", "pada64"])
def test_forward_shapes_small_presets(name: str) -> None:
    cfg = load_preset(name)
    torch.manual_seed(0)
    model = DiffAEUNet(cfg).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
    with torch.inference_mode():
        z = model.encode(x)
        eps = model(x, torch.tensor([3, 999]), z)
    assert z.shape == (2, cfg.enc_out_channels)
    assert eps.shape == x.shape
    assert torch.isfinite(eps).all()


def test_fixture_configs_load() -> None:
    fx = _fixtures()
    tiny = DiffAEConfig.from_json_file(fx / "tiny_config.json")
    gn = DiffAEConfig.from_json_file(fx / "tiny_gn_config.json")
    assert tiny.model_channels == 8 and tiny.channel_mult == (1, 2, 2)
    assert gn.model_channels == 32 and gn.enc_channel_mult == (1, 1, 1, 2)
    with torch.device("meta"):
        assert DiffAEUNet(tiny).num_parameters() == 192_539
        assert DiffAEUNet(gn).num_parameters() == 904_387
        assert len(DiffAEUNet(tiny).state_dict()) == 396
        assert len(DiffAEUNet(gn).state_dict()) == 394


def test_config_round_trip_and_unknown_keys() -> None:
    cfg = load_preset("pada64")
    again = DiffAEConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(PadaError, match="unknown DiffAEConfig key 'model_chanels'"):
        DiffAEConfig.from_dict({**cfg.to_dict(), "model_chanels": 3}, source="x.json")
    with pytest.raises(PadaError, match="use_new_attention_order"):
        DiffAEConfig.from_dict({**cfg.to_dict(), "use_new_attention_order": True})
    with pytest.raises(PadaError, match="unknown DiffAE preset"):
        load_preset("nope")


def test_invalid_groupnorm_width_is_rejected() -> None:
    cfg = DiffAEConfig(image_size=32, model_channels=16, channel_mult=(1, 2), enc_channel_mult=(1, 2))
    with pytest.raises(PadaError, match="48 channels"):
        with torch.device("meta"):
            DiffAEUNet(cfg)


def test_plain_and_fast_paths_agree_and_grad_flows() -> None:
    cfg = load_preset("tiny32")
    torch.manual_seed(1)
    model = DiffAEUNet(cfg).eval()
    # official zero-inits would make eps identically 0; randomise every parameter
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        z = model.encode(x)
        fast = model(x, t, z)
        model.set_plain(True)
        plain = model(x, t, model.encode(x))
        model.set_plain(False)
    assert fast.abs().max() > 0.1
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)
    # differentiable path (training) with gradient checkpointing
    model.train()
    model.gradient_checkpointing = True
    z = model.encode(x)
    loss = model(x, t, z).square().mean()
    loss.backward()
    assert model.encoder.input_blocks[0][0].weight.grad is not None
    assert model.input_blocks[1][0].in_layers[2].weight.grad.abs().sum() > 0
    # channels_last gives the same loss and gradients (PADA differentiates through a CL model)
    model.zero_grad(set_to_none=True)
    model.eval()  # no dropout: compare deterministic losses
    loss_ref = model(x, t, model.encode(x)).square().mean()
    loss_ref.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.to_channels_last(True)
    loss_cl = model(x, t, model.encode(x)).square().mean()
    loss_cl.backward()
    torch.testing.assert_close(loss_cl, loss_ref, atol=1e-5, rtol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], atol=1e-4, rtol=1e-3, msg=n)
