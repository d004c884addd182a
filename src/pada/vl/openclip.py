"""Real CLIP through open_clip, loaded only from files already on this machine (never downloads).

``OpenCLIP("ViT-B-32", "openai")`` looks for the weights, in order:

1. an explicit ``path`` (``load_vl(name, path=...)``): OpenAI's TorchScript ``ViT-B-32.pt``, an open_clip
   ``.bin``/``.pt`` state dict or a ``.safetensors`` file;
2. for the default model, the pada registry entry ``openai-clip-vit-b-32`` (``$PADA_WEIGHTS_DIR`` and
   ``~/.cache/pada``; sha256 of OpenAI's file);
3. open_clip's own download cache (``~/.cache/clip/<file>``, or ``$OPENCLIP_CACHE_DIR``) for URL-hosted tags;
4. the Hugging Face hub cache (``$HF_HUB_CACHE`` / ``$HF_HOME/hub`` / ``~/.cache/huggingface/hub``) for
   hub-hosted tags, read with ``huggingface_hub.try_to_load_from_cache`` (no network).

Missing weights raise :class:`~pada.errors.MissingWeightsError` with one line saying how to provide them.
``pretrained=None`` builds the architecture with random weights (tests; shapes and gradients only).

Images: pada's ``(B, 3, H, W)`` in ``[-1, 1]`` are resized (bicubic, shorter side, centre crop) and normalised
with the weights' mean/std inside the graph, so gradients reach the pixels.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from pathlib import Path

import torch

from pada.errors import MissingWeightsError, PadaError
from pada.vl.base import VisionLanguageModel, resize_for_encoder

DEFAULT_ARCH = "ViT-B-32"
DEFAULT_TAG = "openai"
REGISTRY_NAME = "openai-clip-vit-b-32"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _pretrained_cfg(arch: str, tag: str | None) -> dict:
    import open_clip

    if not tag:
        return {}
    try:
        return dict(open_clip.get_pretrained_cfg(arch, tag) or {})
    except Exception:  # noqa: BLE001 - unknown tag -> no config
        return {}


def _hf_cache_dirs() -> list[Path]:
    dirs = []
    if v := os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(v))
    if v := os.environ.get("HF_HOME"):
        dirs.append(Path(v) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def find_cached_weights(arch: str, tag: str) -> Path | None:
    """A weight file for ``arch``/``tag`` on this machine (pada registry, open_clip/HF cache) or None."""
    from pada import weights

    if (arch, tag) == (DEFAULT_ARCH, DEFAULT_TAG):
        entry = weights.get(REGISTRY_NAME)
        for p in weights.candidates(entry):
            if p.is_file():
                weights.verify(p, entry)
                return p
    cfg = _pretrained_cfg(arch, tag)
    if cfg.get("file") and Path(cfg["file"]).is_file():
        return Path(cfg["file"])
    if url := cfg.get("url"):
        name = os.path.basename(url)
        for d in filter(None, [os.environ.get("OPENCLIP_CACHE_DIR"), str(Path.home() / ".cache" / "clip")]):
            p = Path(d) / name
            if p.is_file():
                if (arch, tag) == (DEFAULT_ARCH, DEFAULT_TAG):
                    weights.verify(p, weights.get(REGISTRY_NAME))
                return p
    if hub := cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
            return None
        repo_id, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else []
        names += ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for cache in _hf_cache_dirs():
            for name in names:
                try:
                    hit = try_to_load_from_cache(repo_id, name, cache_dir=str(cache))
                except Exception:  # noqa: BLE001 - malformed cache: skip
                    hit = None
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
    return None


def how_to_get(arch: str, tag: str) -> str:
    if (arch, tag) == (DEFAULT_ARCH, DEFAULT_TAG):
        from pada import weights

        return weights.get(REGISTRY_NAME).how_to_get
    return (f"copy an open_clip checkpoint of {arch} ({tag}) into $PADA_WEIGHTS_DIR or ~/.cache/pada/ (every "
            f"pada command looks there), pass it as load_vl(name, path=...), or fill your Hugging Face / "
            f"open_clip cache on a machine with internet access first")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict from a ``.safetensors`` file, a plain torch state dict (weights_only) or OpenAI's
    TorchScript file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    is_jit = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_jit = any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    try:
        if is_jit:  # OpenAI's ViT-B-32.pt is a TorchScript archive: read only its tensors
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but reads this file
                sd = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure: one line
        raise PadaError(f"{path}: cannot read CLIP weights ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise PadaError(f"{path}: expected a state dict, found {type(sd).__name__}")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    for k in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(k, None)
    return sd


class OpenCLIP(VisionLanguageModel):
    """An open_clip CLIP model behind :class:`~pada.vl.base.VisionLanguageModel`.

    Args:
        arch: open_clip architecture name (``open_clip.list_models()``), default ``"ViT-B-32"``.
        pretrained: pretrained tag (default ``"openai"``), or None for random weights (no file needed).
        path: explicit weight file (overrides the cache search).
        device: where to put the model.
    """

    def __init__(self, arch: str = DEFAULT_ARCH, pretrained: str | None = DEFAULT_TAG,
                 path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        import open_clip

        if arch not in open_clip.list_models():
            raise PadaError(f"openclip:{arch}: unknown open_clip architecture; known e.g. "
                            f"{', '.join(open_clip.list_models()[:8])}, ...")
        cfg = _pretrained_cfg(arch, pretrained)
        weight_file: Path | None = None
        if path is not None:
            weight_file = Path(path).expanduser()
            if not weight_file.is_file():
                raise MissingWeightsError(f"{weight_file}: CLIP weight file not found. "
                                          f"{how_to_get(arch, pretrained or '')}")
        elif pretrained is not None:
            weight_file = find_cached_weights(arch, pretrained)
            if weight_file is None:
                raise MissingWeightsError(f"openclip:{arch} ({pretrained}): weights not found on this "
                                          f"machine; {how_to_get(arch, pretrained)}")
        quick_gelu = bool(cfg.get("quick_gelu", pretrained == "openai"))
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # open_clip warns "initialized randomly": we load next
        try:
            model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu, device="cpu")
        finally:
            logging.getLogger().setLevel(level)
        if weight_file is not None:
            self._load(model, weight_file)
        self.model = model
        self.tokenizer = open_clip.get_tokenizer(arch)
        pp = getattr(model.visual, "preprocess_cfg", None) or {}
        self.mean = tuple(cfg.get("mean") or pp.get("mean") or OPENAI_MEAN)
        self.std = tuple(cfg.get("std") or pp.get("std") or OPENAI_STD)
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.interpolation = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
        self.name = f"openclip:{arch}"
        self.arch, self.pretrained, self.weight_file = arch, pretrained, weight_file
        with torch.no_grad():
            probe = model.encode_text(self.tokenizer(["a"]))
        self.dim = int(probe.shape[-1])
        self.to(device)
        self.freeze()

    @staticmethod
    def _load(model: torch.nn.Module, file: Path) -> None:
        from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed

        sd = read_state_dict(file)
        if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
            sd = convert_to_custom_text_state_dict(sd)  # plain-CLIP keys into a CustomTextCLIP
        resize_pos_embed(sd, model)
        own = model.state_dict()
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        if missing or unexpected:
            raise PadaError(f"{file}: CLIP weights do not fit this architecture (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
        for k, v in sd.items():
            if v.shape != own[k].shape:
                raise PadaError(f"{file}: {k} has shape {tuple(v.shape)}, architecture expects "
                                f"{tuple(own[k].shape)}")
        model.load_state_dict(sd, strict=True)

    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_for_encoder(images, self.image_size, self.mean, self.std, self.interpolation)
        return self.model.encode_image(x)

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)
