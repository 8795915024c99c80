"""Finding faces in photos and frames with OpenCV's Haar cascade, and cropping them to 48x48.

The cascade file ships inside the ``opencv-python(-headless)`` wheel (``cv2.data.haarcascades``),
so detection works offline with no path to configure. OpenCV 5 removed ``CascadeClassifier``;
the project pins ``opencv-python-headless<5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.errors import UserError
from projects.emojify.synthetic import SIZE


@dataclass(frozen=True)
class DetectorSettings:
    """How faces are searched for; the defaults are the ``[faces]`` table of ``config.toml``."""

    cascade: str = "haarcascade_frontalface_default.xml"
    detect_width: int = 320
    scale_factor: float = 1.15
    min_neighbors: int = 5
    min_face_fraction: float = 0.1

    @classmethod
    def from_config(cls, config) -> DetectorSettings:
        faces = config.faces
        return cls(
            cascade=faces.cascade,
            detect_width=faces.detect_width,
            scale_factor=faces.scale_factor,
            min_neighbors=faces.min_neighbors,
            min_face_fraction=faces.min_face_fraction,
        )


class FaceDetector:
    """A Haar cascade that returns face boxes ``(x, y, w, h)`` in the photo's own pixels.

    The photo is shrunk to ``detect_width`` before the search, which makes a 640x480 webcam frame
    about four times cheaper to scan, and the boxes are scaled back.
    """

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        if not hasattr(cv2, "CascadeClassifier"):
            raise UserError(
                f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in OpenCV 5); "
                "install opencv-python-headless<5"
            )
        path = Path(cv2.data.haarcascades) / self.settings.cascade
        if not path.is_file():
            raise UserError(f"face detector {self.settings.cascade!r} not found in {path.parent}")
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise UserError(f"could not load the face detector {path}")

    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes in a grayscale uint8 image, largest first."""
        height, width = gray.shape[:2]
        scale = min(1.0, self.settings.detect_width / width) if self.settings.detect_width > 0 else 1.0
        small = (
            gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        small = cv2.equalizeHist(small)
        smallest = max(20, int(round(min(small.shape[:2]) * self.settings.min_face_fraction)))
        if smallest > min(small.shape[:2]):
            return []
        found = self.cascade.detectMultiScale(
            small,
            scaleFactor=self.settings.scale_factor,
            minNeighbors=self.settings.min_neighbors,
            minSize=(smallest, smallest),
        )
        boxes = [
            (
                int(round(x / scale)),
                int(round(y / scale)),
                min(int(round(w / scale)), width - int(round(x / scale))),
                min(int(round(h / scale)), height - int(round(y / scale))),
            )
            for x, y, w, h in (found if len(found) else [])
        ]
        return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)


def crop_faces(gray: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """The faces in ``boxes``, each resized to a (48, 48) uint8 crop like FER2013's; (N, 48, 48)."""
    crops = [
        cv2.resize(gray[y : y + h, x : x + w], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        for x, y, w, h in boxes
    ]
    return np.stack(crops) if crops else np.zeros((0, SIZE, SIZE), np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """An RGB (or already grayscale) uint8 image as grayscale."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
