"""Faces: robust image loading, YuNet detection, FFHQ alignment with its inverse, paste-back.

See docs/faces.md. Submodules:

* :mod:`pada.faces.io` -- :func:`load_image`, :func:`save_image`, :func:`to_tensor`, :func:`to_uint8`;
* :mod:`pada.faces.detect` -- :class:`Face`, :class:`FaceDetector` (YuNet through OpenCV);
* :mod:`pada.faces.align` -- :class:`AlignedFace`, :func:`align_face`, :func:`align_image`,
  :func:`face_tensors` (photo or aligned crop -> model input, the one way), :func:`paste_back`,
  :func:`match_colours`.
"""

from pada.faces.align import (
    AlignedFace,
    align_face,
    align_image,
    aligned_crop,
    face_tensors,
    feather_mask,
    ffhq_quad,
    match_colours,
    paste_back,
)
from pada.faces.detect import LANDMARK_NAMES, Face, FaceDetector, default_detector
from pada.faces.io import IMAGE_EXTENSIONS, load_image, save_image, to_tensor, to_uint8

__all__ = [
    "IMAGE_EXTENSIONS",
    "LANDMARK_NAMES",
    "AlignedFace",
    "Face",
    "FaceDetector",
    "align_face",
    "align_image",
    "aligned_crop",
    "default_detector",
    "face_tensors",
    "feather_mask",
    "ffhq_quad",
    "load_image",
    "match_colours",
    "paste_back",
    "save_image",
    "to_tensor",
    "to_uint8",
]
