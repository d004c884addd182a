"""FaceCLIP: pada's offline vision-language model (trained here; only its small heads are committed).

Real CLIP weights cannot be installed from PyPI, so pada ships a face-specific stand-in that lives in the same
kind of space (512-d unit vectors, images and texts comparable by cosine):

* **text tower** — frozen MiniLM-L6 sentence encoder (384-d, :mod:`pada.vl.minilm`) + a trained projection
  ``P_T: R^384 -> R^D`` (two-layer MLP with a linear skip, so MiniLM's language knowledge is kept);
* **image tower** — frozen, differentiable face critics (:mod:`pada.critics`): the dlib age network's
  penultimate feature (256) and its 81 bin logits and the dlib gender log-odds (1), standardised with
  training-set statistics, then a trained MLP ``P_I: R^338 -> R^D``. Gradients flow from the embedding back to
  the input pixels through the critics, as PADA's CLIP directional loss needs. (The SFace identity embedding
  can be added with ``features``; it is off by default: it made ``encode_image`` ~5x slower on CPU.)

Training (:mod:`pada.vl.train_faceclip`) is contrastive (InfoNCE with a learnable temperature, label-aware
soft targets) between demo faces and captions generated from their (age, gender) labels, plus text-only
age/gender read-out and ordinal losses over the whole 0-100 age range (:mod:`pada.vl.captions`). The read-outs
``age_head`` / ``gender_head`` are linear maps on the unit embedding shared by both modalities; they tie one
direction of the joint space to age, which places captions of ages never seen in images (babies, toddlers,
children: the demo set has none) at the young end of the axis. See docs/vision_language.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pada.deprecation import renamed
from pada.errors import CheckpointError
from pada.frozen import freeze
from pada.vl.base import VisionLanguageModel

FEATURE_BLOCKS = {"age_penultimate": 256, "age_logits": 81, "gender_logodds": 1, "sface": 128}


@dataclass(frozen=True)
class FaceCLIPConfig:
    """Shape of FaceCLIP's trainable heads.

    ``dim``           joint-space size D (512, like CLIP ViT-B/32, so PADA's ε means the same).
    ``text_hidden``   hidden width of the text projection MLP.
    ``image_hidden``  hidden width of the image MLP.
    ``text_projection`` ``"mlp"`` (trained) or ``"none"``: the raw-MiniLM baseline, where the text space is
                      MiniLM's own (D = 384) and only the image tower is trained against it.
    ``features``      which frozen critic features feed the image tower (keys of :data:`FEATURE_BLOCKS`).
    """

    dim: int = 512
    text_hidden: int = 512
    image_hidden: int = 256
    text_projection: str = "linear"
    features: tuple[str, ...] = ("age_penultimate", "age_logits", "gender_logodds")
    text_dim: int = 384

    def __post_init__(self):
        if self.text_projection not in ("mlp", "linear", "none"):
            raise ValueError(f"text_projection must be 'mlp', 'linear' or 'none', "
                             f"got {self.text_projection!r}")
        unknown = set(self.features) - set(FEATURE_BLOCKS)
        if unknown:
            raise ValueError(f"unknown image features {sorted(unknown)}; known: {sorted(FEATURE_BLOCKS)}")
        if self.text_projection == "none" and self.dim != self.text_dim:
            object.__setattr__(self, "dim", self.text_dim)

    @property
    def feature_dim(self) -> int:
        return sum(FEATURE_BLOCKS[f] for f in self.features)

    def to_json(self) -> str:
        d = asdict(self)
        d["features"] = list(self.features)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FaceCLIPConfig:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown FaceCLIP config keys {sorted(unknown)}")
        if "features" in raw:
            raw["features"] = tuple(raw["features"])
        return cls(**raw)


# ----------------------------------------------------------------------------------------------------------
# frozen image features from the critics
# ----------------------------------------------------------------------------------------------------------
def _load_critic(name: str, device: str | torch.device = "cpu") -> nn.Module:
    from pada.critics.registry import load_critic

    options = {"feature_layer": "penultimate"} if name == "dlib-age" else {}
    return load_critic(name, device=device, **options)


class CriticFeatureBlocks(nn.Module):
    """Frozen critic features of pada images: ``forward(images (B,3,H,W) in [-1,1]) -> (B, F)``.

    (Not :class:`pada.evaluation.fid.CriticFeatures`, one critic's features for the Fréchet distance; this
    class was called ``CriticFeatures`` before, and that name still works here with a DeprecationWarning.)

    Blocks, in ``features`` order: ``age_penultimate`` (256, pooled feature before dlib-age's last layer),
    ``age_logits`` (81), ``gender_logodds`` (1, ``log p_male - log p_female``), ``sface`` (128, unit vector).
    Differentiable with respect to ``images``; every critic stays frozen and in eval mode.
    """

    def __init__(self, features: tuple[str, ...], device: str | torch.device = "cpu",
                 critics: dict[str, nn.Module] | None = None):
        super().__init__()
        self.features = tuple(features)
        critics = dict(critics or {})
        need = set()
        if any(f.startswith("age_") for f in self.features):
            need.add("dlib-age")
        if "gender_logodds" in self.features:
            need.add("dlib-gender")
        if "sface" in self.features:
            need.add("sface")
        self.critics = nn.ModuleDict({n.replace("-", "_"): critics.get(n) or _load_critic(n, device)
                                      for n in sorted(need)})
        freeze(self.critics)

    def train(self, mode: bool = True) -> CriticFeatureBlocks:
        return super().train(False)

    @property
    def dim(self) -> int:
        return sum(FEATURE_BLOCKS[f] for f in self.features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: dict[str, torch.Tensor] = {}
        if "dlib_age" in self.critics:
            res = self.critics["dlib_age"](images)  # AgeOutput; features = penultimate (256)
            out["age_penultimate"], out["age_logits"] = res.features, res.logits
        if "dlib_gender" in self.critics:
            p = self.critics["dlib_gender"](images).clamp(1e-6, 1.0)
            out["gender_logodds"] = (p[:, 1].log() - p[:, 0].log()).unsqueeze(1)
        if "sface" in self.critics:
            out["sface"] = self.critics["sface"](images)
        return torch.cat([out[f].float() for f in self.features], dim=1)


# ----------------------------------------------------------------------------------------------------------
# trainable heads (the only weights FaceCLIP commits)
# ----------------------------------------------------------------------------------------------------------
class TextProjection(nn.Module):
    """``P_T(u) = W_2 GELU(W_1 u) + A u`` on MiniLM's unit vectors ``u (B, 384)`` -> ``(B, D)`` (not
    normalised)."""

    def __init__(self, cin: int, hidden: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cin, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.skip = nn.Linear(cin, dim, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.mlp(u) + self.skip(u)


class FaceCLIPHeads(nn.Module):
    """All trainable parts of FaceCLIP.

    ``feat_mean``/``feat_std`` (buffers, ``(F,)``): standardisation of the critic features
    (training-set stats).
    ``image``: MLP ``(B, F) -> (B, D)``.  ``text``: :class:`TextProjection` or identity (raw baseline).
    ``logit_scale``: log of the InfoNCE inverse temperature (CLIP's parameterisation).
    ``age_head`` / ``gender_head``: linear read-outs ``(B, D) -> (B, 1)`` on unit embeddings, shared by
    images and texts (age in years / male log-odds).
    """

    def __init__(self, cfg: FaceCLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feat_mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("feat_std", torch.ones(cfg.feature_dim))
        self.image = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.image_hidden), nn.GELU(),
                                   nn.Linear(cfg.image_hidden, cfg.image_hidden), nn.GELU(),
                                   nn.Linear(cfg.image_hidden, cfg.dim))
        if cfg.text_projection == "mlp":
            self.text: nn.Module = TextProjection(cfg.text_dim, cfg.text_hidden, cfg.dim)
        elif cfg.text_projection == "linear":
            self.text = nn.Linear(cfg.text_dim, cfg.dim, bias=False)
        else:
            self.text = nn.Identity()
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.07)))))
        self.age_head = nn.Linear(cfg.dim, 1)
        self.gender_head = nn.Linear(cfg.dim, 1)

    def embed_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Critic features ``(B, F)`` -> unit image embeddings ``(B, D)``."""
        x = (feats - self.feat_mean) / self.feat_std
        return F.normalize(self.image(x), dim=-1)

    def embed_text(self, u: torch.Tensor) -> torch.Tensor:
        """MiniLM unit vectors ``(B, 384)`` -> unit text embeddings ``(B, D)``."""
        return F.normalize(self.text(u), dim=-1)

    AGE_OFFSET, AGE_SCALE = 40.0, 50.0  # read-out in units of 50 years around 40: unit-scale weights suffice

    def age(self, e: torch.Tensor) -> torch.Tensor:
        """Age read-out in years, ``(B, D) -> (B,)``: ``40 + 50 * (w . e + b)``."""
        return self.AGE_OFFSET + self.AGE_SCALE * self.age_head(e).squeeze(-1)

    def male_logit(self, e: torch.Tensor) -> torch.Tensor:
        return self.gender_head(e).squeeze(-1)


def save_heads(heads: FaceCLIPHeads, path: str | os.PathLike, extra: dict[str, str] | None = None) -> Path:
    """Write the heads as safetensors with the config (and ``extra`` strings) in the metadata (atomic)."""
    from safetensors.torch import save_file

    from pada.outputs import atomic_path

    path = Path(path)
    meta = {"format": "pada-faceclip-heads", "config": heads.cfg.to_json(), **(extra or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    with atomic_path(path) as tmp:  # all or nothing, umask mode (safetensors itself writes 0600)
        save_file(state, str(tmp), metadata=meta)
    return path


def load_heads(path: str | os.PathLike) -> tuple[FaceCLIPHeads, dict[str, str]]:
    """Read heads written by :func:`save_heads` (strict key and shape check)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - any read failure is a bad file for the user
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != "pada-faceclip-heads" or "config" not in meta:
        raise CheckpointError(f"{path}: not a FaceCLIP weight file (metadata format={meta.get('format')!r})")
    cfg = FaceCLIPConfig.from_json(meta["config"])
    heads = FaceCLIPHeads(cfg)
    own = heads.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: FaceCLIP keys do not match (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise CheckpointError(f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    heads.load_state_dict(state, strict=True)
    return heads, meta


# ----------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------
class FaceCLIP(VisionLanguageModel):
    """Offline face vision-language model (see module docstring).

    Args:
        heads: trained :class:`FaceCLIPHeads`.
        features: the frozen image feature extractor (default: :class:`CriticFeatureBlocks` over the offline
        critics). text_encoder: the frozen sentence encoder (default: :class:`pada.vl.minilm.MiniLMEncoder`).
    """

    name = "faceclip"

    def __init__(self, heads: FaceCLIPHeads, features: nn.Module | None = None,
                 text_encoder: nn.Module | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        from pada.vl.minilm import MiniLMEncoder

        self.heads = heads
        self.features = features if features is not None else CriticFeatureBlocks(heads.cfg.features, device)
        self.text_encoder = text_encoder if text_encoder is not None else MiniLMEncoder()
        self.dim = heads.cfg.dim
        self.to(device)
        self.freeze()

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                  **kwargs) -> FaceCLIP:
        """The committed FaceCLIP (registry entry ``faceclip``, sha256-checked) or the heads file at ``path``.

        A file passed explicitly is one the user trained (``pada train faceclip --out PATH``): it is checked
        by its metadata and keys, not against the committed file's sha256.
        """
        from pada.weights import resolve

        file = resolve("faceclip", path, check=path is None)
        heads, _ = load_heads(file)
        return cls(heads, device=device, **kwargs)

    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.heads.image((self.features(images) - self.heads.feat_mean) / self.heads.feat_std)

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.heads.text(self.text_encoder(texts).to(self.heads.feat_mean.device))

    def predict_age(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Age read-out (years) of unit embeddings ``(B, D) -> (B,)`` (image or text)."""
        return self.heads.age(embeddings)


__getattr__ = renamed(__name__, {"CriticFeatures": "CriticFeatureBlocks"})
