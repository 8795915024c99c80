"""Reading user images, with one clear error line for a missing, foreign or truncated file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import UserError

# Pillow refuses images over about 179 million pixels (twice its MAX_IMAGE_PIXELS) as possible
# decompression bombs; the warning it gives between that and half of it becomes the same refusal:
# no digit or face needs more than a 64-megapixel picture.
MAX_PIXELS = 64_000_000


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
        with Image.open(path) as opened:
            image: Image.Image = opened
            if image.width * image.height > MAX_PIXELS:
                raise UserError(
                    f"{path}: {image.width}x{image.height} pixels is too large to read safely "
                    f"(limit {MAX_PIXELS // 1_000_000} megapixels); scale it down first"
                )
            image.load()  # Decode now, so a truncated file fails here, not later.
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            return np.asarray(image.convert(mode))
    except Image.DecompressionBombError:
        raise UserError(
            f"{path}: too large to read safely (over {MAX_PIXELS // 1_000_000} megapixels, a possible "
            "decompression bomb); scale it down first"
        ) from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file PIL can read (PNG, JPEG, BMP, ...)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path}: the image is truncated or corrupt ({error})") from None


def expand_folders(inputs: list[str]) -> list[str]:
    """Each folder among ``inputs`` replaced by the image files directly inside it (by name, hidden
    files left out), so ``predict mnist digits/`` reads every digit there.

    Raises:
        UserError: a folder holds no image file.
    """
    extensions = set(Image.registered_extensions())
    expanded = []
    for item in inputs:
        folder = Path(item)
        if not folder.is_dir():
            expanded.append(item)
            continue
        images = sorted(
            str(path)
            for path in folder.iterdir()
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in extensions
        )
        if not images:
            raise UserError(f"{folder}: the folder holds no image file")
        expanded += images
    return expanded
