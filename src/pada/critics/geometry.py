"""Crop geometry: where each critic's expected face crop lies inside an FFHQ-aligned face.

pada's images are FFHQ-aligned faces (the FFHQ recipe: an oriented square built from the eye centres
and mouth corners). Every critic was trained on its own crop:

* dlib age / gender nets: dlib "face chips" from 5 landmarks with padding 0.2 (``get_face_chip_details``),
* SFace / ArcFace: 112x112 crops warped onto the standard 5-point ArcFace template,
* DEX / IR-SE50 in SAM: fixed pixel boxes of the 256x256 FFHQ face (handled in their own modules).

All crops are expressed in **normalised FFHQ coordinates** ``u = (x, y) in [0, 1]^2``: ``(0, 0)`` is the
top-left corner of the aligned image and ``(1, 1)`` the bottom-right corner (edge convention: the centre
of pixel ``k`` of a ``W``-wide image is at ``(k + 0.5) / W``). A crop is a 2x3 affine matrix ``A`` that maps
an output pixel index ``(i, j, 1)`` (column, row; pixel centres at integer positions) to ``u``.

How the fixed crops are derived. dlib's 68-point mean face shape (the constants dlib uses in
``get_face_chip_details``; its 5-point template lies in the same frame) is pushed through the FFHQ
alignment recipe; that fixes where a "mean face" sits in the FFHQ frame. Each critic's own alignment
(dlib chip, ArcFace template) is then applied to the same mean face. A real face differs from the mean
shape, so a fixed crop is an approximation of the per-face crop; ``docs/critics.md`` reports the
measured effect on predicted ages.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pada.deprecation import renamed
from pada.faces.align import ffhq_frame

# dlib's mean face shape for the 68-point landmarks 17..67 (eyebrows, nose, eyes, mouth), unit frame.
# Checked against dlib: get_face_chip_details on exactly these points gives angle 0 and a unit box.
_MEAN_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991, 0.98004,
    0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737,
    0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751,
    0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127,
    0.42689,
)  # fmt: skip
_MEAN_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
    0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326,
    0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423,
    0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182,
    0.831803, 0.824182,
)  # fmt: skip

#: dlib's 5-point chip template (outer/inner corner of the image-right eye, outer/inner corner of the
#: image-left eye, bottom of the nose), unit frame, as used by ``get_face_chip_details`` for 5 parts.
DLIB_5PT_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340827245337, 0.2290961867465],
        [0.4901123135641, 0.6277010459469],
    ]
)

#: The standard ArcFace / InsightFace 5-point template for 112x112 crops (image-left eye, image-right
#: eye, nose tip, image-left mouth corner, image-right mouth corner), pixel-centre coordinates. OpenCV's
#: SFace ``alignCrop`` warps YuNet's 5 landmarks onto these points with a similarity transform.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


def mean_face_68() -> np.ndarray:
    """dlib's mean face, ``(68, 2)`` in its unit frame; the 17 jaw points (not in dlib's table) are NaN."""
    pts = np.full((68, 2), np.nan)
    pts[17:, 0] = _MEAN_X
    pts[17:, 1] = _MEAN_Y
    return pts


def ffhq_square(eye_left, eye_right, mouth_left, mouth_right) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FFHQ alignment square from eye centres and mouth corners (image-left first).

    Returns ``(origin, ax, ay)``: the aligned image's top-left corner and its full-width / full-height
    edge vectors, all in the coordinates of the given points, so that normalised FFHQ coordinate ``u``
    sits at ``origin + u_x * ax + u_y * ay``. The recipe is :func:`pada.faces.align.ffhq_frame` (this was
    ``ffhq_quad``, which still works here with a DeprecationWarning).
    """
    c, x, y = ffhq_frame(eye_left, eye_right, mouth_left, mouth_right)
    return c - x - y, 2 * x, 2 * y


def _mean_face_in_ffhq() -> np.ndarray:
    """Mean face's 68 points in normalised FFHQ coordinates (jaw NaN)."""
    pts = mean_face_68()
    origin, ax, ay = ffhq_square(pts[36:42].mean(0), pts[42:48].mean(0), pts[48], pts[54])
    basis = np.stack([ax, ay], axis=1)  # columns
    return np.linalg.solve(basis, (pts - origin).T).T


