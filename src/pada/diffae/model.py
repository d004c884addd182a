"""``DiffAE``: the diffusion autoencoder with the official method names.

Holds the network (:class:`pada.networks.unet.DiffAEUNet`, semantic encoder + conditional UNet)
and a base :class:`pada.diffusion.Schedule` (T=1000 linear). Methods follow the official
``LitModel``: :meth:`encode` (x0 -> z_sem), :meth:`encode_stochastic` (DDIM inversion x0 -> x_T
given z), :meth:`render` (DDIM sampling x_T -> x0 given z).

**Image range.** pada uses [-1, 1] everywhere: ``render`` returns the raw sampler output in
[-1, 1]. The official ``LitModel.render`` returns ``(x + 1) / 2`` in [0, 1]; convert with
``(img + 1) / 2`` when comparing with official notebooks.

``encode_stochastic`` and ``render`` run under :func:`torch.inference_mode` and return ordinary
tensors (cloned out of inference mode, so they can feed later autograd code). ``encode``,
``eps``, ``predict_x0`` and ``loss`` follow the caller's autograd mode (PADA differentiates
through them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pada import diffusion as D
from pada.errors import CheckpointError, PadaError
from pada.networks.checkpoint import load_diffae
from pada.networks.config import DiffAEConfig
from pada.networks.unet import DiffAEUNet

PRECISIONS = ("fp32", "bf16")  # DiffAE.set_precision

def _randn(shape: torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal noise drawn with ``generator`` (on its device), moved to ``like``'s device."""
    gdev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=gdev, dtype=torch.float32).to(
        like.device, like.dtype
    )


def _carries_config(path: Path) -> bool:
    """True for a pada safetensors file with its DiffAE config in the metadata."""
    if path.suffix != ".safetensors":
        return False
    from pada.networks.checkpoint import read_safetensors_metadata

    meta = read_safetensors_metadata(path)
    return bool(meta and "config" in meta)


