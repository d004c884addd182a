"""Evaluation of face aging: age MAE, identity similarity, Fréchet distance, diversity, PSNR / SSIM.

Pure metric functions live in :mod:`~pada.evaluation.metrics`, :mod:`~pada.evaluation.fid` and
:mod:`~pada.evaluation.diversity`; :mod:`~pada.evaluation.runner` runs the whole protocol (PADA §4) for
``pada evaluate``. See docs/evaluation.md for what differs from the paper.
"""

from pada.evaluation.diversity import feature_diversity, mean_pairwise_distance, pixel_diversity
from pada.evaluation.fid import (
    CriticFeatures,
    GaussianStats,
    InceptionFeatures,
    frechet_distance,
    frechet_distance_features,
    sqrtm_psd,
    trace_sqrt_product,
)
from pada.evaluation.metrics import (
    age_errors,
    age_mae,
    embed,
    identity_similarity,
    predict_ages,
    psnr,
    ssim,
)

__all__ = [
    "CriticFeatures", "GaussianStats", "InceptionFeatures", "age_errors", "age_mae", "embed",
    "feature_diversity", "frechet_distance", "frechet_distance_features", "identity_similarity",
    "mean_pairwise_distance", "pixel_diversity", "predict_ages", "psnr", "sqrtm_psd", "ssim",
    "trace_sqrt_product",
]
