"""Photos and frames → the faces in them, each with its emotion, and the picture with emoji drawn.

``python -m common predict emojify photo.jpg [--out annotated.png] [--json] [--whole]``

How an image becomes faces: an image that is small (longer side at most
``faces.whole_image_max_side`` = 96 pixels) and roughly square (sides within 4:5) is taken to be an
already-cropped face, such as a FER2013 image, and classified whole (``"whole_image": true``).
In any other image the face detector (``faces.detector``: RetinaFace, else the Haar cascade) looks
for faces; each is cropped, resized to 48x48 grayscale and classified, and an image without a face
gives ``"faces": []``. ``--whole`` classifies every image whole;
``--set faces.whole_image_max_side=0`` searches every image for faces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import keras
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.core.config import Config
from common.core.errors import UserError, per_input
from common.core.project import ModelIO, Option
from common.kit.images import read_image_sized
from projects.emojify.classes import CLASS_NAMES
from projects.emojify.data import to_model_input
from projects.emojify.emoji import emoji_image
from projects.emojify.faces import FaceDetector, RetinaFaceDetector, crop_faces, make_detector, to_gray
from projects.emojify.model import serving_model

# What `python -m common serve` offers: POST /api/emojify/predict with one photo (field `file`),
# `?whole=true` as --whole, and `?annotated=true` for the picture --out would write.
WEB_API = {
    "verb": "predict",
    "upload": ".png",
    "upload_help": "a photo (PNG, JPEG, ...)",
    "picture_option": "out",
}

# A photo is read at most this size: the face search looks at it at most 1,280 pixels wide (see
# FaceReader), and a larger one only costs memory. Boxes are given in the photo's own pixels.
MAX_SIDE = 2048

# What --out may be called when it names one picture.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def describe_io(config: Config) -> ModelIO:
    """What an exported emojify model takes and gives (written into ``export.json``)."""
    views = "the views of each face set by model.test_crops and model.mirror_average are averaged inside"
    return ModelIO(
        input=(
            "48x48x1 grayscale face crops, pixels 0-255 as float32, each framed like FER2013's faces (the "
            "face filling the square, no margin). Finding and cropping the faces of a photo or webcam "
            "frame stays in Python: projects/emojify/faces.py (make_detector, crop_faces)"
        ),
        output=f"7 probabilities, one per emotion, in the order of classes (FER2013's codes 0-6); {views}",
        classes=CLASS_NAMES,
    )


def classify_faces(model: keras.Model, faces: np.ndarray) -> np.ndarray:
    """Emotion probabilities for (N, 48, 48) uint8 faces, shape (N, 7).

    ``predict_on_batch`` runs the compiled graph once, without ``predict``'s per-call setup
    (tens of milliseconds): what a live webcam loop needs.
    """
    if len(faces) == 0:
        return np.zeros((0, len(CLASS_NAMES)), np.float32)
    return np.asarray(model.predict_on_batch(to_model_input(faces)))


@dataclass
class FaceReader:
    """Finds and classifies the faces of a picture, and draws their emoji: the work shared by
    ``predict``, the webcam demo and the benchmark.

    Attributes:
        model: the saved emotion classifier (raw 48x48 pixels in).
        detector: the face detector (``make_detector``).
        photo_search: ``(max_width, min_face_fraction)`` for photos: thorough.
        frame_search: the same for webcam frames: fast, for faces close to the camera.
        whole_image_max_side: see the module docstring (0 = never classify an image whole).
    """

    model: keras.Model
    detector: FaceDetector | RetinaFaceDetector = field(default_factory=FaceDetector)
    photo_search: tuple[int, float] = (1280, 0.05)
    frame_search: tuple[int, float] = (320, 0.15)
    whole_image_max_side: int = 96

    @classmethod
    def from_config(cls, model: keras.Model, config: Config) -> FaceReader:
        """A reader with the ``[faces]`` settings of a model's config, serving the model as that
        config says (``model.mirror_average``)."""
        faces = config.faces
        return cls(
            serving_model(model, config),
            make_detector(faces),
            photo_search=(faces.photo_width, faces.photo_min_face),
            frame_search=(faces.frame_width, faces.frame_min_face),
            whole_image_max_side=faces.whole_image_max_side,
        )

    def read(
        self, image: np.ndarray, whole: bool | None = None, live: bool = False
    ) -> tuple[list[dict], bool]:
        """The faces of an RGB or grayscale uint8 image, largest first.

        Args:
            image: the picture.
            whole: ``True`` classifies the image whole as one face; ``False`` never does;
                ``None`` does so only for a small, square image (an already-cropped face).
            live: a webcam frame (the fast search) rather than a photo (the thorough one).

        Returns:
            ``(faces, whole_image)``: one ``{"box": [x, y, w, h], "label", "confidence"}`` per face,
            and whether the image was classified whole.
        """
        gray = to_gray(image)
        height, width = gray.shape
        is_whole = bool(whole) or (whole is None and self.looks_like_a_face_crop(width, height))
        if is_whole:
            boxes = [(0, 0, width, height)]
        else:
            boxes = self.detector.detect(gray, *(self.frame_search if live else self.photo_search))
        probabilities = classify_faces(self.model, crop_faces(gray, boxes))
        faces = [
            {
                "box": [int(value) for value in box],
                "label": CLASS_NAMES[int(row.argmax())],
                "confidence": round(float(row.max()), 4),
            }
            for box, row in zip(boxes, probabilities)
        ]
        return faces, is_whole

    def looks_like_a_face_crop(self, width: int, height: int) -> bool:
        """Small and roughly square, as FER2013's 48x48 faces are."""
        return 0 < max(width, height) <= self.whole_image_max_side and max(width, height) <= 1.25 * min(
            width, height
        )

    def process_frame(self, frame: np.ndarray) -> tuple[list[dict], np.ndarray]:
        """One webcam frame (RGB uint8) → its faces and the frame with their emoji drawn."""
        faces, _ = self.read(frame, whole=False, live=True)
        return faces, annotate(frame, faces)


