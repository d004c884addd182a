"""Configuration of the DiffAE network (official ``BeatGANsAutoencConfig``, the fields that matter).

A :class:`DiffAEConfig` describes the semantic encoder and the conditional UNet of DiffAE
(Preechakul et al., CVPR 2022) exactly as the official code builds them, so that official
checkpoints load key for key. Presets are JSON files in ``pada/networks/presets/`` found by
scanning the folder; :func:`load_preset` returns one, :func:`list_presets` lists them.

Unknown keys are rejected loudly (:class:`pada.errors.PadaError` naming the key), so a typo in
a preset or a ``--set key=value`` never silently falls back to a default.

The official config also accepts a few fields that pada fixes to the only values any released
DiffAE model uses (``dims=2``, ``resnet_two_cond=True``, ``use_new_attention_order=False``,
``enc_pool='adaptivenonzero'``, ``num_classes=None``, ...). :meth:`DiffAEConfig.from_dict`
accepts them when they carry those values (so the fixture's ``tiny_config.json`` loads as is)
and raises on any other value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pada.errors import PadaError

PRESET_DIR = Path(__file__).with_name("presets")
PREDICTIONS = ("eps", "v")  # what the UNet outputs (DiffAEConfig.prediction)

# Official fields that pada accepts only with the value every released model uses.
_FIXED_OFFICIAL: dict[str, Any] = {
    "dims": 2,
    "num_classes": None,
    "use_checkpoint": False,
    "attn_checkpoint": False,
    "enc_grad_checkpoint": False,
    "resnet_two_cond": True,
    "resnet_cond_channels": None,
    "resnet_use_zero_module": True,
    "use_new_attention_order": False,
    "conv_resample": True,
    "time_embed_channels": None,
    "latent_net_conf": None,
    "input_channel_mult": None,
    "num_input_res_blocks": None,
    "enc_pool": "adaptivenonzero",
}


@dataclass
class DiffAEConfig:
    """The DiffAE autoencoder network (official ``BeatGANsAutoencConfig``).

    Attributes (official names):
        image_size: input/output resolution H = W.
        in_channels, out_channels: image channels (3) and predicted-ε channels (3).
        model_channels: base width of UNet and encoder; also the sinusoid dimension of the
            timestep embedding (official ``time_embed_channels=None``).
        channel_mult: UNet width multipliers per level (one level per resolution).
        num_res_blocks: ResBlocks per UNet level (the decoder has ``num_res_blocks + 1``).
        embed_channels: width E of the time MLP output fed to every ResBlock.
        attention_resolutions: resolutions (in pixels) that get self-attention (UNet).
        dropout: dropout inside decoder ResBlocks (identity in eval mode).
        num_heads, num_head_channels, num_heads_upsample: attention heads; ``num_head_channels=-1``
            means use ``num_heads``; ``num_heads_upsample=-1`` means ``num_heads``.
        resblock_updown: resample with ResBlocks (True in every DiffAE model).
        enc_out_channels: style size (the semantic code z_sem, 512 in the paper).
        enc_channel_mult, enc_num_res_block, enc_attn_resolutions: the semantic encoder;
            ``enc_attn_resolutions=None`` means ``attention_resolutions``.
        enc_pool: encoder head; only ``'adaptivenonzero'`` (official DiffAE) is supported.
        gradient_checkpointing: pada-only; recompute ResBlocks in backward to save memory.
        prediction: pada-only; what the UNet outputs: ``"eps"`` (the noise ε, every official DiffAE
            model) or ``"v"`` (v = sqrt(ᾱ)ε - sqrt(1-ᾱ)x0, Salimans & Ho 2022; used by pada's small
            CPU-trained default, see docs/diffae.md). :class:`pada.diffae.DiffAE` converts v to ε, so
            samplers, inversion and the PADA losses always see ε.
        coarse_size: pada-only; 0 (every official model) or the side of a *coarse image path*
            (DiffuseVAE-style, Pandey et al. 2022): a small deterministic decoder ``coarse(z)`` draws a
            (3, coarse_size, coarse_size) image from z alone; it is upsampled to ``image_size`` and fed to
            the UNet as 3 extra input channels, so z reaches the image through a spatial, low-frequency
            path the UNet follows from the first steps of training (docs/diffae.md).
        coarse_channels: width of the coarse decoder's widest layer.
        coarse_pca: pada-only; 0 or the number k of z's entries that are a *fixed eigenface code* of the
            input: the principal-component coefficients of the input area-downsampled to ``coarse_size``
            (fitted on the training images, stored as buffers ``coarse.pca.*``). The learned encoder then
            gives the other ``enc_out_channels - k`` entries, and ``coarse(z)`` adds the exact PCA
            reconstruction from those k entries to its learned output, so z carries the face's coarse
            appearance (pose, hair, skin, face shape: what aging changes) from step 0 instead of after a
            long autoencoder training (docs/diffae.md, bake-off).
        style_modulation: pada-only; ``False`` feeds z to the UNet's ResBlocks as zeros, so z acts on the
            image *only* through ``coarse(z)``: edits of z (PADA) then cannot add high-frequency texture,
            they change the coarse image and the UNet draws detail consistent with it.
        coarse_residual: pada-only; ``True`` makes the network model the image *relative to* the
            upsampled coarse image c: it reads ``x_t - sqrt(ᾱ_t)·c`` (the noisy residual x0 - c) and its v
            output is shifted by ``-sqrt(1-ᾱ_t)·c`` (ε output: unchanged), so a network that outputs zero
            already implies x̂0 ≈ c at large t. The forward process, samplers and inversion are unchanged
            (:class:`pada.diffae.DiffAE` applies the shift); the default is to follow z's coarse image
            from fresh noise instead of having to learn it (docs/diffae.md).
    """

    image_size: int = 64
    in_channels: int = 3
    model_channels: int = 64
    out_channels: int = 3
    num_res_blocks: int = 2
    embed_channels: int = 512
    attention_resolutions: tuple[int, ...] = (16,)
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    dropout: float = 0.1
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    resblock_updown: bool = True
    enc_out_channels: int = 512
    enc_channel_mult: tuple[int, ...] | None = None
    enc_num_res_block: int = 2
    enc_attn_resolutions: tuple[int, ...] | None = None
    enc_pool: str = "adaptivenonzero"
    gradient_checkpointing: bool = False
    prediction: str = "eps"
    coarse_size: int = 0
    coarse_channels: int = 128
    coarse_pca: int = 0
    style_modulation: bool = True
    coarse_residual: bool = False
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        self.attention_resolutions = tuple(int(r) for r in self.attention_resolutions)
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        if self.enc_channel_mult is not None:
            self.enc_channel_mult = tuple(int(m) for m in self.enc_channel_mult)
        if self.enc_attn_resolutions is not None:
            self.enc_attn_resolutions = tuple(int(r) for r in self.enc_attn_resolutions)
        if self.enc_pool != "adaptivenonzero":
            raise PadaError(f"DiffAEConfig: enc_pool {self.enc_pool!r} unsupported (only 'adaptivenonzero')")
        if self.prediction not in PREDICTIONS:
            raise PadaError(
                f"DiffAEConfig: prediction {self.prediction!r} unknown (one of {', '.join(PREDICTIONS)})"
            )
        if not self.resblock_updown:
            raise PadaError(
                "DiffAEConfig: resblock_updown=False is not supported (every DiffAE model uses True)"
            )
        for name in ("image_size", "model_channels", "embed_channels", "enc_out_channels", "num_res_blocks"):
            if int(getattr(self, name)) <= 0:
                raise PadaError(f"DiffAEConfig: {name} must be positive, got {getattr(self, name)}")
        if self.coarse_size:
            cs = int(self.coarse_size)
            if cs < 4 or cs > self.image_size or cs & (cs - 1) or self.image_size % cs:
                raise PadaError(
                    f"DiffAEConfig: coarse_size {self.coarse_size} must be a power of two in "
                    f"[4, image_size={self.image_size}] dividing image_size (or 0 = no coarse path)"
                )
            if int(self.coarse_channels) < 8:
                raise PadaError(f"DiffAEConfig: coarse_channels must be >= 8, got {self.coarse_channels}")
            k = int(self.coarse_pca)
            if k < 0 or k >= self.enc_out_channels or k > self.in_channels * cs * cs:
                raise PadaError(f"DiffAEConfig: coarse_pca {self.coarse_pca} must be in [0, enc_out_channels="
                                f"{self.enc_out_channels}) and at most {self.in_channels}*coarse_size^2")
        elif self.coarse_pca:
            raise PadaError("DiffAEConfig: coarse_pca needs a coarse path (coarse_size > 0)")
        elif self.coarse_residual:
            raise PadaError("DiffAEConfig: coarse_residual needs a coarse path (coarse_size > 0)")
        elif not self.style_modulation:
            raise PadaError("DiffAEConfig: style_modulation=False needs a coarse path (coarse_size > 0), "
                            "or z would not reach the image at all")
        n_down = len(self.channel_mult) - 1
        if self.image_size % (2**n_down) != 0:
            raise PadaError(
                f"DiffAEConfig: image_size {self.image_size} is not divisible by 2^{n_down} "
                f"(channel_mult has {len(self.channel_mult)} levels)"
            )

    # ---- derived values -------------------------------------------------------------------------
    @property
    def encoder_channel_mult(self) -> tuple[int, ...]:
        """Encoder multipliers (official default: the UNet's when ``enc_channel_mult`` is None)."""
        return self.enc_channel_mult if self.enc_channel_mult is not None else self.channel_mult

    @property
    def encoder_attention_resolutions(self) -> tuple[int, ...]:
        return (
            self.enc_attn_resolutions if self.enc_attn_resolutions is not None else self.attention_resolutions
        )

    @property
    def style_channels(self) -> int:
        """Size of the semantic code z (official ``enc_out_channels``)."""
        return self.enc_out_channels

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DiffAEConfig:
        """Build from a dict; unknown keys raise :class:`PadaError` naming ``source`` and the key.

        Accepts official field names with their fixed values (see module docstring) and a fixture
        style ``{"config": {...}}`` wrapper.
        """
        if isinstance(data, dict) and isinstance(data.get("config"), dict) and "model_channels" not in data:
            data = data["config"]
        from pada.validation import check_config_dict

        check_config_dict(cls, data, source)  # types and ranges, before any network is built
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in known:
                kwargs[key] = value
            elif key in _FIXED_OFFICIAL:
                fixed = _FIXED_OFFICIAL[key]
                if value != fixed and not (isinstance(fixed, bool) and value == int(fixed)):
                    raise PadaError(
                        f"{source}: {key}={value!r} is not supported (pada fixes it to {fixed!r})"
                    )
            else:
                raise PadaError(f"{source}: unknown DiffAEConfig key {key!r}")
        try:
            return cls(**kwargs)
        except TypeError as e:  # pragma: no cover - defensive
            raise PadaError(f"{source}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json_file(cls, path: str | Path) -> DiffAEConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PadaError(f"{path}: cannot read config JSON ({e})") from None
        cfg = cls.from_dict(data, source=str(path))
        if cfg.name == "custom":
            cfg.name = path.stem
        return cfg

    def replace(self, **changes: Any) -> DiffAEConfig:
        """A copy with ``changes`` applied (unknown keys rejected)."""
        d = self.to_dict()
        for k in changes:
            if k not in d:
                raise PadaError(f"unknown DiffAEConfig key {k!r}")
        d.update(changes)
        return DiffAEConfig.from_dict(d)


def list_presets() -> list[str]:
    """Names of the presets shipped in ``pada/networks/presets/*.json``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str) -> DiffAEConfig:
    """The preset called ``name`` (a file in ``presets/``), or a path to a JSON config."""
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        p = Path(name)
        if p.suffix == ".json" and p.is_file():
            return DiffAEConfig.from_json_file(p)
        raise PadaError(f"unknown DiffAE preset {name!r}; known: {', '.join(list_presets())}")
    cfg = DiffAEConfig.from_json_file(path)
    cfg.name = name
    return cfg
