"""The DiffAE network: semantic encoder + conditional UNet, key for key with the official code.

``DiffAEUNet(config)`` builds the official ``BeatGANsAutoencModel`` (Preechakul et al., CVPR 2022,
repository ``phizaz/diffae``) with the same module tree, so its ``state_dict`` has exactly the
official keys and shapes (``time_embed.time_embed.*``, ``input_blocks.*``, ``middle_block.*``,
``output_blocks.*``, ``out.*``, ``encoder.*``). The code is written from the published description
and the fixture notes, not copied.

Two execution paths compute the same function:

* the default *fast* path: attention through :func:`torch.nn.functional.scaled_dot_product_attention`
  (fp32 softmax, same scaling as the legacy ``QKVAttentionLegacy``), the two conditioning products
  of each ResBlock folded into one per-channel affine after an affine-free GroupNorm, SiLU of the
  time/style vectors computed once per forward instead of once per block, in-place activations
  when no gradient is recorded;
* the *plain* path (``set_plain(True)``): a literal transcription of the official forward
  (einsum attention, GroupNorm with affine, ``h * (1 + s) + b`` then ``h * (1 + s_c)``). It exists
  as a reference for tests and for ``benchmarks/bench_diffae.py``.

Both agree within the fixture tolerances (``tests/test_conformance_diffae.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from pada.errors import PadaError
from pada.networks.config import DiffAEConfig

GN_EPS = 1e-5


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of original timesteps (official ``timestep_embedding``).

    Args:
        t: (B,) integer or float timesteps 0..999 (not rescaled).
        dim: embedding size (the model's ``model_channels``).
    Returns:
        (B, dim) float32 ``[cos(t·f), sin(t·f)]`` with ``f_i = exp(-ln(max_period)·i/half)``,
        ``half = dim // 2`` (the divisor is ``half``; cos comes first); zero-padded if dim is odd.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _num_groups(channels: int, where: str) -> int:
    """Official ``GroupNorm32(min(32, C), C)``; widths above 32 must be multiples of 32."""
    if channels > 32 and channels % 32:
        raise PadaError(
            f"DiffAEConfig: GroupNorm at {where} gets {channels} channels; widths above 32 must be "
            "multiples of 32 (official GroupNorm32(min(32, C), C))"
        )
    return min(32, channels)


def _norm(channels: int, where: str) -> nn.GroupNorm:
    return nn.GroupNorm(_num_groups(channels, where), channels, eps=GN_EPS)


def _gn(norm: nn.GroupNorm, x: Tensor, affine: bool = True) -> Tensor:
    """GroupNorm computed in float32 and cast back (official ``GroupNorm32``)."""
    w, b = (norm.weight, norm.bias) if affine else (None, None)
    if x.dtype == torch.float32:
        return F.group_norm(x, norm.num_groups, w, b, norm.eps)
    return F.group_norm(x.float(), norm.num_groups, w, b, norm.eps).to(x.dtype)


def _silu(x: Tensor) -> Tensor:
    """SiLU, in place when autograd is off (the input is then a fresh temporary)."""
    return F.silu(x, inplace=not torch.is_grad_enabled())


class ResBlock(nn.Module):
    """Official ``ResBlock`` (model/blocks.py) with two conditions (time, style) or none.

    Decoder/UNet form (``use_condition=True``)::

        h = conv3(SiLU(GN(x)))                     # in_layers (resample between SiLU and conv)
        h = GN(h) * (1 + s_t) + b_t                # emb_layers(time_emb) -> [s_t, b_t]
        h = h * (1 + s_c)                          # cond_emb_layers(z) -> s_c (no shift)
        h = conv3(dropout(SiLU(h)))                # out_layers
        return skip(x) + h

    Encoder form (``use_condition=False``): ``skip(x) + conv3(SiLU(GN(x)))`` with no out_layers.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        emb_channels: int,
        cond_channels: int,
        dropout: float,
        use_condition: bool,
        up: bool = False,
        down: bool = False,
        has_lateral: bool = False,
        where: str = "",
    ) -> None:
        super().__init__()
        self.use_condition = use_condition
        self.up, self.down = up, down
        self.has_lateral = has_lateral
        self.out_channels = out_channels
        self.plain = False
        self.in_layers = nn.Sequential(
            _norm(channels, where + ".in_layers.0"),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        if use_condition:
            self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
            self.cond_emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(cond_channels, out_channels))
            self.out_layers = nn.Sequential(
                _norm(out_channels, where + ".out_layers.0"),
                nn.SiLU(),
                nn.Dropout(p=dropout),
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
            )
            nn.init.zeros_(self.out_layers[3].weight)  # official zero_module
            nn.init.zeros_(self.out_layers[3].bias)
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x: Tensor) -> Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def forward(
        self,
        x: Tensor,
        emb: Tensor | None = None,
        cond: Tensor | None = None,
        lateral: Tensor | None = None,
        emb_act: Tensor | None = None,
        cond_act: Tensor | None = None,
    ) -> Tensor:
        """x: (B, C_in[-lateral], H, W); emb: (B, E) time vector; cond: (B, S) style z.

        ``emb_act``/``cond_act`` are ``SiLU(emb)``/``SiLU(cond)`` precomputed once by the UNet
        (fast path); when absent they are computed here.
        """
        if self.has_lateral:
            x = torch.cat([x, lateral], dim=1)
        norm_in, conv_in = self.in_layers[0], self.in_layers[2]
        if self.plain:
            h = F.silu(_gn(norm_in, x))
        else:
            h = _silu(_gn(norm_in, x))
        if self.up or self.down:
            h = self._resample(h)
            x = self._resample(x)
        h = conv_in(h)
        if self.use_condition:
            h = self._conditioned_out(h, emb, cond, emb_act, cond_act)
        skip = self.skip_connection(x)
        if not self.plain and not torch.is_grad_enabled():
            return h.add_(skip)
        return skip + h

    def _conditioned_out(
        self, h: Tensor, emb: Tensor, cond: Tensor, emb_act: Tensor | None, cond_act: Tensor | None
    ) -> Tensor:
        norm_out, drop, conv_out = self.out_layers[0], self.out_layers[2], self.out_layers[3]
        if self.plain:
            emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
            cond_out = self.cond_emb_layers(cond).to(h.dtype)[..., None, None]
            scale, shift = emb_out.chunk(2, dim=1)
            h = _gn(norm_out, h)
            h = h * (1 + scale) + shift
            h = h * (1 + cond_out)
            h = F.silu(h)
        else:
            if emb_act is None:
                emb_act = F.silu(emb)
            if cond_act is None:
                cond_act = F.silu(cond)
            scale, shift = self.emb_layers[1](emb_act).chunk(2, dim=1)  # (B, C) each
            s_c = self.cond_emb_layers[1](cond_act)  # (B, C)
            # GN(h)·w + b, then ·(1+s)+shift, then ·(1+s_c)  ==  n·A + B  with n the affine-free norm
            g = (1 + scale) * (1 + s_c)
            a = norm_out.weight * g
            b = (norm_out.bias * (1 + scale) + shift) * (1 + s_c)
            n = _gn(norm_out, h, affine=False)
            h = torch.addcmul(b.to(n.dtype)[..., None, None], n, a.to(n.dtype)[..., None, None])
            h = _silu(h)
        return conv_out(drop(h))


