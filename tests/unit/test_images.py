import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLE
from tfos_facecnn.data.images import ImageDecodeError, decode_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode,fmt", [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"),
                                      ("P", "PNG"), ("LA", "PNG"), ("1", "PNG")])
def test_any_mode_becomes_rgb_at_the_training_size(mode, fmt):
    image = Image.new("RGB", (100, 80), (200, 30, 30)).convert(mode)
    pixels = decode_image(encode(image, fmt), 48)
    assert pixels.shape == (48, 48, 3) and pixels.dtype == np.uint8


def test_sixteen_bit_png_is_scaled_not_clipped():
    image = Image.fromarray(np.full((20, 20), 32768, dtype=np.uint16))
    pixels = decode_image(encode(image, "PNG"), 10)
    assert 120 <= int(pixels.mean()) <= 135


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    pixels = decode_image(encode(image, "JPEG", exif=exif.tobytes()), 40)
    assert pixels[:20, :, :].mean() > 200 and pixels[25:, :, :].mean() < 50  # white ends on top


def test_real_sample_image():
    pixels = decode_image((SAMPLE / "faces" / "0.jpg").read_bytes(), 350)
    assert pixels.shape == (350, 350, 3) and 20 < pixels.mean() < 235


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"hello, I am text named .jpg", "not an image"),
])
def test_undecodable_bytes_raise_with_a_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data, 32)


def test_truncated_jpeg_is_refused():
    data = (SAMPLE / "faces" / "1.jpg").read_bytes()
    with pytest.raises(ImageDecodeError, match="corrupt"):
        decode_image(data[: len(data) // 3], 32)


def test_decompression_bomb_is_refused():
    image = Image.new("L", (10_000, 10_000))
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(encode(image, "PNG"), 32)
