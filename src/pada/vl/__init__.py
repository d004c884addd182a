"""Vision-language backbones for PADA: ``encode_image`` / ``encode_text`` into one unit-sphere space.

Two backends behind :class:`~pada.vl.base.VisionLanguageModel`:

* ``"openclip:<arch>[:<tag>]"`` — real CLIP through open_clip (default ``openclip:ViT-B-32`` = OpenAI
  weights),
  loaded only from a local file (``path``) or the caches already on this machine (:mod:`pada.vl.openclip`).
  ``:random`` builds the architecture with random weights (tests).
* ``"faceclip"`` — pada's offline FaceCLIP (:mod:`pada.vl.faceclip`): frozen MiniLM text tower and frozen face
  critics with small trained heads committed in ``pada/vl/weights/faceclip.safetensors``.

See docs/vision_language.md.
"""

from __future__ import annotations

import os

import torch

from pada.errors import PadaError
from pada.vl.base import VisionLanguageModel

BACKENDS = ("faceclip", "openclip:ViT-B-32", "openclip:<arch>[:<tag>]")


def _default_tag(arch: str) -> str | None:
    import open_clip

    tags = [t for a, t in open_clip.list_pretrained() if a == arch]
    if "openai" in tags:
        return "openai"
    return tags[0] if tags else None


def load_vl(name: str = "faceclip", path: str | os.PathLike | None = None,
            device: str | torch.device = "cpu") -> VisionLanguageModel:
    """A frozen vision-language model by name.

    Args:
        name: ``"faceclip"``, ``"openclip:ViT-B-32"`` (OpenAI weights), ``"openclip:<arch>"`` (its OpenAI
        weights,
            else its first open_clip pretrained tag), ``"openclip:<arch>:<tag>"``, or
            ``"openclip:<arch>:random"``.
        path: explicit weight file (FaceCLIP heads, or a CLIP checkpoint such as OpenAI's ``ViT-B-32.pt``).
        device: where to put it.
    Raises:
        MissingWeightsError: weights not on this machine (the message says how to provide them).
        PadaError: unknown name.
    """
    name = name.strip()
    if name.lower() == "faceclip":
        from pada.vl.faceclip import FaceCLIP

        return FaceCLIP.from_file(path, device=device)
    if name.lower().startswith("openclip"):
        import open_clip

        from pada.vl.openclip import DEFAULT_ARCH, OpenCLIP

        parts = name.split(":")
        arch = parts[1] if len(parts) > 1 and parts[1] else DEFAULT_ARCH
        if len(parts) > 3:
            raise PadaError(f"{name}: expected openclip:<arch>[:<tag>]")
        if arch not in open_clip.list_models():
            raise PadaError(f"{name}: unknown open_clip architecture {arch!r}; see open_clip.list_models()")
        tag: str | None = parts[2] if len(parts) > 2 else _default_tag(arch)
        if tag in ("random", "none"):
            tag = None
        elif tag is None and path is None:
            raise PadaError(f"{name}: open_clip has no pretrained weights for {arch}; pass a weight file")
        return OpenCLIP(arch, pretrained=tag, path=path, device=device)
    raise PadaError(f"unknown vision-language model {name!r}; use one of {', '.join(BACKENDS)}")


__all__ = ["VisionLanguageModel", "load_vl", "BACKENDS"]