class AttentionBlock(nn.Module):
    """Official ``AttentionBlock`` with ``QKVAttentionLegacy`` (heads split first, then q, k, v).

    ``x + proj_out(attn(qkv(GN(x))))`` over the H·W positions; q and k are scaled by ch^(-1/4)
    each (the same as SDPA's 1/sqrt(ch)); softmax in float32.
    """

    def __init__(self, channels: int, num_heads: int, num_head_channels: int, where: str = "") -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise PadaError(
                    f"DiffAEConfig: {channels} channels not divisible by head size {num_head_channels}"
                )
            self.num_heads = channels // num_head_channels
        if channels % self.num_heads:
            raise PadaError(f"DiffAEConfig: {channels} channels not divisible by {self.num_heads} heads")
        self.plain = False
        self.norm = _norm(channels, where + ".norm")
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)  # official zero_module
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        b, c, hgt, wid = x.shape
        heads, ch = self.num_heads, c // self.num_heads
        if self.plain:
            xs = x.reshape(b, c, hgt * wid)
            qkv = self.qkv(_gn(self.norm, xs))  # (B, 3C, T)
            q, k, v = qkv.reshape(b * heads, 3 * ch, -1).split(ch, dim=1)
            scale = 1 / math.sqrt(math.sqrt(ch))
            w = torch.einsum("bct,bcs->bts", q * scale, k * scale)
            w = torch.softmax(w.float(), dim=-1).type(w.dtype)
            a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, -1)
            return (xs + self.proj_out(a)).reshape(b, c, hgt, wid)
        # fast path: GroupNorm on the 4-D tensor, then a (B, T, C) token view (free for channels_last)
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        n = _gn(self.norm, x).permute(0, 2, 3, 1).reshape(b, hgt * wid, c)  # (B, T, C)
        qkv = F.linear(n, self.qkv.weight.squeeze(-1), self.qkv.bias)  # (B, T, 3C)
        # legacy channel order: [head][q|k|v][ch]
        qkv = qkv.reshape(b, -1, heads, 3, ch).permute(3, 0, 2, 1, 4)  # (3, B, heads, T, ch)
        q, k, v = qkv.unbind(0)
        if q.dtype != torch.float32 and not torch.is_autocast_enabled(q.device.type):
            q, k, v = q.float(), k.float(), v.float()
        a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, ch), softmax in fp32
        a = a.transpose(1, 2).reshape(b, -1, c).to(n.dtype)  # (B, T, C)
        out = F.linear(a, self.proj_out.weight.squeeze(-1), self.proj_out.bias)  # (B, T, C)
        out = out.reshape(b, hgt, wid, c).permute(0, 3, 1, 2)  # (B, C, H, W), channels_last strides
        if not channels_last:
            out = out.contiguous()
        if not torch.is_grad_enabled():
            return out.add_(x)
        return x + out


