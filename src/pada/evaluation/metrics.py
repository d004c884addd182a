"""Per-image metrics of face aging (PADA §4 "Evaluation Metrics", Tables 1 and 3).

All functions are pure: they take image tensors and the critic objects to use, run batched under
``torch.inference_mode`` and return plain tensors / floats. Images follow the package convention:
``float32 (B, 3, H, W)`` RGB in ``[-1, 1]``.

Critics are passed in by the caller (``pada.critics.registry.load_critic(name)``), so the evaluator can
be chosen: the paper measures age with Face++ and identity with SFace because DEX and ArcFace were
used in training; offline we use dlib-age (or DEX when supplied) and SFace. Any callable works:

* an **age critic** maps images ``(B, 3, H, W)`` to an object with an ``age`` field of shape ``(B,)``
  (``pada.critics`` ``AgeOutput``) or directly to a ``(B,)`` tensor of ages in years;
* an **identity critic** maps images to embeddings ``(B, D)`` (normalised here, so unit length is not
  required) or to an object with an ``embedding`` / ``features`` field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

Critic = Callable[[torch.Tensor], Any]


# --------------------------------------------------------------------------------------------------
# critic adapters
# --------------------------------------------------------------------------------------------------
def _field(out: Any, names: Sequence[str]) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for n in names:
        if isinstance(out, dict) and n in out:
            return out[n]
        if hasattr(out, n):
            return getattr(out, n)
    raise TypeError(f"critic output of type {type(out).__name__} has none of the fields {list(names)}")


def device_of(fn: Any) -> torch.device | None:
    """Device of a critic's first parameter or buffer (None for plain callables)."""
    if isinstance(fn, torch.nn.Module):
        for t in list(fn.parameters()) + list(fn.buffers()):
            return t.device
    return None


def _batched(fn: Critic, images: torch.Tensor, batch_size: int, names: Sequence[str]) -> torch.Tensor:
    """Run ``fn`` over ``images`` in chunks on the critic's device; outputs gathered on the CPU."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    dev = device_of(fn)
    outs = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch_size):
            chunk = images[i:i + batch_size]
            if dev is not None:
                chunk = chunk.to(dev)
            outs.append(_field(fn(chunk), names).detach().float().cpu())
    if not outs:
        return torch.zeros(0)
    return torch.cat(outs, 0)


def predict_ages(age_critic: Critic, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Ages in years ``(B,)`` predicted by ``age_critic`` for ``images (B, 3, H, W)`` in [-1, 1]."""
    ages = _batched(age_critic, images, batch_size, ("age", "ages"))
    return ages.reshape(-1)


def embed(critic: Critic, images: torch.Tensor, batch_size: int = 32, normalize: bool = True,
          field: Sequence[str] = ("embedding", "features")) -> torch.Tensor:
    """Feature vectors ``(B, D)`` of ``critic`` for ``images``; L2-normalised when ``normalize``."""
    f = _batched(critic, images, batch_size, field)
    f = f.reshape(f.shape[0], -1)
    return F.normalize(f, dim=1) if normalize else f


