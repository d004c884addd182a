"""Metric functions of pada.evaluation against closed forms and independent reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pada.errors import CheckpointError, MissingWeightsError
from pada.evaluation import (
    GaussianStats,
    InceptionFeatures,
    age_errors,
    age_mae,
    feature_diversity,
    frechet_distance,
    frechet_distance_features,
    identity_similarity,
    mean_pairwise_distance,
    pixel_diversity,
    psnr,
    sqrtm_psd,
    ssim,
)
from pada.evaluation.fid import CriticFeatures, _FIDInceptionA, _FIDInceptionC, _FIDInceptionE


# ---------------------------------------------------------------------------------------------- fakes
class FakeAgeOutput:
    def __init__(self, age, features):
        self.age, self.features = age, features


class FakeAgeCritic(torch.nn.Module):
    """Age = 40 + 30 * mean pixel value; features = per-channel means (B, 3)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return FakeAgeOutput(40 + 30 * x.mean(dim=(1, 2, 3)), x.mean(dim=(2, 3)))


class FakeIdCritic(torch.nn.Module):
    """Embedding = unit-normalised 4x4 average-pooled image (B, 48)."""

    def forward(self, x):
        return torch.nn.functional.normalize(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1), dim=1)


def _imgs(b, seed, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


# ----------------------------------------------------------------------------------------- age & id
def test_age_mae_matches_definition_and_is_batch_invariant():
    x = _imgs(7, 0)
    critic = FakeAgeCritic()
    expected = float((40 + 30 * x.mean(dim=(1, 2, 3)) - 60.5).abs().mean())
    assert age_mae(critic, x, 60.5, batch_size=3) == pytest.approx(expected, rel=1e-6)
    assert critic.calls == [3, 3, 1]
    assert age_mae(FakeAgeCritic(), x, 60.5, batch_size=64) == pytest.approx(expected, rel=1e-6)
    err, ages = age_errors(critic, x, torch.full((7,), 20.0))
    assert torch.allclose(err, (ages - 20).abs())


def test_age_mae_accepts_plain_tensor_critic():
    x = _imgs(4, 1)
    assert age_mae(lambda t: t.mean(dim=(1, 2, 3)) * 0 + 33.0, x, 30.0) == pytest.approx(3.0)


def test_identity_similarity_pairs_outputs_with_their_source():
    src = _imgs(3, 2)
    other = _imgs(3, 3)
    # outputs (S=3, N=2): first output is the source itself, second a different image
    outs = torch.stack([src, other], 1)
    sim = identity_similarity(FakeIdCritic(), src, outs, batch_size=2)
    assert sim.shape == (6,)
    assert torch.allclose(sim[0::2], torch.ones(3), atol=1e-5)
    e_s, e_o = FakeIdCritic()(src), FakeIdCritic()(other)
    assert torch.allclose(sim[1::2], (e_s * e_o).sum(1), atol=1e-5)
    with pytest.raises(ValueError):
        identity_similarity(FakeIdCritic(), src[:2], outs)


# --------------------------------------------------------------------------------------- psnr / ssim
def test_psnr_closed_form():
    x = torch.zeros(2, 3, 8, 8)
    y = x + 0.2  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(x, y), torch.full((2,), 20.0), atol=1e-4)
    assert math.isinf(float(psnr(x, x)[0]))