class Block(nn.ModuleList):
    """Official ``TimestepEmbedSequential``: a list of layers, each given what it needs."""

    def forward(self, x: Tensor, *conditions: Tensor | None) -> Tensor:  # type: ignore[override]
        """``conditions`` (emb, cond, lateral, emb_act, cond_act, all optional) go to each
        :meth:`ResBlock.forward`; the other layers take ``x`` alone."""
        for layer in self:
            x = layer(x, *conditions) if isinstance(layer, ResBlock) else layer(x)
        return x


class TimeEmbed(nn.Module):
    """Official ``TimeStyleSeperateEmbed``: an MLP on the sinusoid; the style path is the identity."""

    def __init__(self, time_channels: int, out_channels: int) -> None:
        super().__init__()
        self.time_embed = nn.Sequential(
            nn.Linear(time_channels, out_channels), nn.SiLU(), nn.Linear(out_channels, out_channels)
        )

    def forward(self, t_emb: Tensor) -> Tensor:
        return self.time_embed(t_emb)


class SemanticEncoder(nn.Module):
    """Official ``BeatGANsEncoderModel`` (pool 'adaptivenonzero', no time condition).

    ``forward(x0: (B, C, H, W) in [-1, 1]) -> z: (B, enc_out_channels)``.
    """

    def __init__(self, cfg: DiffAEConfig) -> None:
        super().__init__()
        mc = cfg.model_channels
        mult = cfg.encoder_channel_mult
        attn_res = cfg.encoder_attention_resolutions
        ch = int(mult[0] * mc)
        self.input_blocks = nn.ModuleList([Block([nn.Conv2d(cfg.in_channels, ch, 3, padding=1)])])
        res = cfg.image_size
        for level, m in enumerate(mult):
            for _ in range(cfg.enc_num_res_block):
                where = f"encoder.input_blocks.{len(self.input_blocks)}"
                out = int(m * mc)
                layers: list[nn.Module] = [ResBlock(ch, out, 0, 0, 0.0, False, where=where + ".0")]
                ch = out
                if res in attn_res:
                    layers.append(AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels, where + ".1"))
                self.input_blocks.append(Block(layers))
            if level != len(mult) - 1:
                where = f"encoder.input_blocks.{len(self.input_blocks)}.0"
                self.input_blocks.append(Block([ResBlock(ch, ch, 0, 0, 0.0, False, down=True, where=where)]))
                res //= 2
        self.middle_block = Block(
            [
                ResBlock(ch, ch, 0, 0, 0.0, False, where="encoder.middle_block.0"),
                AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels, "encoder.middle_block.1"),
                ResBlock(ch, ch, 0, 0, 0.0, False, where="encoder.middle_block.2"),
            ]
        )
        self.out = nn.Sequential(
            _norm(ch, "encoder.out.0"),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(ch, cfg.enc_out_channels - int(cfg.coarse_pca), 1),  # + k eigenface entries
            nn.Flatten(),
        )
        self.plain = False

    def forward(self, x: Tensor) -> Tensor:
        h = x.to(self.out[3].weight.dtype)
        for block in self.input_blocks:
            h = block(h)
        h = self.middle_block(h)
        h = F.silu(_gn(self.out[0], h))
        if self.plain:
            h = self.out[2](h)
            return self.out[4](self.out[3](h))
        h = h.mean(dim=(2, 3))  # global average pool, then the 1x1 conv as a Linear
        return F.linear(h, self.out[3].weight.flatten(1), self.out[3].bias)


