"""Fréchet distance between generated and real images of the same age group (PADA §4, Table 1 "FID").

FID (Heusel et al. 2017) fits a Gaussian to network features of each image set and reports

    d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}).

The paper uses Inception-v3 pool3 features. Those weights cannot be downloaded here, so by default pada
computes the same distance on the features of a network it has offline (SFace identity embeddings or
the dlib-age network's penultimate features). **Such numbers are a Fréchet distance in another feature
space: they are not Inception-FID and not comparable with the paper's Table 1.** When you have the
pytorch-fid weight file ``pt_inception-2015-12-05-6726825d.pth``, :class:`InceptionFeatures` builds the
FID variant of Inception-v3 on torchvision's ``inception_v3`` architecture and gives real FID features
(registry name ``inception-fid``).

Numerics: everything in float64; the trace of the matrix square root uses only symmetric
eigen-decompositions: with A = Σ₁^{1/2} (symmetric PSD), Σ₁Σ₂ is similar to A Σ₂ A, which is symmetric
PSD, so ``tr((Σ₁Σ₂)^{1/2}) = Σ_i sqrt(λ_i(A Σ₂ A))`` (negative round-off eigenvalues clamped to 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pada.errors import CheckpointError, MissingWeightsError
from pada.evaluation.metrics import Critic, embed


# --------------------------------------------------------------------------------------------------
# statistics and the distance
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianStats:
    """Mean ``(D,)`` and covariance ``(D, D)`` (float64) of ``n`` feature vectors."""

    mu: torch.Tensor
    sigma: torch.Tensor
    n: int

    @classmethod
    def from_features(cls, feats: torch.Tensor) -> GaussianStats:
        """Unbiased statistics of ``feats (n, D)``; needs n >= 2."""
        if feats.ndim != 2:
            raise ValueError(f"features must be (n, D), got {tuple(feats.shape)}")
        if feats.shape[0] < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {feats.shape[0]}")
        f = feats.double()
        mu = f.mean(0)
        c = f - mu
        sigma = c.T @ c / (f.shape[0] - 1)
        return cls(mu, sigma, f.shape[0])


def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (float64, eigenvalues clamped at 0)."""
    m = (m.double() + m.double().T) / 2
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """``tr((Σ₁ Σ₂)^{1/2})`` for symmetric PSD Σ₁, Σ₂ via the symmetric product Σ₁^{1/2} Σ₂ Σ₁^{1/2}."""
    a = sqrtm_psd(sigma1)
    p = a @ sigma2.double() @ a
    p = (p + p.T) / 2
    w = torch.linalg.eigvalsh(p)
    return float(w.clamp_min(0).sqrt().sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Squared Fréchet distance between two Gaussians (the FID formula; >= 0 up to round-off)."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature sizes differ: {tuple(a.mu.shape)} vs {tuple(b.mu.shape)}")
    diff = float((a.mu - b.mu).pow(2).sum())
    tr = float(torch.trace(a.sigma)) + float(torch.trace(b.sigma)) - 2 * trace_sqrt_product(a.sigma, b.sigma)
    return max(diff + tr, 0.0)


def frechet_distance_features(fa: torch.Tensor, fb: torch.Tensor) -> float:
    """Fréchet distance between two feature sets ``(n1, D)`` and ``(n2, D)``."""
    return frechet_distance(GaussianStats.from_features(fa), GaussianStats.from_features(fb))


# --------------------------------------------------------------------------------------------------
# feature extractors
# --------------------------------------------------------------------------------------------------
class CriticFeatures:
    """Features for the Fréchet distance taken from a pada critic.

    ``field`` picks the output: ``"embedding"`` for identity critics returning ``(B, D)`` (SFace),
    ``"features"`` for the age critic's penultimate features (``AgeOutput.features``). Features are
    used as the network gives them (no normalisation), like Inception pool3 in FID.
    """

    def __init__(self, critic: Critic, field: str = "embedding", name: str = "critic", batch_size: int = 32):
        self.critic, self.field, self.name, self.batch_size = critic, field, name, batch_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        names = ("features",) if self.field == "features" else ("embedding", "features")
        return embed(self.critic, images, self.batch_size, normalize=False, field=names).double()


INCEPTION_REGISTRY_NAME = "inception-fid"
INCEPTION_SHA256_PREFIX = "6726825d"


class _FIDBlock(nn.Module):
    """A torchvision Inception block (``.b``) run with the TF-FID pooling branch: a 3×3 average pool that
    ignores the padded zeros (``max_pool``: a max pool, the last block Mixed_7c of the TF graph)."""

    def __init__(self, block: nn.Module, max_pool: bool = False):
        super().__init__()
        self.b, self.max_pool = block, max_pool

    def pool_branch(self, x):
        if self.max_pool:
            return self.b.branch_pool(F.max_pool2d(x, 3, 1, 1))
        return self.b.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))


