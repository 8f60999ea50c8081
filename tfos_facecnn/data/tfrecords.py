"""TFRecord examples of prepared images: encoding on Spark executors, parsing in tf.data.

A record holds the image at the training size and its label. JPEG (quality 95) is the default
format: at 350 px it is ~34 KB instead of 367 KB raw (11x less to store and read) and TF decodes it
in about 0.4 ms, a small fraction of a training step; `raw` stores the uint8 pixels (no decode, 11x
the bytes) for storage-rich, CPU-poor clusters.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from ..kerasenv import tensorflow

RECORD_FORMATS = ("jpeg", "raw")
JPEG_QUALITY = 95  # visually lossless at the training size: mean pixel error ~1.3/255 at 350 px
SHUFFLE_BUFFER = 512  # records; JPEG-encoded, so a few tens of MB per node
INTERLEAVE_FILES = 4  # shards read at once per node


def encode_pixels(pixels: np.ndarray, record_format: str) -> bytes:
    if record_format == "raw":
        return pixels.tobytes()
    buffer = io.BytesIO()
    # Pillow's encoder is deterministic for the same pixels and version: re-runs give identical shards.
    # subsampling=0 (4:4:4) keeps full colour resolution: colour texture is what tells comics from photos.
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def serialize_example(pixels: np.ndarray, label: int, source: str, record_format: str) -> bytes:
    """`source` is the file's path inside the data set ('faces/12.jpg'), kept for reports."""
    return serialize_encoded(encode_pixels(pixels, record_format), label, source)


def serialize_encoded(encoded: bytes, label: int, source: str) -> bytes:
    """A record of an image already encoded by encode_pixels (the decode stage of a table keeps them so)."""
    tf = tensorflow()

    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode("utf-8")])),
    }
    # Deterministic: protobuf writes a map's entries (the features) in an order that differs between
    # processes (seen here: two Python workers wrote one image's record with its fields in other orders),
    # so a re-run's shards would differ byte for byte; this sorts them by key.
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def parse_function(image_size: int, record_format: str):
    """serialized Example -> (uint8 image (size, size, 3), float32 label)."""
    tf = tensorflow()

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    shape = (image_size, image_size, 3)

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        if record_format == "raw":
            image = tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), shape)
        else:
            image = tf.ensure_shape(tf.io.decode_jpeg(example["image"], channels=3), shape)
        return image, tf.cast(example["label"], tf.float32)

    return parse


def iter_examples(paths: Iterable[str], image_size: int, record_format: str) -> Iterator[tuple[np.ndarray, int, str]]:
    """The records of the shards at `paths` (local files), one at a time, as (pixels, label, source):
    a caller that predicts batch by batch holds one batch of decoded images, whatever the split's size
    (the whole test split decoded at once was +400 MB of a TF node at 20,000 images)."""
    tf = tensorflow()

    parse = parse_function(image_size, record_format)
    source_spec = {"source": tf.io.FixedLenFeature([], tf.string, default_value="")}
    for path in paths:
        for serialized in tf.data.TFRecordDataset(path):
            image, label = parse(serialized)
            source = tf.io.parse_single_example(serialized, source_spec)["source"]
            yield image.numpy(), int(label.numpy()), source.numpy().decode("utf-8")


def read_examples(path: str, image_size: int, record_format: str) -> list[tuple[np.ndarray, int, str]]:
    """Every record of one shard as (pixels, label, source), in a list: small shards and tests."""
    return list(iter_examples([path], image_size, record_format))


def write_shard(path: str, serialized: Sequence[bytes]) -> None:
    """Writes a local file, then renames or uploads it (storage.writing): a shard is whole or absent.
    TFRecordWriter goes through tf.io.gfile, which has no s3:// or hdfs:// on TF 2.21."""
    tf = tensorflow()

    from .. import storage

    with storage.writing(path) as local:
        with tf.io.TFRecordWriter(local) as writer:
            for record in serialized:
                writer.write(record)
