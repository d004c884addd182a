"""The DiffAE face-feature loss (`pada train diffae --feature-loss`, design (c) of the bake-off): the x̂0
that ``loss_terms(return_x0=True)`` hands out, the loss on it, and the CLI run with the real critics."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pada import diffusion as D
from pada.critics.base import AgeOutput
from pada.diffae import DiffAE
from pada.diffae.train import FaceFeatureLoss, main, parse_feature_loss
from pada.errors import PadaError
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet

FAST = ["--preset", "tiny32", "--batch-size", "4", "--no-progress", "--holdout", "2", "--sample-steps", "2",
        "--encode-steps", "2", "--log-every", "1", "--ema-decay", "0.9"]


class _Critic(nn.Module):
    """A small fixed random conv net standing in for a face critic."""

    def __init__(self, seed: int, age: bool = False) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                     nn.Flatten())
        self.age = age

    def forward(self, x):
        f = self.net(x)
        if self.age:
            return AgeOutput(age=f.sum(1), probs=f.softmax(1), logits=f, features=f)
        return f


def _loss(t_min: int = 500) -> FaceFeatureLoss:
    return FaceFeatureLoss({"sface": _Critic(0), "dlib-age": _Critic(1, age=True)},
                           {"sface": 1.0, "dlib-age": 0.5}, t_min=t_min)


def test_parse_feature_loss():
    assert parse_feature_loss(["sface=0.5", "dlib-age=1", "dlib-gender=0"]) == {
        "sface": 0.5, "dlib-age": 1.0, "dlib-gender": 0.0}
    assert parse_feature_loss([]) == {}
    for bad, msg in (("sface", "CRITIC=WEIGHT"), ("arcface=1", "CRITIC=WEIGHT"), ("sface=x", "not a number"),
                     ("sface=-1", ">= 0"), ("sface=inf", "finite"), ("sface=nan", "finite")):
        with pytest.raises(PadaError, match=msg):
            parse_feature_loss([bad])


def test_feature_loss_is_zero_for_the_true_image_and_scores_only_noisy_rows():
    loss = _loss()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    t = torch.tensor([900, 10, 600, 100])
    same = loss(x0.clone(), x0, t)
    assert set(same) == {"feat_sface", "feat_dlib-age", "feature_total"}
    assert all(abs(float(v)) < 1e-6 for v in same.values())
    pred = x0.clone()
    pred[1] = -pred[1]  # a low-t row may differ: not scored
    assert float(loss(pred, x0, t)["feature_total"]) < 1e-6
    pred = x0.clone().requires_grad_(True)
    out = loss(pred.flip(-1) * 0.5, x0, t)
    assert float(out["feat_sface"].detach()) > 0 and float(out["feat_dlib-age"].detach()) > 0
    total = out["feat_sface"] + 0.5 * out["feat_dlib-age"]
    assert torch.allclose(out["feature_total"], total)
    out["feature_total"].backward()
    assert pred.grad[[0, 2]].abs().sum() > 0 and pred.grad[[1, 3]].abs().sum() == 0  # only t >= t_min
    assert all(p.grad is None for p in loss.parameters())  # the critics are frozen
    loss.train()
    assert not any(c.training for c in loss.critics.values())
    # no row above t_min: zero, still in the graph
    pred = x0.clone().requires_grad_(True)
    none = loss(pred * 0.3, x0, torch.tensor([1, 2, 3, 4]))["feature_total"]
    none.backward()
    assert float(none) == 0.0 and pred.grad is not None


def test_feature_loss_needs_one_weight_per_critic():
    with pytest.raises(PadaError, match="do not match"):
        FaceFeatureLoss({"sface": _Critic(0)}, {"sface": 1.0, "dlib-age": 1.0})


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_terms_return_the_x0_the_prediction_implies(prediction):
    unet = DiffAEUNet(load_preset("tiny32").replace(prediction=prediction)).eval()
    model = DiffAE(unet, D.linear_schedule(1000))
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(3, 3, 32, 32, generator=g) * 1.8 - 0.9
    t = torch.tensor([5, 500, 990])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))

    def oracle(x_t, tt, z, coarse=None):  # the exact target: then x̂0 must be x0
        return D.v_target(model.schedule, x0, tt, noise) if prediction == "v" else noise

    unet.forward = oracle
    out = model.loss_terms(x0, torch.Generator().manual_seed(7), t=t, return_x0=True)
    assert torch.equal(out["t"], t)
    assert torch.allclose(out["x0_pred"], x0, atol=1e-3)
    assert float(out[f"{prediction}_mse"]) == 0.0
    assert "x0_pred" not in model.loss_terms(x0, torch.Generator().manual_seed(7), t=t)


def test_cli_trains_with_the_real_critics(tmp_path):
    out = tmp_path / "run"
    assert main(["--data", "synthetic:blobs:8", "--out", str(out), "--steps", "2",
                 "--feature-loss", "sface=0.1", "--feature-loss", "dlib-age=0.2", "--feature-t-min", "0",
                 *FAST]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        assert 0 < r["loss/feat_sface"] <= 2 and 0 <= r["loss/feat_dlib-age"] <= 2
        assert r["loss/total"] >= r["loss/eps_mse"] + 0.1 * r["loss/feat_sface"] - 1e-5
    cfg = torch.load(out / "checkpoints" / "step_00000002.pt", weights_only=False)["task"]["config"]
    assert cfg["feature_loss"] == {"sface": 0.1, "dlib-age": 0.2} and cfg["feature_t_min"] == 0
    with pytest.raises(PadaError, match="--feature-loss"):
        main(["--data", "synthetic:blobs:8", "--out", str(tmp_path / "bad"), "--steps", "1",
              "--feature-loss", "lpips=1", *FAST])


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_chain_x0_renoises_the_detached_prediction_and_predicts_again(prediction):
    unet = DiffAEUNet(load_preset("tiny32").replace(prediction=prediction)).eval()
    model = DiffAE(unet, D.linear_schedule(1000))
    g = torch.Generator().manual_seed(4)
    x0_pred = (torch.rand(3, 3, 32, 32, generator=g) * 1.8 - 0.9).requires_grad_(True)
    z = torch.randn(3, unet.config.style_channels, generator=g, requires_grad=True)
    t = torch.tensor([600, 999, 201])
    # the real network for the graph: it reaches z, not the detached input ...
    x0_2, t2 = model.chain_x0(x0_pred, z, t, 200, torch.Generator().manual_seed(1))
    assert x0_2.shape == x0_pred.shape and float(x0_2.abs().max()) <= 1.0
    assert bool(((t2 >= 200) & (t2 < t)).all())
    x0_2.sum().backward()
    assert x0_pred.grad is None and z.grad is not None  # the input is detached; z is in the graph
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in unet.parameters())
    # ... and an oracle that knows the image it is re-noised from for the values: it gives that image back
    target = x0_pred.detach()
    seen = {}

    def oracle(x_t, tt, zz, coarse=None):
        a, s = D.alpha_sigma(model.schedule, tt, x_t)
        eps = (x_t - a * target) / s
        seen["t"] = tt
        return a * eps - s * target if prediction == "v" else eps

    unet.forward = oracle
    back, t2 = model.chain_x0(target, z.detach(), t, 200, torch.Generator().manual_seed(1))
    assert torch.equal(seen["t"], t2)
    assert torch.allclose(back, target, atol=1e-3)


def test_cli_chained_feature_loss(tmp_path):
    out = tmp_path / "run"
    assert main(["--data", "synthetic:blobs:8", "--out", str(out), "--steps", "2",
                 "--feature-loss", "sface=0.1", "--feature-t-min", "0", "--feature-chain-t", "50",
                 "--high-t-fraction", "1", *FAST]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        assert 0 < r["loss/chain_sface"] <= 2
        features = 0.1 * (r["loss/feat_sface"] + r["loss/chain_sface"])
        assert r["loss/total"] >= r["loss/eps_mse"] + features - 1e-5
    cfg = torch.load(out / "checkpoints" / "step_00000002.pt", weights_only=False)["task"]["config"]
    assert cfg["feature_chain_t"] == 50
    with pytest.raises(PadaError, match="--feature-chain-t needs --feature-loss"):
        main(["--data", "synthetic:blobs:8", "--out", str(tmp_path / "bad"), "--steps", "1",
              "--feature-chain-t", "50", *FAST])
