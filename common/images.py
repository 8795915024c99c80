"""Reading user images, with one clear error line for a missing, foreign or truncated file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import UserError


def read_image(path: str | Path, mode: str = "L") -> np.ndarray:
    """Reads an image file as a uint8 array in PIL mode ``"L"`` (grayscale) or ``"RGB"``.

    Transparent pixels are laid over white (a drawing saved with a transparent background is
    dark ink on white paper), and the EXIF orientation of phone photos is applied.

    Raises:
        UserError: the file is missing, is not an image, or is truncated or corrupt.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; pass image files")
    try:
        with Image.open(path) as image:
            image.load()  # Decode now, so a truncated file fails here, not later.
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            return np.asarray(image.convert(mode))
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file PIL can read (PNG, JPEG, BMP, ...)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path}: the image is truncated or corrupt ({error})") from None
