"""Image bytes -> RGB uint8 at the training size. Used by Spark executors, TF nodes and inference."""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from ..storage import read_bytes

# Pillow refuses images above twice this many pixels; a warning above it becomes our refusal too,
# so a decompression bomb is skipped with a reason instead of eating an executor's memory.
MAX_PIXELS = 89_478_485
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPEG: a file that starts so is an image


class ImageDecodeError(ValueError):
    """The bytes are not a usable image; the message is the reason recorded in the skip list."""


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit and 32-bit integer grayscale: scale to 8 bits instead of clipping to white.
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        image = Image.fromarray(np.clip(pixels * (255.0 / peak), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decodes JPEG/PNG bytes of any mode to a (size, size, 3) uint8 array.

    EXIF orientation is applied; JPEGs are first downscaled in the DCT domain (Pillow's draft), which
    makes a 1024 px photo several times cheaper to bring to 350 px than a full decode.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"image too large ({image.width}x{image.height} pixels, limit {MAX_PIXELS})"
                )
            if image.format == "JPEG":
                image.draft("RGB", (size, size))
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_rgb(image)
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(f"image too large: {e}") from e
    except Image.UnidentifiedImageError as e:
        if data.startswith(IMAGE_SIGNATURES):
            raise ImageDecodeError("corrupt image: its header is damaged (bad checksum or fields)") from e
        raise ImageDecodeError("not an image Pillow can identify") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"corrupt image: {e}") from e


class LoadedImage(NamedTuple):
    """One file read once: its pixels, or why it is skipped; the digest of its bytes either way."""

    pixels: np.ndarray | None
    reason: str | None
    digest: str | None  # None when the file could not be read


def content_digest(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def load_image(path: str, size: int) -> LoadedImage:
    """Reads, fingerprints and decodes one file; a bad file gives its reason instead of raising."""
    try:
        data = read_bytes(path)
    except OSError as e:
        return LoadedImage(None, str(e) or type(e).__name__, None)
    return image_from_bytes(data, size)


def image_from_bytes(data: bytes, size: int) -> LoadedImage:
    """Fingerprints and decodes one image's bytes (a file's, or a table's image column)."""
    digest = content_digest(data)
    try:
        return LoadedImage(decode_image(data, size), None, digest)
    except ImageDecodeError as e:
        return LoadedImage(None, str(e) or type(e).__name__, digest)
