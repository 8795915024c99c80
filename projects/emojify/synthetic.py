"""A generated sample of simple synthetic faces, so the pipeline runs offline without FER2013.

Each face is a light oval on a darker background with eyes, eyebrows and a mouth whose shapes
follow the emotion (a smile for happy, an open round mouth and raised brows for surprise, brows
slanted down to the nose for angry...). Position, size, tilt, skin and background shades, stroke
widths and noise vary, so a model has something to learn, but much less than on real faces:
accuracy on this sample says the pipeline works, never how well a model reads real emotions.
"""

from __future__ import annotations

import cv2
import numpy as np

from projects.emojify.classes import CLASS_NAMES

SIZE = 48
_SCALE = 4  # Drawn at 4x and reduced, for smooth (anti-aliased) strokes.


def synthetic_faces(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``per_class`` faces of each emotion: uint8 images (N, 48, 48) and labels (N,).

    The same ``per_class`` and ``seed`` always give the same faces, in the same order.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), per_class)
    rng.shuffle(labels)
    images = np.stack([draw_face(CLASS_NAMES[label], rng) for label in labels])
    return images, labels.astype(np.int64)


def draw_face(emotion: str, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Draws one face showing ``emotion`` as a (size, size) uint8 image, varied by ``rng``."""
    big = size * _SCALE
    background = rng.uniform(20, 110)
    canvas = np.full((big, big), background, np.float32)
    # A soft light gradient across the picture, as from a window on one side.
    ramp = np.linspace(-1, 1, big, dtype=np.float32)
    canvas += rng.uniform(-25, 25) * ramp[None, :] + rng.uniform(-15, 15) * ramp[:, None]

    unit = big / 48  # Face geometry is written in 48-pixel units, then scaled.
    centre_x = big / 2 + rng.uniform(-2.5, 2.5) * unit
    centre_y = big / 2 + rng.uniform(-1.5, 2.5) * unit
    scale = rng.uniform(0.85, 1.08)
    skin = rng.uniform(140, 225)
    ink = rng.uniform(10, 60)
    stroke = max(1, int(round(rng.uniform(1.2, 2.0) * unit * scale)))

    def point(x: float, y: float) -> tuple[int, int]:
        return int(round(centre_x + x * unit * scale)), int(round(centre_y + y * unit * scale))

    def length(value: float) -> int:
        return max(1, int(round(value * unit * scale)))

    cv2.ellipse(canvas, point(0, 0), (length(17), length(21)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    features = _FEATURES[emotion]
    jitter = rng.uniform(-0.6, 0.6, size=8)
    eye_y = -5 + jitter[0]

    for side in (-1, 1):
        eye_x = side * (7 + jitter[1])
        # Eyebrows: inner end (near the nose) and outer end heights, relative to the eye.
        inner = eye_y - features["brow_inner"] + jitter[2]
        outer = eye_y - features["brow_outer"] + jitter[3]
        cv2.line(canvas, point(side * 2.5, inner), point(side * 11, outer), ink, stroke, cv2.LINE_AA)
        if emotion == "disgust" and side == 1:
            # One brow pulled up higher than the other.
            cv2.line(
                canvas, point(side * 2.5, inner - 2), point(side * 11, outer - 2), ink, stroke, cv2.LINE_AA
            )
        eye_height = features["eye_open"] + jitter[4] * 0.3
        if emotion == "happy":
            # Smiling eyes: upward arcs.
            cv2.ellipse(
                canvas, point(eye_x, eye_y + 1), (length(3), length(2)), 0, 180, 360, ink, stroke, cv2.LINE_AA
            )
        else:
            cv2.ellipse(
                canvas,
                point(eye_x, eye_y),
                (length(3), length(max(0.6, eye_height))),
                0,
                0,
                360,
                ink,
                -1,
                cv2.LINE_AA,
            )
    # The nose: a short vertical shade.
    cv2.line(canvas, point(0, -1), point(0, 4), skin * 0.75, stroke, cv2.LINE_AA)
    _draw_mouth(canvas, emotion, point, length, ink, stroke, jitter[5:])

    if emotion == "angry" or emotion == "disgust":
        # A wrinkle between the brows.
        cv2.line(canvas, point(-1, eye_y - 3), point(1, eye_y - 3), skin * 0.7, stroke, cv2.LINE_AA)

    angle = rng.uniform(-10, 10)
    rotation = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
    canvas = cv2.warpAffine(canvas, rotation, (big, big), borderMode=cv2.BORDER_REFLECT)
    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    image += rng.normal(0, rng.uniform(2, 9), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_mouth(canvas, emotion, point, length, ink, stroke, jitter) -> None:
    mouth_y = 10 + jitter[0]
    width = 6 + jitter[1]
    if emotion == "happy":
        cv2.ellipse(
            canvas,
            point(0, mouth_y - 1),
            (length(width + 1), length(4 + jitter[2])),
            0,
            0,
            180,
            ink,
            stroke,
            cv2.LINE_AA,
        )
    elif emotion == "sad":
        cv2.ellipse(
            canvas,
            point(0, mouth_y + 3),
            (length(width), length(3 + jitter[2])),
            0,
            180,
            360,
            ink,
            stroke,
            cv2.LINE_AA,
        )
    elif emotion == "surprise":
        cv2.ellipse(
            canvas,
            point(0, mouth_y + 1),
            (length(3.5), length(4.5 + jitter[2])),
            0,
            0,
            360,
            ink,
            -1,
            cv2.LINE_AA,
        )
    elif emotion == "fear":
        # A wide, slightly open mouth, stretched sideways.
        cv2.ellipse(
            canvas, point(0, mouth_y), (length(width + 1), length(1.8)), 0, 0, 360, ink, -1, cv2.LINE_AA
        )
    elif emotion == "angry":
        cv2.line(
            canvas,
            point(-width + 1, mouth_y + 1),
            point(width - 1, mouth_y + 1),
            ink,
            stroke + 1,
            cv2.LINE_AA,
        )
        cv2.line(
            canvas, point(-width + 1, mouth_y + 1), point(-width, mouth_y + 2.5), ink, stroke, cv2.LINE_AA
        )
        cv2.line(canvas, point(width - 1, mouth_y + 1), point(width, mouth_y + 2.5), ink, stroke, cv2.LINE_AA)
    elif emotion == "disgust":
        # A lopsided wavy mouth, one corner raised.
        points = np.array(
            [
                point(-width, mouth_y + 1),
                point(-width / 3, mouth_y - 1),
                point(width / 3, mouth_y + 1),
                point(width, mouth_y - 2.5),
            ],
            np.int32,
        )
        cv2.polylines(canvas, [points], False, ink, stroke, cv2.LINE_AA)
    else:  # neutral
        cv2.line(canvas, point(-width, mouth_y), point(width, mouth_y), ink, stroke, cv2.LINE_AA)


# Brow heights above the eye at the inner and outer ends (larger = higher), and eye openness.
_FEATURES = {
    "angry": {"brow_inner": 1.5, "brow_outer": 4.5, "eye_open": 1.3},
    "disgust": {"brow_inner": 2.5, "brow_outer": 3.5, "eye_open": 0.9},
    "fear": {"brow_inner": 6.0, "brow_outer": 3.5, "eye_open": 2.6},
    "happy": {"brow_inner": 4.0, "brow_outer": 4.0, "eye_open": 1.8},
    "sad": {"brow_inner": 5.5, "brow_outer": 2.5, "eye_open": 1.4},
    "surprise": {"brow_inner": 7.0, "brow_outer": 7.0, "eye_open": 2.8},
    "neutral": {"brow_inner": 4.0, "brow_outer": 4.0, "eye_open": 1.8},
}
