"""Reading user images, with one clear error line for a missing, foreign or truncated file."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.core.errors import UserError

# Pillow refuses images over about 179 million pixels (twice its MAX_IMAGE_PIXELS) as possible
# decompression bombs; the warning it gives between that and half of it becomes the same refusal:
# no digit or face needs more than a 64-megapixel picture. A reader may ask for fewer.
MAX_PIXELS = 64_000_000
# Bytes that the pictures being read at once may take, across threads (a server's requests): each
# read waits until its picture fits. A 64-megapixel RGBA PNG takes about 330 MB while it is decoded
# and cut down, so three such reads run side by side and the next waits; small ones never do.
PICTURE_MEMORY_BYTES = 2**30
# What a picture costs after it is read, per pixel of the (reduced) array handed back: its copies
# in the caller's preprocessing (grayscale, floats, a drawn picture). Held until the request ends.
WORKING_BYTES_PER_PIXEL = 24
STRIP_ROWS = 256  # Rows of the full picture converted at a time while it is reduced.
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION = 0x0112  # The EXIF tag.


class PictureMemory:
    """A count of the bytes the pictures being read take, shared by all threads, that no read may
    push over ``total`` (one alone always may: its reader's pixel limit bounds it).

    A server has tens of request threads; a few large pictures decoded at once took gigabytes. A
    read reserves its decoded size before decoding; inside :meth:`request` it then keeps, until the
    request ends, what the caller's preprocessing of the reduced array costs, so a request's whole
    work is counted and not only its decoding.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.most = 0  # The most ever in use at once: what a test or benchmark reads.
        self._changed = threading.Condition()
        self._local = threading.local()

    def _take(self, nbytes: int) -> None:
        with self._changed:
            while self.used and self.used + nbytes > self.total:
                self._changed.wait()
            self.used += nbytes
            self.most = max(self.most, self.used)

    def _give(self, nbytes: int) -> None:
        if nbytes:
            with self._changed:
                self.used -= nbytes
                self._changed.notify_all()

    @contextmanager
    def request(self) -> Iterator[None]:
        """One request of a server: what its reads keep is given back when it ends."""
        self._local.kept = 0
        try:
            yield
        finally:
            self._give(self._local.kept)
            self._local.kept = None

    @contextmanager
    def reading(self, nbytes: int) -> Iterator[Callable[[int], None]]:
        """Reserves ``nbytes`` for one read (waiting until they fit); yields ``keep(n)``, which
        keeps ``n`` of them (at most ``nbytes``) until the request ends. Outside a request all is
        given back at once: a command's caller reads one picture at a time."""
        in_request = getattr(self._local, "kept", None) is not None
        if in_request:
            self._give(self._local.kept)  # The request's previous picture is done with.
            self._local.kept = 0
        self._take(nbytes)
        kept = 0

        def keep(size: int) -> None:
            nonlocal kept
            kept = min(size, nbytes) if in_request else 0

        try:
            yield keep
        finally:
            self._give(nbytes - kept)
            if in_request:
                self._local.kept = kept


picture_memory = PictureMemory(PICTURE_MEMORY_BYTES)


def read_image(
    path: str | Path, mode: str = "L", *, max_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Reads an image file as a uint8 array in PIL mode ``"L"`` (grayscale) or ``"RGB"``.

    Transparent pixels are laid over white (a drawing saved with a transparent background is
    dark ink on white paper), and the EXIF orientation of phone photos is applied. With
    ``max_side`` a larger picture is scaled down (see :func:`read_image_sized`).

    Raises:
        UserError: the file is missing, is not an image, is truncated or corrupt, or has more
            than ``max_pixels`` pixels to decode.
    """
    return read_image_sized(path, mode, max_side=max_side, max_pixels=max_pixels)[0]


def read_image_sized(
    path: str | Path, mode: str = "L", *, max_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image`, scaled down by a whole factor to at most ``max_side`` pixels on its
    longer side, with the picture's own ``(width, height)`` (orientation applied), so positions
    found in the smaller array can be given in the picture's.

    The picture is never converted at full size: a JPEG is decoded at 1/2, 1/4 or 1/8 of its size
    where that is enough (``Image.draft``), and any other picture is reduced a strip of rows at a
    time (transparency premultiplied, as Pillow's own ``reduce`` does), so a 64-megapixel PNG costs
    its decoded size once rather than six times. The read waits in :data:`picture_memory`.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; pass image files")
    try:
        with Image.open(path) as opened:
            image: Image.Image = opened
            width, height = image.size
            if max_side is not None and max(width, height) > max_side:
                scale = max_side / max(width, height)
                image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
            if image.width * image.height > max_pixels:
                raise UserError(
                    f"{path}: {width}x{height} pixels is too large to read safely "
                    f"(limit {max_pixels / 1_000_000:g} megapixels); scale it down first"
                )
            factor = 1 if max_side is None else max(1, math.ceil(max(image.size) / max_side))
            pixels = image.width * image.height
            reduced = math.ceil(image.width / factor) * math.ceil(image.height / factor)
            # Decoded, plus a strip's conversions, plus the reduced picture's conversions and work.
            cost = pixels * _stored_bytes(image.mode) + STRIP_ROWS * image.width * 8
            cost += reduced * (12 + WORKING_BYTES_PER_PIXEL)
            with picture_memory.reading(cost) as keep:
                image.load()  # Decode now, so a truncated file fails here, not later.
                orientation = image.getexif().get(_ORIENTATION)
                image = _reduced(image, factor)
                if orientation in _TRANSPOSES:
                    image = image.transpose(_TRANSPOSES[orientation])
                if orientation in (5, 6, 7, 8):
                    width, height = height, width
                if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                    rgba = image.convert("RGBA")
                    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    image = Image.alpha_composite(background, rgba)
                array = np.asarray(image.convert(mode))
                keep(array.size * WORKING_BYTES_PER_PIXEL)
            return array, (width, height)
    except Image.DecompressionBombError:
        raise UserError(
            f"{path}: too large to read safely (over {MAX_PIXELS // 1_000_000} megapixels, a possible "
            "decompression bomb); scale it down first"
        ) from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file PIL can read (PNG, JPEG, BMP, ...)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UserError(f"{path}: the image is truncated or corrupt ({error})") from None


def _stored_bytes(mode: str) -> int:
    """Bytes per pixel of a decoded picture in Pillow's memory (three bands take four)."""
    return 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4


def _reduced(image: Image.Image, factor: int) -> Image.Image:
    """``image`` reduced by ``factor`` (each pixel the mean of a ``factor`` square), converted a
    strip of rows at a time into a mode Pillow can reduce, so no full-size copy is ever made."""
    if factor == 1:
        return image
    transparent = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    rows = factor * max(1, STRIP_ROWS // factor)
    result: Image.Image | None = None
    for top in range(0, image.height, rows):
        strip = image.crop((0, top, image.width, min(image.height, top + rows)))
        if transparent:
            strip = strip.convert("RGBA").convert("RGBa")  # Premultiplied: no fringes at the edges.
        elif strip.mode not in ("L", "RGB"):
            strip = strip.convert(
                "L" if strip.mode in ("1", "I", "F") or strip.mode.startswith("I;16") else "RGB"
            )
        small = strip.reduce(factor)
        if result is None:
            result = Image.new(
                small.mode, (math.ceil(image.width / factor), math.ceil(image.height / factor))
            )
        result.paste(small, (0, top // factor))
    assert result is not None
    return result.convert("RGBA") if transparent else result


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
