"""DEX VGG-16 age classifier (full-scale critic; SAM's and HRFAE's weight files).

State-dict keys are exactly those of the official class (``conv1_1 .. conv5_3``, ``fc6``, ``fc7``,
``fc8_101``; see ``tests/fixtures/face_experts/dex_vgg16_keys.txt``): 13 conv 3x3/1/1 + ReLU with 2x2 max
pooling after each stage, flatten (C,H,W = 25088), fc6 + ReLU, fc7 + ReLU, fc8_101 (101 logits for ages
0..100; no dropout, no batch norm). Age = expected value ``sum_j j * softmax(fc8)_j``.

Two weight files, two preprocessing recipes (``recipe=``):

* ``"sam"`` — SAM's ``dex_age_classifier.pth`` (fine-tuned on FFHQ-Aging): the RGB ``[-1, 1]`` 256x256
  face is resized to 224 with bilinear interpolation (``align_corners=False``, no antialias) and fed as is.
* ``"hrfae"`` — HRFAE's ``dex_imdb_wiki.caffemodel.pt`` (original Caffe DEX): ``(x + 1) / 2`` minus the
  ImageNet mean (0.48501961, 0.45795686, 0.40760392), RGB -> BGR, bilinear 224, times 255 — i.e. Caffe's BGR
  0..255 minus (103.939, 116.779, 123.680).

Inputs of another size than 256 are first resized to 256 (antialiased when shrinking).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pada.critics.adapters import resize
from pada.critics.base import FEATURE_LAYERS, AgeCritic, AgeOutput, check_images
from pada.critics.state_dicts import LoadableFromFile

_STAGES = [(1, 2, 3, 64), (2, 2, 64, 128), (3, 3, 128, 256), (4, 3, 256, 512), (5, 3, 512, 512)]
RECIPES = ("sam", "hrfae")
IMAGENET_MEAN_RGB = (0.48501961, 0.45795686, 0.40760392)


class DexVGG(LoadableFromFile, nn.Module):
    """VGG-16 with DEX's 101-way head. ``forward(x (N,3,224,224)) -> fc8 logits (N,101)``.

    ``forward(x, all_activations=True)`` returns the official dict ``r11 .. r53, p1 .. p5`` (``p5``
    flattened), ``fc6``, ``fc7`` (after ReLU) and ``fc8`` (logits).
    """

    num_bins = 101

    def __init__(self):
        super().__init__()
        for stage, n, cin, cout in _STAGES:
            for i in range(1, n + 1):
                setattr(self, f"conv{stage}_{i}", nn.Conv2d(cin if i == 1 else cout, cout, 3, 1, 1))
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8_101 = nn.Linear(4096, 101)

    def forward(self, x: torch.Tensor, all_activations: bool = False):
        out: dict[str, torch.Tensor] = {}
        for stage, n, _, _ in _STAGES:
            for i in range(1, n + 1):
                x = F.relu(getattr(self, f"conv{stage}_{i}")(x))
                out[f"r{stage}{i}"] = x
            x = F.max_pool2d(x, 2, 2)
            out[f"p{stage}"] = x
        x = x.flatten(1)
        out["p5"] = x
        out["fc6"] = x = F.relu(self.fc6(x))
        out["fc7"] = x = F.relu(self.fc7(x))
        out["fc8"] = x = self.fc8_101(x)
        return out if all_activations else x


class DexAdapter(nn.Module):
    """``[-1, 1]`` RGB aligned face -> DEX input ``(B, 3, 224, 224)``; ``recipe`` "sam" or "hrfae"."""

    def __init__(self, recipe: str = "sam"):
        super().__init__()
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
        self.recipe = recipe
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = resize(images, 256)
        if self.recipe == "hrfae":
            x = ((x + 1) / 2 - self.mean.to(x.dtype)).flip(1)
            return F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False) * 255
        return F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)


class DexAgeCritic(AgeCritic):
    """Age critic on DEX VGG-16: ``forward(images) -> AgeOutput`` (101 bins, ages 0..100).

    ``feature_layer="logits"`` (default): ``features`` = fc8, the last fully-connected layer (paper Eq. 8;
    SAM's aging loss reads only fc8). ``"penultimate"``: fc7 after ReLU (4096-d).
    """

    def __init__(self, net: DexVGG, recipe: str = "sam", feature_layer: str = "logits"):
        super().__init__()
        if feature_layer not in FEATURE_LAYERS:
            raise ValueError(f"feature_layer must be one of {FEATURE_LAYERS}, got {feature_layer!r}")
        self.net = net
        self.recipe = recipe
        self.feature_layer = feature_layer
        self.num_bins = net.num_bins
        self.input_adapter = DexAdapter(recipe)
        self.register_buffer("bin_years", torch.arange(101, dtype=torch.float32), persistent=False)
        self.freeze()

    def forward(self, images: torch.Tensor) -> AgeOutput:
        check_images(images, type(self).__name__)
        acts = self.net(self.input_adapter(images), all_activations=True)
        logits = acts["fc8"]
        probs = logits.softmax(dim=1)
        age = probs @ self.bin_years.to(probs.dtype)
        return AgeOutput(
            age=age,
            probs=probs,
            logits=logits,
            features=logits if self.feature_layer == "logits" else acts["fc7"],
        )
