"""The seven emoji, drawn by the project with Pillow: nothing to download, no licence to check.

Each is drawn once on a large canvas and shrunk (smooth edges), then kept in memory per size.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from projects.emojify.classes import CLASS_NAMES

_CANVAS = 512
_INK = (74, 48, 30, 255)
_YELLOW = (255, 204, 77, 255)
_FACE_COLOURS = {
    "angry": (238, 98, 62, 255),
    "disgust": (158, 196, 92, 255),
    "fear": _YELLOW,
    "happy": _YELLOW,
    "sad": _YELLOW,
    "surprise": _YELLOW,
    "neutral": _YELLOW,
}


@lru_cache(maxsize=64)
def emoji_image(emotion: str, size: int = 128) -> Image.Image:
    """The emoji of an emotion as a ``size`` x ``size`` RGBA image (transparent corners).

    Raises:
        ValueError: ``emotion`` is not one of the seven class names.
    """
    if emotion not in CLASS_NAMES:
        raise ValueError(f"no emoji for {emotion!r}; expected one of {', '.join(CLASS_NAMES)}")
    return _draw_large(emotion).resize((size, size), Image.Resampling.LANCZOS)


@lru_cache(maxsize=len(CLASS_NAMES))
def _draw_large(emotion: str) -> Image.Image:
    image = Image.new("RGBA", (_CANVAS, _CANVAS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    centre = _CANVAS // 2
    radius = 236
    draw.ellipse(
        _box(centre, centre, radius, radius),
        fill=_FACE_COLOURS[emotion],
        outline=(200, 130, 30, 255),
        width=10,
    )
    if emotion == "fear":
        # A pale blue forehead, as the fearful-face emoji has.
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).ellipse(_box(centre, centre, radius - 5, radius - 5), fill=255)
        shade = Image.new("L", image.size, 0)
        ImageDraw.Draw(shade).rectangle([0, 0, _CANVAS, 200], fill=200)
        blue = Image.new("RGBA", image.size, (140, 170, 235, 255))
        image.paste(blue, (0, 0), Image.fromarray(_multiply(mask, shade)))
        draw = ImageDraw.Draw(image)
    _DRAWERS[emotion](draw)
    return image


def _multiply(mask: Image.Image, shade: Image.Image) -> np.ndarray:
    return (np.asarray(mask, dtype=np.uint16) * np.asarray(shade, dtype=np.uint16) // 255).astype(np.uint8)


def _box(x: float, y: float, rx: float, ry: float) -> list[float]:
    return [x - rx, y - ry, x + rx, y + ry]


def _eyes(draw: ImageDraw.ImageDraw, y: float = 210, rx: float = 26, ry: float = 40) -> None:
    for x in (180, 332):
        draw.ellipse(_box(x, y, rx, ry), fill=_INK)


def _round_eyes(draw: ImageDraw.ImageDraw, y: float = 215) -> None:
    for x in (180, 332):
        draw.ellipse(_box(x, y, 44, 50), fill=(255, 255, 255, 255), outline=_INK, width=8)
        draw.ellipse(_box(x, y + 6, 18, 20), fill=_INK)


def _draw_angry(draw: ImageDraw.ImageDraw) -> None:
    draw.line([(120, 150), (230, 195)], fill=_INK, width=24)
    draw.line([(392, 150), (282, 195)], fill=_INK, width=24)
    _eyes(draw, y=235, ry=30)
    draw.arc(_box(256, 400, 90, 50), 200, 340, fill=_INK, width=20)


def _draw_disgust(draw: ImageDraw.ImageDraw) -> None:
    # Squeezed eyes and a wavy, lopsided mouth.
    for x in (180, 332):
        draw.line(
            [(x - 45, 200), (x + 40, 225)] if x < 256 else [(x - 40, 225), (x + 45, 200)], fill=_INK, width=20
        )
    draw.line(
        [(130, 370), (180, 345), (230, 375), (280, 345), (330, 375), (385, 340)],
        fill=_INK,
        width=20,
        joint="curve",
    )


def _draw_fear(draw: ImageDraw.ImageDraw) -> None:
    draw.line([(130, 130), (215, 110)], fill=_INK, width=18)
    draw.line([(382, 130), (297, 110)], fill=_INK, width=18)
    _round_eyes(draw)
    draw.ellipse(_box(256, 380, 70, 55), fill=_INK)
    draw.rectangle([200, 345, 312, 362], fill=(255, 255, 255, 255))


def _draw_happy(draw: ImageDraw.ImageDraw) -> None:
    for x in (180, 332):
        draw.arc(_box(x, 215, 45, 40), 195, 345, fill=_INK, width=20)
    draw.chord(_box(256, 300, 150, 130), 0, 180, fill=_INK)
    draw.chord(_box(256, 300, 130, 22), 0, 180, fill=(255, 255, 255, 255))
    draw.chord(_box(256, 420, 70, 35), 180, 360, fill=(230, 90, 90, 255))


def _draw_sad(draw: ImageDraw.ImageDraw) -> None:
    draw.line([(125, 170), (215, 140)], fill=_INK, width=18)
    draw.line([(387, 170), (297, 140)], fill=_INK, width=18)
    _eyes(draw, y=225)
    draw.arc(_box(256, 420, 100, 60), 200, 340, fill=_INK, width=20)
    # A tear below the left eye.
    draw.ellipse(_box(170, 320, 26, 34), fill=(90, 160, 235, 255))
    draw.polygon([(146, 312), (194, 312), (170, 262)], fill=(90, 160, 235, 255))


def _draw_surprise(draw: ImageDraw.ImageDraw) -> None:
    for x in (180, 332):
        draw.arc(_box(x, 140, 55, 30), 200, 340, fill=_INK, width=16)
    _eyes(draw, y=215, rx=30, ry=42)
    draw.ellipse(_box(256, 375, 52, 62), fill=_INK)


def _draw_neutral(draw: ImageDraw.ImageDraw) -> None:
    _eyes(draw)
    draw.line([(170, 370), (342, 370)], fill=_INK, width=22)


_DRAWERS = {
    "angry": _draw_angry,
    "disgust": _draw_disgust,
    "fear": _draw_fear,
    "happy": _draw_happy,
    "sad": _draw_sad,
    "surprise": _draw_surprise,
    "neutral": _draw_neutral,
}