class _FIDInceptionA(_FIDBlock):
    def forward(self, x):
        b = self.b
        b5 = b.branch5x5_2(b.branch5x5_1(x))
        b3 = b.branch3x3dbl_3(b.branch3x3dbl_2(b.branch3x3dbl_1(x)))
        return torch.cat([b.branch1x1(x), b5, b3, self.pool_branch(x)], 1)


class _FIDInceptionC(_FIDBlock):
    def forward(self, x):
        b = self.b
        b7 = b.branch7x7_3(b.branch7x7_2(b.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(b, f"branch7x7dbl_{i}")(bd)
        return torch.cat([b.branch1x1(x), b7, bd, self.pool_branch(x)], 1)


class _FIDInceptionE(_FIDBlock):
    def forward(self, x):
        b = self.b
        b3 = b.branch3x3_1(x)
        b3 = torch.cat([b.branch3x3_2a(b3), b.branch3x3_2b(b3)], 1)
        bd = b.branch3x3dbl_2(b.branch3x3dbl_1(x))
        bd = torch.cat([b.branch3x3dbl_3a(bd), b.branch3x3dbl_3b(bd)], 1)
        return torch.cat([b.branch1x1(x), b3, bd, self.pool_branch(x)], 1)


class InceptionFeatures(nn.Module):
    """2048-d pool3 features of the TF-FID Inception-v3 (the network behind the paper's FID).

    Built on ``torchvision.models.inception_v3(num_classes=1008, aux_logits=False)``, whose state-dict
    keys the pytorch-fid file uses; the Mixed_5b-d, 6b-e, 7b-c blocks are wrapped to pool as the TF graph
    does. Input: images ``(B, 3, H, W)`` in [-1, 1], resized bilinearly to 299×299. Output ``(B, 2048)``.

    ``weights``: path to ``pt_inception-2015-12-05-6726825d.pth`` (or None to look it up in the weights
    registry as ``inception-fid``); ``state_dict`` lets tests pass random weights instead.
    """

    def __init__(self, weights: str | os.PathLike | None = None, state_dict: dict | None = None):
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False,
                           transform_input=False)
        if state_dict is None:
            path = _resolve_inception(weights)
            try:
                state_dict = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # any unreadable file is a user error
                msg = f"{path}: cannot read Inception weights ({type(exc).__name__})"
                raise CheckpointError(msg) from exc
        missing, unexpected = net.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"Inception weights do not match inception_v3(num_classes=1008): {len(missing)} missing "
                f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            setattr(net, name, _FIDInceptionA(getattr(net, name)))
        for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            setattr(net, name, _FIDInceptionC(getattr(net, name)))
        net.Mixed_7b = _FIDInceptionE(net.Mixed_7b, max_pool=False)
        net.Mixed_7c = _FIDInceptionE(net.Mixed_7c, max_pool=True)
        self.net = net.eval()
        self.name = "inception-v3"

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = F.interpolate(images.float(), size=(299, 299), mode="bilinear", align_corners=False)
        x = n.Conv2d_1a_3x3(x)
        x = n.Conv2d_2a_3x3(x)
        x = n.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, 3, 2)
        x = n.Conv2d_3b_1x1(x)
        x = n.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1).double()


def _resolve_inception(weights):
    from pada import weights as wreg

    if INCEPTION_REGISTRY_NAME in wreg.registry():
        path = wreg.resolve(INCEPTION_REGISTRY_NAME, weights)
    elif weights is not None and os.path.isfile(weights):
        path = weights
    else:
        path = None
    if path is not None:
        # torch-hub file names carry the first 8 hex digits of the sha256 ("...-6726825d.pth")
        digest = wreg.sha256_file(path)
        if not digest.startswith(INCEPTION_SHA256_PREFIX):
            raise CheckpointError(f"{path}: sha256 {digest[:12]}... is not the pytorch-fid Inception file "
                                  f"(expected {INCEPTION_SHA256_PREFIX}...)")
        return path
    raise MissingWeightsError(
        f"{weights or 'pt_inception-2015-12-05-6726825d.pth'}: Inception-v3 FID weights not found; they "
        "are not on PyPI: copy the pytorch-fid release file to $PADA_WEIGHTS_DIR or pass its path")


def features_of(extractor, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Run a feature extractor over ``images`` in batches; returns float64 ``(B, D)``."""
    from pada.evaluation.metrics import device_of

    dev = device_of(extractor)
    out = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch_size):
            chunk = images[i:i + batch_size]
            out.append(extractor(chunk if dev is None else chunk.to(dev)).double().cpu())
    return torch.cat(out, 0)