class CoarseDecoder(nn.Module):
    """The coarse image path of a pada-only ``coarse_size`` network (DiffuseVAE-style).

    ``z (B, S) -> (B, 3, s, s)`` image in about [-1, 1] with ``s = coarse_size``: a linear map to a 4×4
    feature map, then (nearest ×2 upsampling, 3×3 conv, GroupNorm, SiLU) stages up to ``s``, and a 3×3
    conv to RGB. It is trained to reproduce the area-downsampled input (``pada.diffae.DiffAE.loss``), so
    it can only draw what z holds, at low resolution; :meth:`DiffAEUNet.forward` upsamples it
    (bilinear) to the image size and appends it to the UNet input.

    With ``coarse_pca = k`` the last k entries of z are an eigenface code (:class:`EigenfaceCode`) and the
    output is its exact PCA reconstruction plus the learned path, whose last convolution starts at zero.
    """

    def __init__(self, cfg: DiffAEConfig) -> None:
        super().__init__()
        size, width = int(cfg.coarse_size), int(cfg.coarse_channels)
        n_up = int(math.log2(size)) - 2
        self.width = width
        self.fc = nn.Linear(cfg.enc_out_channels, width * 16)
        layers: list[nn.Module] = []
        ch = width
        for i in range(n_up):
            out = max(width // 2 ** max(0, i - 1), 32) if i else width
            layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch, out, 3, padding=1),
                       _norm(out, f"coarse.up.{i}"), nn.SiLU()]
            ch = out
        self.up = nn.Sequential(*layers)
        self.to_rgb = nn.Conv2d(ch, cfg.in_channels, 3, padding=1)
        self.pca = EigenfaceCode(cfg) if cfg.coarse_pca else None
        if self.pca is not None:
            nn.init.zeros_(self.to_rgb.weight)
            nn.init.zeros_(self.to_rgb.bias)

    def forward(self, z: Tensor) -> Tensor:
        h = F.silu(self.fc(z).view(z.shape[0], self.width, 4, 4))
        out = self.to_rgb(self.up(h))
        if self.pca is not None:
            out = out + self.pca.decode(z[:, -self.pca.k:]).to(out.dtype)
        return out