class DiffAE(nn.Module):
    """Diffusion autoencoder (Preechakul et al., CVPR 2022) around a :class:`DiffAEUNet`.

    Args:
        unet: the network. schedule: base diffusion schedule (default: T=1000 linear betas).
    """

    def __init__(self, unet: DiffAEUNet, schedule: D.Schedule | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.schedule = schedule if schedule is not None else D.linear_schedule()
        self.precision = "fp32"
        self.__dict__["_compiled"] = None  # not a submodule: the state_dict keeps the plain keys

    @property
    def config(self) -> DiffAEConfig:
        return self.unet.config

    @property
    def T(self) -> int:  # noqa: N802
        return self.schedule.T

    # ---- network ---------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Semantic encoder: x (B, 3, H, W) in [-1, 1] -> z_sem (B, style)."""
        return self.unet.encode(x)

    def eps(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """ε_θ(x_t, t, z): (B, 3, H, W), (B,) original t, (B, style) -> (B, 3, H, W).

        A v-prediction network (``config.prediction == "v"``) is converted to ε here, so every caller
        (samplers, inversion, Eq. 3, the PADA losses) works on ε whatever the network predicts.
        """
        return self._to_eps(x_t, t, self._predict(self.unet, x_t, t, z))

    def _predict(self, net, x_t: Tensor, t: Tensor, z: Tensor, coarse: Tensor | None = None) -> Tensor:
        """The network's raw output (ε or v) for x_t. A ``coarse_residual`` network models x0 - c, with c
        the coarse image upsampled to x_t: it reads ``x_t - sqrt(ᾱ_t)·c`` and a v output is shifted by
        ``-sqrt(1-ᾱ_t)·c`` (v of x0 = v of x0 - c, minus that), an ε output needs no shift. So the forward
        process, and every caller that works on ε, stay as they are."""
        kw = {} if coarse is None else {"coarse": coarse}
        if not self.unet.config.coarse_residual:
            return net(x_t, t, z, **kw)
        if coarse is None:
            coarse = kw["coarse"] = self.unet.coarse_image(z)
        c = F.interpolate(coarse.float(), size=x_t.shape[-2:], mode="bilinear", align_corners=False)
        sqrt_a, sqrt_1ma = D.alpha_sigma(self.schedule, t, x_t)
        out = net((x_t.float() - sqrt_a * c).to(x_t.dtype), t, z, **kw)
        if self.unet.config.prediction == "v":
            out = out.float() - sqrt_1ma * c
        return out

    def _to_eps(self, x_t: Tensor, t: Tensor, out: Tensor) -> Tensor:
        if self.unet.config.prediction == "v":
            return D.eps_from_v(self.schedule, x_t, t, out)
        return out

    def _x0_from_output(self, x_t: Tensor, t: Tensor, out: Tensor) -> Tensor:
        """The clean image x̂0 (Eq. 3, clamped to [-1, 1]) that a raw network output (ε or v) implies."""
        return D.predict_x0(self.schedule, x_t, t, self._to_eps(x_t, t, out)).clamp(-1.0, 1.0)

    def _model_fn(self, z: Tensor, bf16: bool):
        """ε̂(x, t) for the sampling loops: the compiled network when :meth:`compile_unet` was called,
        under bfloat16 autocast when ``bf16`` or ``precision == "bf16"`` (the DDIM math stays float32)."""
        net = self._compiled if self._compiled is not None else self.unet
        kw = {}
        if getattr(self.unet, "coarse", None) is not None:  # depends on z only: once per loop, not per step
            kw["coarse"] = self.unet.coarse_image(z)
        if not (bf16 or self.precision == "bf16"):
            return lambda x, t: self._to_eps(x, t, self._predict(net, x, t, z, **kw))
        dev = z.device.type

        def fn(x: Tensor, t: Tensor) -> Tensor:
            with torch.autocast(device_type=dev, dtype=torch.bfloat16):
                out = self._predict(net, x, t, z, **kw)
            return self._to_eps(x, t, out.float())

        return fn

    # ---- execution options -------------------------------------------------------------------------
    def set_precision(self, precision: str) -> DiffAE:
        """``"fp32"`` (default; the official numerics) or ``"bf16"``: run the network of
        :meth:`encode_stochastic` and :meth:`render` under bfloat16 autocast (GroupNorm, softmax and the
        DDIM update stay float32). bf16 pays off on GPUs and CPUs with native bf16 (AVX512-BF16/AMX);
        it is not within the fp32 fixture tolerances."""
        if precision not in PRECISIONS:
            raise PadaError(f"precision {precision!r} unknown (one of {', '.join(PRECISIONS)})")
        self.precision = precision
        return self

    def compile_unet(self, mode: str | None = None, backend: str = "inductor",
                     fullgraph: bool = True) -> DiffAE:
        """Use ``torch.compile(unet)`` in the sampling loops (:meth:`encode_stochastic`, :meth:`render`).

        The loops call the network with fixed shapes, so one graph serves every step;
        ``mode="reduce-overhead"`` adds CUDA graphs on a GPU (the loops do no host work per step).
        Compiling costs tens of seconds on first use: worth it for many calls on a GPU, not for one CLI call
        on a CPU. ``backend="eager"`` only traces (used by the tests). ``unet`` itself is left unchanged.
        """
        self.__dict__["_compiled"] = torch.compile(self.unet, mode=mode, backend=backend, fullgraph=fullgraph,
                                                   dynamic=False)
        return self

    # ---- diffusion -------------------------------------------------------------------------------
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(ᾱ_t)·x0 + sqrt(1 - ᾱ_t)·ε (paper Eq. 1)."""
        return D.q_sample(self.schedule, x0, t, noise)

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x̂0 from x_t and ε̂ (paper Eq. 3); differentiable, not clamped."""
        return D.predict_x0(self.schedule, x_t, t, eps)

    def encode_stochastic(
        self,
        x: Tensor,
        z: Tensor,
        T: int | str = 250,
        clip: bool = True,
        progress: bool = False,  # noqa: N803
        bf16: bool = False,
        sampler: str = "ddim",
    ) -> Tensor:
        """Stochastic encoding x0 -> x_T by deterministic inversion with ``T`` steps (DDIM by default).

        x: (B, 3, H, W) in [-1, 1]; z: (B, style) from :meth:`encode`. Returns (B, 3, H, W).
        ``bf16``: run the network under bfloat16 autocast (as :meth:`set_precision`).
        ``sampler``: ``"ddim"`` (official) or ``"multistep"`` (2nd-order ODE solver on even log-SNR steps,
        :mod:`pada.diffusion.samplers`); ``T`` may also be a section such as ``"logsnr10"``.
        """
        with torch.inference_mode():
            out = D.samplers.invert(sampler, self._model_fn(z, bf16), x, T, clip=clip, progress=progress,
                                    schedule=self.schedule)
        return out.clone()

    def render(
        self,
        x_T: Tensor,  # noqa: N803
        z: Tensor,
        T: int | str = 25,  # noqa: N803
        eta: float = 0.0,
        clip: bool = True,
        generator: torch.Generator | None = None,
        bf16: bool = False,
        progress: bool = False,
        sampler: str = "ddim",
        x0_guard: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> Tensor:
        """Decode x_T with semantic code z by sampling with ``T`` steps (DDIM by default).

        Args:
            x_T: (B, 3, H, W) start noise (or the output of :meth:`encode_stochastic`).
            z: (B, style). eta: DDIM η (needs ``generator`` when > 0; ``sampler="ddim"`` only).
            bf16: run the network under bfloat16 autocast (diffusion math stays float32).
            sampler: ``"ddim"`` (official) or ``"multistep"`` (2nd-order ODE solver on even log-SNR
                steps, :mod:`pada.diffusion.samplers`); ``T`` may also be a section such as ``"logsnr10"``.
            x0_guard: ``(x̂0 (B, 3, H, W) in [-1, 1], t (B,)) -> x̂0'``, applied at every step to the
                clean image the network predicts before the sampler uses it (the ε it implies is
                re-derived from x̂0'): a projection onto a set of allowed images, as the clamp to
                [-1, 1] is (e.g. :class:`pada.aging.guard.ToneGuard`). None = the plain sampler.
        Returns:
            (B, 3, H, W) image in [-1, 1] (official ``render`` returns (x+1)/2 instead).
        """
        with torch.inference_mode():
            fn = self._model_fn(z, bf16)
            if x0_guard is not None:
                fn = self._guarded(fn, x0_guard)
            out = D.samplers.sample(sampler, fn, x_T, T, eta=eta, clip=clip,
                                    generator=generator, progress=progress, schedule=self.schedule)
        return out.clone()

    def _guarded(self, fn, x0_guard: Callable[[Tensor, Tensor], Tensor]):
        """ε̂ whose implied x̂0 (clamped to [-1, 1]) has passed through ``x0_guard``."""

        def guarded(x: Tensor, t: Tensor) -> Tensor:
            x0 = D.predict_x0(self.schedule, x, t, fn(x, t)).clamp(-1.0, 1.0)
            sqrt_a, sqrt_1ma = D.alpha_sigma(self.schedule, t, x)
            return (x.float() - sqrt_a * x0_guard(x0, t)) / sqrt_1ma

        return guarded

    def sample_noise(self, batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """(batch, 3, H, W) standard normal x_T drawn with ``generator``."""
        s = self.config.image_size
        like = torch.empty(0, device=device if device is not None else self.unet.out[2].weight.device)
        return _randn(torch.Size((batch, self.config.in_channels, s, s)), generator, like)

    def loss(self, x0: Tensor, generator: torch.Generator | None = None, t: Tensor | None = None) -> Tensor:
        """DiffAE training loss: ‖ε_θ(x_t, t, Enc(x0)) - ε‖² at t ~ U{0..T-1} (scalar, mean).

        The encoder is trained jointly through z, as in the official code.
        ``generator`` draws t and ε (None: torch's global RNG). A v-prediction network
        (``config.prediction == "v"``) is trained on ‖v_θ - v‖² with v = sqrt(ᾱ_t)ε - sqrt(1-ᾱ_t)x0.
        ``t``: (B,) int64 timesteps chosen by the caller instead of the uniform draw.
        A network with a coarse path adds its coarse term (see :meth:`loss_terms`).
        """
        return self.loss_terms(x0, generator, t)["total"]

    def loss_terms(
        self,
        x0: Tensor,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        diffusion_weight: float = 1.0,
        coarse_weight: float = 1.0,
        z_noise: float = 0.0,
        return_x0: bool = False,
    ) -> dict[str, Tensor]:
        """The training loss as named terms: ``"total"`` and ``"eps_mse"`` / ``"v_mse"`` (+ ``"coarse_mse"``).

        Networks with a coarse path (``config.coarse_size > 0``): ``coarse_mse`` = ‖coarse(z) - A(x0)‖²
        with A the area downsampling of x0 to ``coarse_size``; the UNet receives ``coarse(z)`` *detached*, so
        the coarse decoder and the encoder learn only to draw the image from z (an autoencoder) and the
        diffusion loss cannot turn the coarse image into a hidden feature map. ``z_noise`` adds Gaussian
        noise of that fraction of each code's std to z before the coarse decoder (a denoising autoencoder:
        nearby codes decode to nearby plausible images, which PADA relies on when it moves z).
        ``diffusion_weight=0`` skips the UNet (autoencoder pre-training of the coarse path).
        ``return_x0`` also returns, under ``"x0_pred"`` and ``"t"``, the clean image x̂0 (B, 3, H, W) that the
        network's prediction implies (Eq. 3, clamped to [-1, 1], in the graph) and the timesteps: for losses
        on x̂0 (``pada train diffae --feature-loss``), with the code ``"z"`` (in the graph) and, for a coarse
        path, the detached ``"coarse"`` image (for :meth:`chain_x0`); they are not loss terms.
        """
        cfg = self.unet.config
        z = self.unet.encode(x0)
        out: dict[str, Tensor] = {}
        total = x0.new_zeros(())
        coarse = None
        if cfg.coarse_size:
            zc = z
            if z_noise > 0:
                zc = z + z_noise * z.detach().std(dim=1, keepdim=True) * _randn(z.shape, generator, z)
            coarse = self.unet.coarse_image(zc)
            target = F.adaptive_avg_pool2d(x0, cfg.coarse_size)
            out["coarse_mse"] = (coarse.float() - target.float()).square().mean()
            total = total + coarse_weight * out["coarse_mse"]
            coarse = coarse.detach()
        if diffusion_weight > 0:
            if t is None:
                t = D.sample_timesteps(x0.shape[0], self.T, generator).to(x0.device)
            noise = _randn(x0.shape, generator, x0)
            x_t = D.q_sample(self.schedule, x0, t, noise)
            if cfg.prediction == "v":
                target = D.v_target(self.schedule, x0, t, noise)
            else:
                target = noise
            pred = self._predict(self.unet, x_t, t, z, coarse=coarse).float()
            mse = (pred - target.float()).square().mean()
            out[f"{cfg.prediction}_mse"] = mse
            total = total + diffusion_weight * mse
            if return_x0:
                out["x0_pred"] = self._x0_from_output(x_t, t, pred)
                out["t"] = t
                out["z"] = z
                if coarse is not None:
                    out["coarse"] = coarse
        out["total"] = total
        return out

    def chain_x0(self, x0_pred: Tensor, z: Tensor, t: Tensor, t_low: int,
                 generator: torch.Generator | None = None,
                 coarse: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step of the sampling chain, for training: the clean image the network implies after it has
        re-noised its own prediction. ``x0_pred`` (B, 3, H, W), the x̂0 predicted at ``t`` (B,), is detached,
        noised again to t2 ~ U{t_low..t-1} with fresh ε, and predicted from there with the same code ``z``
        (and ``coarse`` image). Returns (x̂0 at t2, clamped to [-1, 1] and in the graph through ``z`` and
        the UNet; t2). At sampling time the mid-t steps see exactly such an input: the detail of x_t2 comes
        from the network's earlier, blurry x̂0, not from a real image, so only z can put the face back.
        Rows with t <= t_low are re-noised to t_low (callers pass rows with t > t_low)."""
        t = t.long()
        span = (t - t_low).clamp_min(1)
        gdev = generator.device if generator is not None else None
        u = torch.rand(t.shape, generator=generator, device=gdev)
        t2 = (t_low + (u.to(t.device) * span).long()).clamp(max=self.T - 1)
        x_t2 = D.q_sample(self.schedule, x0_pred.detach(), t2, _randn(x0_pred.shape, generator, x0_pred))
        pred = self._predict(self.unet, x_t2, t2, z, coarse=coarse).float()
        return self._x0_from_output(x_t2, t2, pred), t2

    # ---- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike,
        preset: str | DiffAEConfig | None = None,
        trust_pickle: bool = False,
        device: torch.device | str = "cpu",
        channels_last: bool | None = None,
    ) -> DiffAE:
        """Load from a file (pada safetensors or official ``.ckpt`` + ``preset``) or from a name in
        the weights registry (``pada.weights``; its ``recipe.preset`` supplies the preset of files that
        carry no config; a pada file's own config, e.g. ``prediction="v"``, always wins).

        ``channels_last`` (default: on for CPU) stores the network in ``torch.channels_last``,
        1.3-1.5x faster on CPU with the same outputs (see docs/diffae.md, benchmark).
        """
        path = Path(path_or_name).expanduser()
        if not path.is_file():
            from pada import weights

            name = str(path_or_name)
            if name not in weights.registry():
                raise CheckpointError(f"{name}: neither a checkpoint file nor a registered weight name")
            path = weights.resolve(name)
            if preset is None and not _carries_config(path):  # official files: the registry says which
                preset = weights.get(name).recipe.get("preset")
        unet = load_diffae(path, preset=preset, trust_pickle=trust_pickle, device=device)
        if channels_last is None:
            channels_last = torch.device(device).type == "cpu"
        unet.to_channels_last(channels_last)
        return cls(unet).eval()

    @contextlib.contextmanager
    def plain(self):
        """Context in which the network runs the literal official forward (reference path)."""
        self.unet.set_plain(True)
        try:
            yield self
        finally:
            self.unet.set_plain(False)
