"""A corpus of awkward files mixed into a face2comics folder, built by the tests (no binary fixtures)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import SAMPLE


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", **kwargs)
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def add_bad_files(root: Path) -> tuple[dict[str, str], set[str]]:
    """Adds the corpus under root/faces and root/comics. Returns (file name -> expected skip reason
    fragment, names expected to be used)."""
    faces, comics = root / "faces", root / "comics"
    photo = Image.open(SAMPLE / "faces" / "0.jpg").convert("RGB")
    skipped: dict[str, str] = {}

    (faces / "zero.jpg").write_bytes(b"")
    skipped["zero.jpg"] = "empty file"
    data = (SAMPLE / "faces" / "1.jpg").read_bytes()
    (faces / "truncated.jpg").write_bytes(data[: len(data) // 3])
    skipped["truncated.jpg"] = "corrupt"
    (comics / "text.jpg").write_text("this is a text file with a .jpg name\n")
    skipped["text.jpg"] = "not an image"
    png = bytearray(_png(photo.resize((64, 64))))
    png[29] ^= 0xFF  # the IHDR chunk's CRC
    (comics / "badcrc.png").write_bytes(bytes(png))
    skipped["badcrc.png"] = "corrupt"
    (faces / "bomb.png").write_bytes(_png(Image.new("L", (10_000, 10_000))))
    skipped["bomb.png"] = "too large"
    os.symlink(root / "nowhere" / "gone.jpg", faces / "gone.jpg")  # unreadable: points at nothing
    skipped["gone.jpg"] = "No such file"
    os.symlink(comics / "loop.jpg", comics / "loop.jpg")  # a symlink to itself
    skipped["loop.jpg"] = "Too many levels of symbolic links"
    twin = _jpeg(Image.open(SAMPLE / "comics" / "3.jpg"), quality=70)  # new bytes: no sample file is identical
    (faces / "dup_face.jpg").write_bytes(twin)
    (comics / "dup_comic.jpg").write_bytes(twin)
    skipped["dup_face.jpg"] = skipped["dup_comic.jpg"] = "identical file in faces/ and comics/"

    (faces / "deep16.png").write_bytes(_png(Image.fromarray(
        (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))))
    (faces / "cmyk.jpg").write_bytes(_jpeg(photo.convert("CMYK")))
    (comics / "gray.jpg").write_bytes(_jpeg(Image.open(SAMPLE / "comics" / "4.jpg").convert("L")))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    (faces / "exif.jpg").write_bytes(_jpeg(photo.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes()))
    return skipped, {"deep16.png", "cmyk.jpg", "gray.jpg", "exif.jpg"}