# --------------------------------------------------------------------------------------------------
# aging accuracy and identity preservation
# --------------------------------------------------------------------------------------------------
def age_errors(age_critic: Critic, images: torch.Tensor, target_age: float | torch.Tensor,
               batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute age errors ``|age(x) - target| (B,)`` and the predicted ages ``(B,)``.

    ``target_age`` is one number (the age group's ``center`` from :mod:`pada.data.groups`) or a
    ``(B,)`` tensor. Age MAE (Table 1) is the mean of the first output.
    """
    ages = predict_ages(age_critic, images, batch_size)
    target = torch.as_tensor(target_age, dtype=ages.dtype).expand_as(ages)
    return (ages - target).abs(), ages


def age_mae(age_critic: Critic, images: torch.Tensor, target_age: float | torch.Tensor,
            batch_size: int = 32) -> float:
    """Age MAE (Table 1): mean absolute difference between estimated and target age, in years."""
    err, _ = age_errors(age_critic, images, target_age, batch_size)
    return float(err.mean()) if err.numel() else math.nan


def identity_similarity(id_critic: Critic, sources: torch.Tensor, outputs: torch.Tensor,
                        batch_size: int = 32) -> torch.Tensor:
    """Cosine similarity ``(M,)`` of identity embeddings of each output and its source (Table 1 "ID").

    ``sources`` is ``(S, 3, H, W)``; ``outputs`` is ``(S, 3, H, W)`` or ``(S, N, 3, H, W)`` (N outputs
    per source, result shape ``(S * N,)`` in source-major order). Sources are embedded once.
    """
    if outputs.ndim == 4:
        outputs = outputs.unsqueeze(1)
    s, n = outputs.shape[:2]
    if sources.shape[0] != s:
        raise ValueError(f"{sources.shape[0]} sources but {s} groups of outputs")
    e_src = embed(id_critic, sources, batch_size)  # (S, D)
    e_out = embed(id_critic, outputs.flatten(0, 1), batch_size)  # (S*N, D)
    return (e_out * e_src.repeat_interleave(n, 0)).sum(1)


# --------------------------------------------------------------------------------------------------
# reconstruction quality
# --------------------------------------------------------------------------------------------------
def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] in float64, clamped (what a saved uint8 image would hold, minus rounding)."""
    return ((x.double() + 1) / 2).clamp(0, 1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB ``(B,)`` between images in [-1, 1], computed on the [0, 1] scale (peak 1).

    Identical images give ``inf``.
    """
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    mse = (_to_unit(x) - _to_unit(y)).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse)).float()


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``."""
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim_index(mu_a: torch.Tensor, mu_b: torch.Tensor, e_aa: torch.Tensor, e_bb: torch.Tensor,
               e_ab: torch.Tensor, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """The SSIM formula on local moments (windowed means of a, b, a², b², ab; dynamic range 1), elementwise:
    ``(2 μa μb + C1)(2 σab + C2) / ((μa² + μb² + C1)(σa² + σb² + C2))``, C1 = k1², C2 = k2²."""
    var_a = e_aa - mu_a ** 2
    var_b = e_bb - mu_b ** 2
    cov = e_ab - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity ``(B,)`` (Wang et al. 2004) between images in [-1, 1].

    Computed on the [0, 1] scale (dynamic range L = 1) in float64 with a separable Gaussian window (11,
    σ = 1.5), "valid" filtering (no padding), per channel, averaged over channels and positions:
    ``SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))``, C1 = (k1 L)², C2 = (k2 L)².
    Images smaller than the window use a window of the image's smaller side.
    """
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    a, b = _to_unit(x), _to_unit(y)  # float64: E[x²] − μ² cancels badly in float32 next to C2 = 9e-4
    h, w = a.shape[-2:]
    size = min(window, h, w)
    g = gaussian_window(size, sigma).to(a.device)

    def band(n: int) -> torch.Tensor:  # (n - size + 1, n): "valid" 1-D filtering as a matrix
        m = torch.zeros(n - size + 1, n, dtype=torch.float64, device=a.device)
        for i in range(n - size + 1):
            m[i, i:i + size] = g
        return m

    # separable Gaussian filtering as two float64 matrix products (BLAS; much faster than float64 convs)
    maps = torch.stack([a, b, a * a, b * b, a * b])  # (5, B, C, H, W)
    return ssim_index(*(band(h) @ maps @ band(w).T), k1, k2).flatten(1).mean(1).float()


# --------------------------------------------------------------------------------------------------
# uncertainty over the test faces
# --------------------------------------------------------------------------------------------------
#: resamples and confidence level of :func:`bootstrap_interval` as the evaluation report uses them
BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_LEVEL = 0.95


def _table(t: torch.Tensor | Sequence) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float64)
    return t[None] if t.dim() == 1 else t


def bootstrap_interval(statistic: Callable[..., torch.Tensor], *tables: torch.Tensor | Sequence,
                       threshold: float = 0.0, draws: int = BOOTSTRAP_DRAWS, level: float = BOOTSTRAP_LEVEL,
                       seed: int = 0) -> dict[str, float]:
    """How much does a score depend on which faces were tested? ``tables``: (T, F) per-face values on the
    same F faces (one row per target, say; a 1-D input is one row). ``statistic(*tables)`` maps tables of
    shape (R, T, F) to (R,) — e.g. ``lambda a: a.mean((-2, -1))``. The faces (columns) are resampled with
    replacement ``draws`` times, the same faces in every table (so a comparison of two methods on the
    same faces is paired: a face hard for one is hard for the other). Returns ``{"value"`` (on the faces
    as tested), ``"low", "high"`` (the ``level`` percentile interval), ``"share_below"`` (of the resamples
    below ``threshold``), ``"threshold", "n_faces", "draws", "level"}``. The interval covers the choice
    of faces only, not the start-noise seeds or the critics' own errors."""
    ts = [_table(t) for t in tables]
    if not ts or any(t.dim() != 2 for t in ts) or len({t.shape[1] for t in ts}) != 1:
        raise ValueError(f"bootstrap_interval needs (T, F) tables of the same F faces, got "
                         f"{[tuple(t.shape) for t in ts]}")
    n = ts[0].shape[1]
    if n < 2:
        raise ValueError(f"bootstrap_interval needs at least 2 faces, got {n}")
    if not 0.0 < level < 1.0 or draws < 1:
        raise ValueError(f"bootstrap_interval needs 0 < level < 1 and draws >= 1, got {level}, {draws}")
    idx = torch.randint(0, n, (draws, n), generator=torch.Generator().manual_seed(seed))
    stats = statistic(*[t[:, idx].transpose(0, 1) for t in ts]).reshape(draws)  # (draws, T, F) each
    tail = (1.0 - level) / 2
    low, high = torch.quantile(stats, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return {"value": float(statistic(*[t[None] for t in ts]).reshape(())), "low": low, "high": high,
            "share_below": float((stats < threshold).double().mean()), "threshold": float(threshold),
            "n_faces": int(n), "draws": int(draws), "level": float(level)}


def paired_bootstrap(a: torch.Tensor | Sequence, b: torch.Tensor | Sequence, **kw: Any) -> dict[str, float]:
    """:func:`bootstrap_interval` of ``mean(a) − mean(b)`` for two methods' (T, F) per-face values on the
    same faces (e.g. each face's mean absolute age error, one row per target: every row weighs equally,
    as in the overall Age MAE). ``share_below``: of the resamples in which ``a`` is below ``b``."""
    a, b = _table(a), _table(b)
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap needs two equally shaped (T, F) tables, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    return bootstrap_interval(lambda x, y: (x - y).mean((-2, -1)), a, b, **kw)