def _ssim_reference(a: np.ndarray, b: np.ndarray, win: int, sigma: float) -> float:
    """Direct loop over valid windows of one channel with the 2-D Gaussian weights ([0,1] images)."""
    r = np.arange(win) - (win - 1) / 2
    g = np.exp(-(r ** 2) / (2 * sigma ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            pa, pb = a[i:i + win, j:j + win], b[i:i + win, j:j + win]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_window_loop():
    x, y = _imgs(1, 4, size=14), _imgs(1, 5, size=14)
    y = 0.6 * x + 0.4 * y  # correlated pair
    a = ((x[0].double().numpy() + 1) / 2)
    b = ((y[0].double().numpy() + 1) / 2)
    ref = np.mean([_ssim_reference(a[c], b[c], 7, 1.5) for c in range(3)])
    assert float(ssim(x, y, window=7)) == pytest.approx(ref, abs=1e-6)


def test_ssim_constant_images_and_monotone_in_noise():
    x = torch.full((1, 3, 16, 16), 0.0)  # 0.5 on [0, 1]
    y = torch.full((1, 3, 16, 16), 0.5)  # 0.75 on [0, 1]
    c1 = 0.01 ** 2
    expected = (2 * 0.5 * 0.75 + c1) / (0.5 ** 2 + 0.75 ** 2 + c1)
    assert float(ssim(x, y)) == pytest.approx(expected, rel=1e-6)
    img = _imgs(2, 6, size=32)
    assert torch.allclose(ssim(img, img), torch.ones(2), atol=1e-6)
    g = torch.Generator().manual_seed(7)
    n = torch.randn(img.shape, generator=g)
    s1, s2 = ssim(img, (img + 0.05 * n).clamp(-1, 1)), ssim(img, (img + 0.3 * n).clamp(-1, 1))
    assert bool((s1 > s2).all()) and bool((s1 < 1).all())
    assert torch.allclose(ssim(img, img + 0.1), ssim(img + 0.1, img), atol=1e-6)  # symmetric


# -------------------------------------------------------------------------------------- Fréchet / FID
def _random_spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_sqrtm_psd_squares_back():
    m = _random_spd(6, 0)
    s = sqrtm_psd(m)
    assert torch.allclose(s @ s, m, atol=1e-10)
    assert torch.allclose(s, s.T)


def test_frechet_distance_against_nonsymmetric_eigenvalues():
    d = 5
    s1, s2 = _random_spd(d, 1), _random_spd(d, 2)
    mu1 = torch.zeros(d, dtype=torch.float64)
    mu2 = torch.arange(d, dtype=torch.float64) / 3
    # independent route: eigenvalues of the (non-symmetric) product Σ1Σ2 are real and positive
    ev = torch.linalg.eigvals(s1 @ s2).real.clamp_min(0)
    ref = float((mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * ev.sqrt().sum())
    got = frechet_distance(GaussianStats(mu1, s1, 10), GaussianStats(mu2, s2, 10))
    assert got == pytest.approx(ref, rel=1e-9)
    same = GaussianStats(mu1, s1, 10)
    assert frechet_distance(same, same) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_diagonal_closed_form_and_features():
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    sa = GaussianStats(torch.zeros(3, dtype=torch.float64), torch.diag(a).double(), 5)
    sb = GaussianStats(torch.ones(3, dtype=torch.float64), torch.diag(b).double(), 5)
    assert frechet_distance(sa, sb) == pytest.approx(3 + float(((a.sqrt() - b.sqrt()) ** 2).sum()))
    g = torch.Generator().manual_seed(3)
    f = torch.randn(200, 4, generator=g)
    st = GaussianStats.from_features(f)
    assert torch.allclose(st.sigma, torch.cov(f.T).double(), atol=1e-6)
    shifted = frechet_distance_features(f, f + 2.0)
    assert shifted == pytest.approx(4 * 4.0, rel=1e-6)  # same covariance: only the mean term (4 dims x 2²)
    with pytest.raises(ValueError):
        GaussianStats.from_features(f[:1])


def test_critic_features_take_the_requested_field():
    x = _imgs(5, 8)
    f = CriticFeatures(FakeAgeCritic(), field="features")(x)
    assert f.shape == (5, 3) and f.dtype == torch.float64
    assert torch.allclose(f, x.mean(dim=(2, 3)).double(), atol=1e-6)


# ------------------------------------------------------------------------------------------ Inception
@pytest.fixture(scope="module")
def inception_net():
    from torchvision.models import inception_v3

    with torch.random.fork_rng(devices=[]):  # torchvision's init draws from the global RNG
        torch.manual_seed(0)
        net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    return net.eval()


def test_fid_inception_blocks_differ_from_torchvision_only_in_pooling(inception_net):
    g = torch.Generator().manual_seed(0)
    cases = [("Mixed_5b", 192, _FIDInceptionA, {}), ("Mixed_6b", 768, _FIDInceptionC, {}),
             ("Mixed_7b", 1280, _FIDInceptionE, {"max_pool": False})]
    with torch.no_grad():
        for name, ch, wrapper, kw in cases:
            block = getattr(inception_net, name)
            x = torch.randn(1, ch, 7, 7, generator=g)
            ref, got = block(x), wrapper(block, **kw)(x)
            assert ref.shape == got.shape
            # the count_include_pad difference only touches the border pixels of the pool branch
            assert torch.allclose(ref[..., 1:-1, 1:-1], got[..., 1:-1, 1:-1], atol=1e-5), name
            assert not torch.allclose(ref, got, atol=1e-5), name


def test_inception_weight_errors(inception_net, tmp_path, monkeypatch):
    state = inception_net.state_dict()
    bad = dict(state)
    bad.pop("fc.weight")
    with pytest.raises(CheckpointError, match="1 missing"):
        InceptionFeatures(state_dict=bad)
    monkeypatch.setenv("PADA_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="inception"):
        InceptionFeatures()
    wrong = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    wrong.write_bytes(b"not the pytorch-fid file")
    with pytest.raises(CheckpointError, match="6726825d"):  # the sha256 prefix is checked before loading
        InceptionFeatures(weights=wrong)


def test_inception_features_with_random_weights(inception_net):
    feats = InceptionFeatures(state_dict=inception_net.state_dict())
    f = feats(_imgs(1, 9, size=64))
    assert f.shape == (1, 2048) and f.dtype == torch.float64 and torch.isfinite(f).all()
    assert bool((f >= 0).all())  # pool3 follows a ReLU


# ------------------------------------------------------------------------------------------ diversity
def test_mean_pairwise_distance_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # cosine distances: (0,1)=1, (0,2)=2, (1,2)=1 -> mean 4/3
    assert mean_pairwise_distance(f, "cosine") == pytest.approx(4 / 3)
    # euclidean: sqrt2, 2, sqrt2
    assert mean_pairwise_distance(f, "l2") == pytest.approx((2 * math.sqrt(2) + 2) / 3)
    assert math.isnan(mean_pairwise_distance(f[:1]))
    with pytest.raises(ValueError):
        mean_pairwise_distance(f, "lpips")


def test_pixel_and_feature_diversity():
    x = _imgs(2, 10)
    same = x.unsqueeze(1).repeat(1, 3, 1, 1, 1)  # (S=2, N=3) identical outputs
    assert pixel_diversity(same) == pytest.approx(0.0, abs=1e-12)
    assert feature_diversity(FakeIdCritic(), same) == pytest.approx(0.0, abs=1e-6)
    # two outputs that differ by a constant 0.2 everywhere -> RMS difference 0.2
    pair = torch.stack([x, x + 0.2], 1)
    assert pixel_diversity(pair) == pytest.approx(0.2, rel=1e-5)
    varied = torch.stack([x, _imgs(2, 11), _imgs(2, 12)], 1)
    assert feature_diversity(FakeIdCritic(), varied) > 0.01
    assert feature_diversity(FakeAgeCritic(), varied, metric="l2", field=("features",)) > 0