# One colour per face, shared by its box, its label and the ring round its emoji, so that in a
# photo of several people each emoji is tied to its face by colour as well as by place.
FACE_COLOURS = (
    (255, 204, 77),
    (90, 200, 250),
    (255, 120, 200),
    (130, 220, 100),
    (255, 150, 60),
    (185, 160, 255),
)
_MIN_EMOJI = 40  # Pixels: smaller emoji cannot be told apart.


def annotate(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """The RGB image with a box round each face, its emoji beside it and its label above.

    Each emoji sits on the side of its own face that keeps it well away from every other face,
    box, label and emoji (see ``place_annotations``), ringed in its face's colour.
    """
    picture = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    places = place_annotations(faces, picture.width, picture.height)
    for face, place in zip(faces, places):
        x, y, size = place["emoji"]
        emoji = emoji_image(face["label"], size)
        picture.paste(emoji, (x, y), emoji)
        if len(faces) > 1:
            draw.ellipse([x, y, x + size - 1, y + size - 1], outline=place["colour"], width=place["line"])
    # Boxes and labels last, so no emoji hides them.
    for face, place in zip(faces, places):
        x, y, w, h = face["box"]
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=place["colour"], width=place["line"])
        left, top, right, bottom = place["label"]
        draw.rectangle([left, top, right, bottom], fill=place["colour"])
        text_left, text_top, _, _ = draw.textbbox((0, 0), _label_text(face), font=place["font"])
        draw.text(
            (left + 4 - text_left, top + 3 - text_top), _label_text(face), fill=(0, 0, 0), font=place["font"]
        )
    return np.asarray(picture)


