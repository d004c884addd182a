"""Random differentiable views of images for the critics of the PADA losses (``LossConfig.augment``).

An age critic can be fooled by a pattern tied to the exact pixel grid it sees (a fine "wrinkle" texture).
Scoring x̂0 through a random view — down-and-up resizing, a Gaussian blur, a shift of a pixel or two and a
little noise — makes such patterns earn nothing, while real changes of shape, shading and hair colour
survive every view. One view is drawn per row and applied identically to all images of that row (source,
target, reference), so the losses still compare like with like.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_views(batch: int, strength: float, generator: torch.Generator | None,
               device) -> dict[str, torch.Tensor]:
    """Per-row view parameters (B,) for :func:`apply_view`: scale, blur sigma, shift (dx, dy), noise std."""
    gdev = generator.device if generator is not None else torch.device("cpu")

    def u(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(batch, generator=generator, device=gdev)).to(device)

    # the down-and-up resize is one resolution for the whole batch (one interpolate call); the rest is per row
    return {"scale": u(1.0 - 0.5 * strength, 1.0)[:1], "sigma": u(0.0, 1.2 * strength),
            "dx": u(-2.0 * strength, 2.0 * strength), "dy": u(-2.0 * strength, 2.0 * strength),
            "noise": u(0.0, 0.03 * strength), "row": torch.arange(batch),
            "noise_seed": torch.randint(0, 2**31 - 1, (1,), generator=generator, device=gdev).to("cpu")}


def subset(view: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The views of the rows selected by ``mask`` (B,) bool (batch-wide entries kept as they are)."""
    return {k: v if k in ("scale", "noise_seed") else v[mask.to(v.device)] for k, v in view.items()}


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-row separable Gaussian blur (5 taps) of x (B, C, H, W) with sigma (B,) (0 = identity)."""
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (taps[None] / s) ** 2)
    k = k / k.sum(-1, keepdim=True)  # (B, 5)
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kh = k.repeat_interleave(c, 0)[:, None, None, :]  # (B*C, 1, 1, 5)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kh, groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kh.transpose(-1, -2), groups=b * c)
    return y.reshape(b, c, h, w)


def apply_view(x: torch.Tensor, view: dict[str, torch.Tensor]) -> torch.Tensor:
    """The view of x (B, C, H, W) in [-1, 1]: resize down by ``scale`` and back, blur, shift, add noise."""
    b, _, h, w = x.shape
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = view["dx"].to(x.dtype) * 2.0 / w
    theta[:, 1, 2] = view["dy"].to(x.dtype) * 2.0 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    small = max(8, int(round(h * float(view["scale"][0]))))
    if small < h:
        y = F.interpolate(y, size=(small, small), mode="bilinear", antialias=True, align_corners=False)
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
    y = _blur(y, view["sigma"])
    seed = int(view["noise_seed"])
    noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(seed + int(r)))
                         for r in view["row"]]).to(x.device, x.dtype)  # per row: subsets see the same noise
    return y + view["noise"].to(x.dtype)[:, None, None, None] * noise