class EigenfaceCode(nn.Module):
    """A fixed linear code of the coarse image (``DiffAEConfig.coarse_pca``): ``encode(x)`` gives the k
    principal-component coefficients of ``x`` area-downsampled to ``coarse_size`` (divided by one common
    scale, so the code has the same mean energy per entry as the learned part of z), ``decode`` maps them
    back. Buffers (saved with the weights): ``mean`` (3·s·s), ``basis`` (k, 3·s·s) with orthonormal rows,
    ``scale`` (1,). Until :meth:`fit` runs they hold a random orthonormal basis (small random-weight
    models still work end to end).
    """

    def __init__(self, cfg: DiffAEConfig) -> None:
        super().__init__()
        self.k, self.size = int(cfg.coarse_pca), int(cfg.coarse_size)
        d = cfg.in_channels * self.size * self.size
        g = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(d, self.k, generator=g))
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("basis", q.T.contiguous())
        self.register_buffer("scale", torch.ones(1))

    def encode(self, x: Tensor) -> Tensor:
        small = F.adaptive_avg_pool2d(x.float(), self.size).flatten(1)
        return (small - self.mean) @ self.basis.T / self.scale

    def decode(self, code: Tensor) -> Tensor:
        flat = self.mean + (code.float() * self.scale) @ self.basis
        return flat.view(code.shape[0], -1, self.size, self.size)

    @torch.no_grad()
    def fit(self, images: Tensor, code_rms: float) -> dict[str, float]:
        """Fit mean and basis to ``images`` (N, 3, H, W) in [-1, 1] (exact PCA by SVD) and set the scale
        so the code's root-mean-square entry is ``code_rms``. Returns the share of the coarse images'
        variance the k components keep and the reconstruction PSNR (dB) on ``images``."""
        small = F.adaptive_avg_pool2d(images.float(), self.size).flatten(1)
        mean = small.mean(0)
        _, s, vh = torch.linalg.svd(small - mean, full_matrices=False)
        if vh.shape[0] < self.k:
            raise PadaError(f"coarse_pca: {self.k} components need at least {self.k} images, "
                            f"got {len(images)}")
        self.mean.copy_(mean)
        self.basis.copy_(vh[: self.k])
        coef = (small - mean) @ self.basis.T
        self.scale.fill_(float(coef.square().mean().sqrt()) / max(code_rms, 1e-8))
        err = (small - mean - coef @ self.basis).square().mean()  # the code keeps coef exactly
        kept = float(s[: self.k].square().sum() / s.square().sum())
        return {"variance_kept": kept, "psnr": float(10 * torch.log10(4.0 / err.clamp_min(1e-12)))}