def place_annotations(faces: list[dict], width: int, height: int) -> list[dict]:
    """Where ``annotate`` draws each face's label and emoji in a ``width`` x ``height`` picture.

    The label goes above its box (else below, else inside its top edge). The emoji goes beside its
    face, right or left, vertically centred on it, as large as fits up to the face's height (256 at
    most, 40 at least): in a square that stays inside the picture, overlaps no other face, label
    or emoji, and is clearly nearer its own face than any other (at least the emoji's own size
    away from every other face, against a few pixels from its own). Without such room beside the
    face, the same is tried under it and over it; failing that, the emoji covers the face's
    centre. Faces are placed in the order given (``read`` lists the largest first).

    Returns:
        One ``{"emoji": (x, y, size), "label": (left, top, right, bottom), "colour", "line",
        "font"}`` per face (``{"box": [x, y, w, h], "label", "confidence"}``, as ``read`` gives).
    """
    boxes = [tuple(face["box"]) for face in faces]
    fonts = [_font(max(12, min(40, h // 7))) for _, _, _, h in boxes]
    labels = [_label_box(face, font, height) for face, font in zip(faces, fonts)]
    placed: list[tuple[int, int, int, int]] = []
    result = []
    for index, (x, y, w, h) in enumerate(boxes):
        others = [box for other, box in enumerate(boxes) if other != index]
        obstacles = [*others, *(_as_xywh(label) for label in labels), *placed]
        emoji = _emoji_beside((x, y, w, h), others, obstacles, width, height)
        placed.append((emoji[0], emoji[1], emoji[2], emoji[2]))
        result.append(
            {
                "emoji": emoji,
                "label": labels[index],
                "colour": FACE_COLOURS[index % len(FACE_COLOURS)],
                "line": max(2, h // 60),
                "font": fonts[index],
            }
        )
    return result


def _emoji_beside(
    box: tuple[int, int, int, int],
    other_faces: list[tuple],
    obstacles: list[tuple],
    width: int,
    height: int,
) -> tuple[int, int, int]:
    x, y, w, h = box
    gap = max(4, h // 40)
    # Sizes are multiples of 8, so a live stream reuses a few cached emoji.
    largest = int(min(max(_MIN_EMOJI, h), 256)) // 8 * 8
    sizes = range(largest, _MIN_EMOJI - 1, -8)

    def beside(size: int) -> list[tuple[int, int]]:
        top = y + (h - size) // 2
        return [(x + w + gap, top), (x - gap - size, top)]

    def below_or_above(size: int) -> list[tuple[int, int]]:
        left = x + (w - size) // 2
        return [(left, y + h + gap), (left, y - gap - size)]

    # Beside the face first, as large as fits; then under or over it (faces side by side in a
    # row leave no room between them); only then over the face itself.
    for places in (beside, below_or_above):
        for size in sizes:
            for left, top in places(size):
                top = max(0, min(top, height - size)) if places is beside else top
                square = (left, top, size, size)
                if left < 0 or top < 0 or left + size > width or top + size > height:
                    continue
                if any(_overlaps(square, obstacle, gap) for obstacle in obstacles):
                    continue
                # Between two faces only with a whole emoji's width to spare before the other
                # one: closer, and the eye pairs it with either face.
                if all(_distance(square, face) >= max(3 * gap, size) for face in other_faces):
                    return left, top, size
    return x + (w - largest) // 2, max(0, min(y + (h - largest) // 2, height - largest)), largest


_PROBE = ImageDraw.Draw(Image.new("RGB", (1, 1)))  # Measures text before there is a picture.


def _label_text(face: dict) -> str:
    return f"{face['label']} {face['confidence']:.0%}"


def _label_box(
    face: dict, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, height: int
) -> tuple[int, int, int, int]:
    """The label's background: above the box, else below it, else inside its top edge."""
    x, y, w, h = face["box"]
    left, top, right, bottom = _PROBE.textbbox((0, 0), _label_text(face), font=font)
    text_width, text_height = right - left + 8, bottom - top + 6
    if y - text_height - 2 >= 0:
        text_y = y - text_height - 2
    elif y + h + 2 + text_height <= height:
        text_y = y + h + 2
    else:
        text_y = y + max(2, h // 60)
    return x, text_y, x + text_width, text_y + text_height


def _as_xywh(corners: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    left, top, right, bottom = corners
    return left, top, right - left + 1, bottom - top + 1


def _overlaps(a: tuple, b: tuple, margin: int = 0) -> bool:
    """Whether two ``(x, y, w, h)`` rectangles come closer than ``margin`` pixels."""
    return (
        a[0] < b[0] + b[2] + margin
        and b[0] < a[0] + a[2] + margin
        and a[1] < b[1] + b[3] + margin
        and b[1] < a[1] + a[3] + margin
    )


def _distance(a: tuple, b: tuple) -> float:
    """The shortest distance between two ``(x, y, w, h)`` rectangles (0 when they touch)."""
    dx = max(0, b[0] - (a[0] + a[2]), a[0] - (b[0] + b[2]))
    dy = max(0, b[1] - (a[1] + a[3]), a[1] - (b[1] + b[3]))
    return float(np.hypot(dx, dy))


def enlarged(image: np.ndarray, faces: list[dict], at_least: int = 240) -> tuple[np.ndarray, list[dict]]:
    """A small picture (a 48x48 face) blown up in whole steps on a white page with room above for
    the label and beside for the emoji, its boxes moved to match; larger pictures as they are."""
    factor = -(-at_least // max(image.shape[:2]))
    if factor <= 1:
        return image, faces
    big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    if big.ndim == 2:
        big = np.stack([big] * 3, axis=-1)
    top = 48
    page = np.full((big.shape[0] + top, 2 * big.shape[1] + 8, 3), 255, np.uint8)
    page[top:, : big.shape[1]] = big
    moved = [
        {
            **face,
            "box": [
                face["box"][0] * factor,
                face["box"][1] * factor + top,
                face["box"][2] * factor,
                face["box"][3] * factor,
            ],
        }
        for face in faces
    ]
    return page, moved


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's built-in font scales with FreeType; an older Pillow gets its bitmap font.
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def predict(
    model: keras.Model,
    inputs: list[str],
    config: Config,
    *,
    out: Annotated[
        Path | None,
        Option(
            "write the picture with each face's emoji and label (a file for one input, a folder for several)",
            web=False,  # A path on the server's disk: the web API returns the picture instead.
        ),
    ] = None,
    whole: Annotated[
        bool, Option("classify each image whole as one cropped face, without looking for faces")
    ] = False,
) -> Iterator[dict]:
    """Finds, classifies and (with ``--out``) draws the faces of each image file, one at a time,
    so a thousand phone photos take the memory of one.

    Yields:
        One ``{"input", "faces": [{"box", "label", "confidence"}], "whole_image"}`` per file, in
        order, plus ``"annotated"`` (the written file) with ``--out``; a file that cannot be read
        gives ``{"input", "error"}`` and the others are still answered.
    """
    if not inputs:
        raise UserError("give one or more photos: python -m common predict emojify photo.jpg")
    targets = _output_paths(inputs, Path(out)) if out is not None else [None] * len(inputs)
    reader = FaceReader.from_config(model, config)

    target_of = dict(zip(inputs, targets))

    def read_one(path: str) -> dict:
        target = target_of[path]
        image, (width, height) = read_image_sized(path, mode="RGB", max_side=MAX_SIDE)  # errors name it
        faces, is_whole = reader.read(image, whole=True if whole else None)
        scale = (width / image.shape[1], height / image.shape[0])
        result = {"input": str(path), "faces": _scaled(faces, scale), "whole_image": is_whole}
        if target is not None:
            _save(annotate(*enlarged(image, faces)), target)
            result["annotated"] = str(target)
        return result

    return per_input(inputs, read_one)


def _scaled(faces: list[dict], scale: tuple[float, float]) -> list[dict]:
    """The faces of a picture read scaled down, their boxes in the picture's own pixels."""
    if scale == (1.0, 1.0):
        return faces
    x_scale, y_scale = scale
    return [
        {**face, "box": [round(x * x_scale), round(y * y_scale), round(w * x_scale), round(h * y_scale)]}
        for face in faces
        for x, y, w, h in [face["box"]]
    ]


def _output_paths(inputs: list[str], out: Path) -> list[Path]:
    if len(inputs) > 1 and out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir():
        raise UserError(
            f"--out {out}: {len(inputs)} photos need a folder for their pictures, not a file name; "
            f"e.g. --out {out.with_suffix('')}"
        )
    if len(inputs) == 1 and not out.is_dir():
        if out.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"--out {out}: give an image file name ending in .png or .jpg")
        if not out.parent.is_dir():
            raise UserError(f"--out {out}: folder {out.parent} does not exist")
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{Path(path).stem}-emoji.png" for path in inputs]
    if len(set(names)) != len(names):
        # Same file names from different folders: number them to keep every picture.
        names = [f"{index:03d}-{name}" for index, name in enumerate(names)]
    return [out / name for name in names]


def _save(image: np.ndarray, target: Path) -> None:
    try:
        Image.fromarray(image).save(target)
    except (OSError, ValueError) as error:
        raise UserError(f"--out {target}: cannot write the picture ({error})") from None


def format_prediction(result: dict) -> str:
    """``photo.jpg: 2 faces: happy (91%) at [40, 30, 120, 120]; neutral (55%) at [...]``."""
    faces = result["faces"]
    written = f" → {result['annotated']}" if "annotated" in result else ""
    if not faces:
        return f"{result['input']}: no face found (--whole reads the picture as one face){written}"
    if result.get("whole_image"):
        face = faces[0]
        label = f"{face['label']} ({face['confidence']:.0%})"
        return f"{result['input']} (whole image as one face): {label}{written}"
    described = "; ".join(f"{face['label']} ({face['confidence']:.0%}) at {face['box']}" for face in faces)
    count = f"{len(faces)} face{'s' if len(faces) > 1 else ''}"
    return f"{result['input']}: {count}: {described}{written}"
