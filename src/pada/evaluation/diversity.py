"""Diversity of pluralistic aging: how different are N outputs of the same input (PADA §4.2, Fig. 7).

The paper shows diversity qualitatively (high-level variations from the probabilistic aging embedding,
low-level variations from the stochastic DDIM decode). We measure it as the mean pairwise distance of
the N outputs of one source, averaged over sources:

* in a critic's feature space (``feature_diversity``): ``1 − cos`` of identity embeddings (SFace) or
  Euclidean distance of age features — semantic variety;
* in pixel space (``pixel_diversity``): root-mean-square difference of the images in [-1, 1] scale —
  an LPIPS-free measure (LPIPS needs ImageNet backbones that are not available offline).

With N = 1 there are no pairs and the result is NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pada.evaluation.metrics import Critic, embed


def mean_pairwise_distance(feats: torch.Tensor, metric: str = "cosine") -> float:
    """Mean distance over the N(N−1)/2 unordered pairs of ``feats (N, D)``.

    ``metric``: ``"cosine"`` (1 − cos, in [0, 2]), ``"l2"`` (Euclidean) or ``"rms"`` (Euclidean / √D).
    """
    n = feats.shape[0]
    if n < 2:
        return math.nan
    f = feats.double().reshape(n, -1)
    if metric == "cosine":
        f = F.normalize(f, dim=1)
        d = 1 - f @ f.T
    elif metric in ("l2", "rms"):
        d = torch.cdist(f, f)
        if metric == "rms":
            d = d / math.sqrt(f.shape[1])
    else:
        raise ValueError(f"unknown metric {metric!r}; use cosine, l2 or rms")
    iu = torch.triu_indices(n, n, 1)
    return float(d[iu[0], iu[1]].mean())


def pixel_diversity(outputs: torch.Tensor) -> float:
    """Mean over sources of the mean pairwise RMS pixel difference of ``outputs (S, N, 3, H, W)``."""
    if outputs.ndim != 5:
        raise ValueError(f"outputs must be (S, N, 3, H, W), got {tuple(outputs.shape)}")
    vals = [mean_pairwise_distance(o.flatten(1), "rms") for o in outputs]
    return float(torch.tensor(vals, dtype=torch.float64).mean())


def feature_diversity(critic: Critic, outputs: torch.Tensor, metric: str = "cosine",
                      field: tuple[str, ...] = ("embedding", "features"), batch_size: int = 32) -> float:
    """Mean over sources of the mean pairwise feature distance of ``outputs (S, N, 3, H, W)``."""
    if outputs.ndim != 5:
        raise ValueError(f"outputs must be (S, N, 3, H, W), got {tuple(outputs.shape)}")
    s, n = outputs.shape[:2]
    f = embed(critic, outputs.flatten(0, 1), batch_size, normalize=False, field=field).reshape(s, n, -1)
    vals = [mean_pairwise_distance(fi, metric) for fi in f]
    return float(torch.tensor(vals, dtype=torch.float64).mean())