class DiffAEUNet(nn.Module):
    """DiffAE autoencoder network (official ``BeatGANsAutoencModel``), key for key.

    ``forward(x_t, t, z) -> ε̂`` is the conditional noise predictor ε_θ(x_t, t, z_sem) of DiffAE;
    ``encode(x0) -> z`` is the semantic encoder. The caller runs the encoder (no hidden
    ``cond=None`` fallback as in the official code).
    """

    def __init__(self, config: DiffAEConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        mc, emb_ch, style_ch = cfg.model_channels, cfg.embed_channels, cfg.enc_out_channels
        heads_up = cfg.num_heads if cfg.num_heads_upsample == -1 else cfg.num_heads_upsample
        self.gradient_checkpointing = cfg.gradient_checkpointing

        def res_block(cin: int, cout: int, where: str, **kw: bool) -> ResBlock:
            return ResBlock(cin, cout, emb_ch, style_ch, cfg.dropout, True, where=where, **kw)

        self.time_embed = TimeEmbed(mc, emb_ch)
        ch = int(cfg.channel_mult[0] * mc)
        input_ch = ch
        unet_in = cfg.in_channels * (2 if cfg.coarse_size else 1)  # + the upsampled coarse image
        self.input_blocks = nn.ModuleList([Block([nn.Conv2d(unet_in, ch, 3, padding=1)])])
        n_levels = len(cfg.channel_mult)
        lateral_chans: list[list[int]] = [[] for _ in range(n_levels)]
        lateral_chans[0].append(ch)
        self._input_levels: list[int] = [0]  # level of each input block (its output is a lateral)
        res = cfg.image_size
        for level, m in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                where = f"input_blocks.{len(self.input_blocks)}"
                out = int(m * mc)
                layers: list[nn.Module] = [res_block(ch, out, where + ".0")]
                ch = out
                if res in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels, where + ".1"))
                self.input_blocks.append(Block(layers))
                lateral_chans[level].append(ch)
                self._input_levels.append(level)
            if level != n_levels - 1:
                where = f"input_blocks.{len(self.input_blocks)}.0"
                self.input_blocks.append(Block([res_block(ch, ch, where, down=True)]))
                res //= 2
                lateral_chans[level + 1].append(ch)
                self._input_levels.append(level + 1)

        self.middle_block = Block(
            [
                res_block(ch, ch, "middle_block.0"),
                AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels, "middle_block.1"),
                res_block(ch, ch, "middle_block.2"),
            ]
        )

        self.output_blocks = nn.ModuleList()
        self._output_levels: list[int] = []
        for level, m in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                ich = lateral_chans[level].pop() if lateral_chans[level] else 0
                where = f"output_blocks.{len(self.output_blocks)}"
                out = int(m * mc)
                layers = [res_block(ch + ich, out, where + ".0", has_lateral=ich > 0)]
                ch = out
                if res in cfg.attention_resolutions:
                    layers.append(
                        AttentionBlock(ch, heads_up, cfg.num_head_channels, f"{where}.{len(layers)}")
                    )
                if level and i == cfg.num_res_blocks:
                    layers.append(res_block(ch, ch, f"{where}.{len(layers)}", up=True))
                    res *= 2
                self.output_blocks.append(Block(layers))
                self._output_levels.append(level)

        self.out = nn.Sequential(
            _norm(ch, "out.0"), nn.SiLU(), nn.Conv2d(input_ch, cfg.out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[2].weight)  # official zero_module
        nn.init.zeros_(self.out[2].bias)
        self.encoder = SemanticEncoder(cfg)
        self.coarse = CoarseDecoder(cfg) if cfg.coarse_size else None
        self.channels_last = False

    # ---- modes ----------------------------------------------------------------------------------
    def set_plain(self, plain: bool = True) -> DiffAEUNet:
        """Switch every block to the literal official forward (``True``) or the fast path."""
        for m in self.modules():
            if isinstance(m, (ResBlock, AttentionBlock, SemanticEncoder)):
                m.plain = plain
        return self

    @property
    def plain(self) -> bool:
        return self.encoder.plain

    def to_channels_last(self, enable: bool = True) -> DiffAEUNet:
        """Store conv weights and run activations in ``torch.channels_last`` (fast path only).

        oneDNN convolutions on CPU avoid layout reorders this way; outputs are returned in the
        default contiguous layout either way, and the state_dict keeps the same values.
        """
        fmt = torch.channels_last if enable else torch.contiguous_format
        self.to(memory_format=fmt)
        self.channels_last = enable
        return self

    def num_parameters(self, encoder: bool | None = None) -> int:
        """Parameter count: all (None), encoder only (True) or the UNet without encoder (False)."""
        total = 0
        for name, p in self.named_parameters():
            is_enc = name.startswith("encoder.")
            if encoder is None or encoder == is_enc:
                total += p.numel()
        return total

    # ---- forward --------------------------------------------------------------------------------
    def encode(self, x0: Tensor) -> Tensor:
        """Semantic encoder: x0 (B, C, H, W) in [-1, 1] -> z_sem (B, enc_out_channels); with
        ``coarse_pca = k`` its last k entries are the eigenface code of x0 (:class:`EigenfaceCode`)."""
        x_in = x0
        if self.channels_last and not self.plain:
            x_in = x0.contiguous(memory_format=torch.channels_last)
        z = self.encoder(x_in)
        if self.coarse is not None and self.coarse.pca is not None:
            z = torch.cat([z, self.coarse.pca.encode(x0).to(z.dtype)], dim=1)
        return z

    def time_embedding(self, t: Tensor) -> Tensor:
        """(B,) original timesteps -> (B, embed_channels) time vector fed to every ResBlock."""
        return self.time_embed(timestep_embedding(t, self.config.model_channels).to(self.out[2].weight.dtype))

    def _run(self, block: Block, h: Tensor, *args: Tensor | None) -> Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, *args, use_reentrant=False)
        return block(h, *args)

    def coarse_image(self, z: Tensor) -> Tensor:
        """The coarse image ``coarse(z)`` (B, 3, s, s) of a ``coarse_size`` network (module docstring)."""
        if self.coarse is None:
            raise PadaError(f"DiffAE config {self.config.name!r} has no coarse image path (coarse_size=0)")
        return self.coarse(z.to(self.out[2].weight.dtype))

    def forward(self, x_t: Tensor, t: Tensor, z: Tensor, coarse: Tensor | None = None) -> Tensor:
        """ε_θ(x_t, t, z): noise prediction.

        Args:
            x_t: (B, C, H, W) noisy image.
            t: (B,) int64 original timesteps 0..999 (never spaced indices).
            z: (B, enc_out_channels) semantic code from :meth:`encode`.
            coarse: networks with a coarse path only: a precomputed ``coarse_image(z)`` (training passes
                it detached); by default it is computed from z.
        Returns:
            (B, out_channels, H, W) predicted ε.
        """
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        dtype = self.out[2].weight.dtype
        emb = self.time_embedding(t)
        if self.coarse is not None:
            if coarse is None:
                coarse = self.coarse_image(z)
            coarse = F.interpolate(coarse.to(dtype), size=x_t.shape[-2:], mode="bilinear",
                                   align_corners=False)
            if coarse.shape[0] != x_t.shape[0]:
                coarse = coarse.expand(x_t.shape[0], -1, -1, -1)
            x_t = torch.cat([x_t.to(dtype), coarse], dim=1)
        if not self.config.style_modulation:
            z = torch.zeros_like(z)
        cond = z.to(dtype)
        emb_act = cond_act = None
        if not self.plain:
            emb_act, cond_act = F.silu(emb), F.silu(cond)
        args = (emb, cond, None, emb_act, cond_act)
        laterals: list[list[Tensor]] = [[] for _ in range(len(self.config.channel_mult))]
        h = x_t.to(dtype)
        if self.channels_last and not self.plain:
            h = h.contiguous(memory_format=torch.channels_last)
        for block, level in zip(self.input_blocks, self._input_levels):
            h = self._run(block, h, *args)
            laterals[level].append(h)
        h = self._run(self.middle_block, h, *args)
        for block, level in zip(self.output_blocks, self._output_levels):
            lateral = laterals[level].pop() if laterals[level] else None
            h = self._run(block, h, emb, cond, lateral, emb_act, cond_act)
        h = _gn(self.out[0], h)
        return self.out[2](F.silu(h) if self.plain else _silu(h)).contiguous()
