"""IR-SE50 ArcFace backbone (full-scale identity critic; TreB1eN's weights as used by SAM / pSp).

State-dict keys are exactly those of the official ``Backbone(112, 50, "ir_se")`` (see
``tests/fixtures/face_experts/ir_se50_keys.txt``; the 54 ``num_batches_tracked`` entries may be absent):

* ``input_layer``: conv 3x3 3->64 (no bias), BatchNorm, PReLU(64);
* ``body.0 .. body.23``: SE bottleneck units in stages (in, depth, units) = (64, 64, 3), (64, 128, 4),
  (128, 256, 14), (256, 512, 3), stride 2 in each stage's first unit (112 -> 7). A unit is
  ``res(x) + shortcut(x)``; ``res`` = BN -> conv3x3 -> PReLU -> conv3x3/stride -> BN -> SE(reduction 16);
  ``shortcut`` = subsampling ``x[:, :, ::s, ::s]`` when in == depth, else conv1x1/stride + BN;
* ``output_layer``: BN(512) -> Dropout (off) -> flatten (25088, C,H,W) -> Linear(25088, 512) -> BN1d(512);
* L2 normalisation (divide by the norm).

Input (SAM / pSp ID loss): the RGB ``[-1, 1]`` 256x256 FFHQ face, crop ``[35:223, 32:220]`` (188x188),
adaptive average pooling to 112x112, no other normalisation. Inputs of another size are first resized
to 256 (antialiased when shrinking).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pada.critics.adapters import resize
from pada.critics.base import IdentityCritic, check_images
from pada.critics.state_dicts import LoadableFromFile

_STAGES = [(64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)]
SAM_CROP = (35, 223, 32, 220)  # rows, cols of the 256x256 face


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * w


class BottleneckIRSE(nn.Module):
    def __init__(self, cin: int, depth: int, stride: int):
        super().__init__()
        self.stride = stride
        if cin == depth:
            self.shortcut_layer = None
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sc = (
            x[:, :, :: self.stride, :: self.stride] if self.shortcut_layer is None else self.shortcut_layer(x)
        )
        return self.res_layer(x) + sc


class ArcFaceIRSE50(LoadableFromFile, nn.Module):
    """``forward(x (N,3,112,112)) -> (N, 512)`` unit-norm embedding (``normalize=False``: before L2)."""

    dim = 512

    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        # registered before body so that the state_dict order matches the official one
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(0.6),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512),
        )
        units = []
        for cin, depth, n in _STAGES:
            units.append(BottleneckIRSE(cin, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)

    def forward(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / x.norm(dim=1, keepdim=True) if normalize else x


class SamIdCrop(nn.Module):
    """SAM / pSp ID-loss crop: resize to 256 if needed, ``[35:223, 32:220]``, adaptive avg-pool to 112."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        r0, r1, c0, c1 = SAM_CROP
        x = resize(images, 256)[:, :, r0:r1, c0:c1]
        return F.adaptive_avg_pool2d(x, (112, 112))


class ArcFaceCritic(IdentityCritic):
    """Identity critic on IR-SE50: ``forward(images (B,3,H,W) [-1,1]) -> (B, 512)`` unit-norm embeddings."""

    def __init__(self, net: ArcFaceIRSE50):
        super().__init__()
        self.net = net
        self.dim = net.dim
        self.input_adapter = SamIdCrop()
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, type(self).__name__)
        return self.net(self.input_adapter(images))