def to_ffhq_matrix() -> np.ndarray:
    """2x3 affine mapping dlib's unit mean-face frame to normalised FFHQ coordinates."""
    pts = mean_face_68()
    origin, ax, ay = ffhq_square(pts[36:42].mean(0), pts[42:48].mean(0), pts[48], pts[54])
    inv = np.linalg.inv(np.stack([ax, ay], axis=1))
    return np.concatenate([inv, (-inv @ origin)[:, None]], axis=1)


def dlib_chip_matrix(size: int, padding: float = 0.2) -> np.ndarray:
    """2x3 affine: dlib chip pixel ``(i, j, 1)`` -> normalised FFHQ ``u`` for the mean face.

    dlib maps the chip so the 5-point template, padded as ``(p + t) / (1 + 2p)``, lands on the landmarks;
    ``extract_image_chip`` then places chip pixel 0 and pixel ``size - 1`` on the two edges of that box, so
    chip pixel ``i`` samples template coordinate ``-p + (1 + 2p) i / (size - 1)``.
    """
    step = (1 + 2 * padding) / (size - 1)
    chip_to_unit = np.array([[step, 0.0, -padding], [0.0, step, -padding]])
    return _compose(to_ffhq_matrix(), chip_to_unit)


def arcface_matrix(size: int = 112) -> np.ndarray:
    """2x3 affine: ArcFace-template crop pixel -> normalised FFHQ ``u`` for the mean face.

    The mean face's 5 points (eye centres = mean of the 6 eye-contour points, nose tip = point 30, mouth
    corners 48 / 54) are matched to :data:`ARCFACE_TEMPLATE_112` with a least-squares similarity
    (as OpenCV's ``alignCrop`` does with the detector's landmarks); ``size`` rescales the template.
    """
    pts = _mean_face_in_ffhq()
    src = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])
    dst = ARCFACE_TEMPLATE_112 * (size / 112.0)
    return similarity_lstsq(dst, src)


def similarity_lstsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift; no reflection) with ``dst ~ A src``."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    n = len(src)
    a = np.zeros((2 * n, 4))
    a[0::2] = np.stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)], 1)
    a[1::2] = np.stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)], 1)
    (p, q, tx, ty), *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    return np.array([[p, -q, tx], [q, p, ty]])


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine ``outer o inner``."""
    o = np.vstack([outer, [0, 0, 1]])
    i = np.vstack([inner, [0, 0, 1]])
    return (o @ i)[:2]


def affine_crop(
    images: torch.Tensor,
    matrix: np.ndarray | torch.Tensor,
    size: int,
    fill: float = -1.0,
    antialias: bool = True,
) -> torch.Tensor:
    """Differentiable crop ``(B, C, H, W) -> (B, C, size, size)`` along a fixed affine.

    ``matrix`` (2x3) maps an output pixel index ``(i, j, 1)`` to normalised input coordinates ``u`` (see
    the module docstring). Sampling is bilinear (``grid_sample``). When the crop shrinks the input by more
    than 1.5x, the whole image is first resized with an antialiased bilinear filter so that one output pixel
    spans about one input pixel (dlib and OpenCV reduce aliasing in the same spirit). Points outside the
    image read ``fill`` (``-1`` = black in pada's ``[-1, 1]`` range, as dlib and OpenCV pad with zeros).
    """
    b, c, h, w = images.shape
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
    # output pixel spacing in input pixels (the affine is a similarity, so columns have equal length)
    spacing = float(torch.linalg.norm(m[:, 0] * torch.tensor([w, h], dtype=m.dtype)))
    x = images
    if antialias and spacing > 1.5:
        nh, nw = max(1, round(h / spacing)), max(1, round(w / spacing))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    idx = torch.arange(size, dtype=torch.float64)
    jj, ii = torch.meshgrid(idx, idx, indexing="ij")  # rows, cols
    ones = torch.ones_like(ii)
    coords = torch.stack([ii, jj, ones], -1) @ m.T  # (size, size, 2) in u
    grid = (coords * 2 - 1).to(dtype=x.dtype, device=x.device).expand(b, size, size, 2)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


__getattr__ = renamed(__name__, {"ffhq_quad": "ffhq_square"})
