"""Finding faces in photos and frames with OpenCV's Haar cascade, and cropping them to 48x48.

The cascade file ships inside the ``opencv-python(-headless)`` wheel (``cv2.data.haarcascades``),
so detection works offline with no path to configure. OpenCV 5 removed ``CascadeClassifier``;
the project pins ``opencv-python-headless<5``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.errors import UserError
from projects.emojify.synthetic import SIZE


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
        path = Path(cv2.data.haarcascades) / cascade
        if not path.is_file():
            raise UserError(f"face detector {cascade!r} not found in {path.parent}")
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise UserError(f"could not load the face detector {path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

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
        scale = min(1.0, max_width / width) if max_width > 0 else 1.0
        small = (
            gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
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


def crop_faces(gray: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """The faces in ``boxes``, each resized to a (48, 48) uint8 crop like FER2013's; (N, 48, 48).

    The cascade's box already frames a face as FER2013 does (on 220 FER2013 faces pasted into
    frames, the box was a median 0.98 of the FER2013 crop's width, offset by under 2%), so faces are
    cropped at the box, with no margin.
    """
    crops = [
        cv2.resize(gray[y : y + h, x : x + w], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        for x, y, w, h in boxes
    ]
    return np.stack(crops) if crops else np.zeros((0, SIZE, SIZE), np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """An RGB (or already grayscale) uint8 image as grayscale."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
