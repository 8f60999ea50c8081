"""The training-only augmentation block of the reference study, as one Keras layer inside the model.

The reference stacks six Keras layers: flip, rotation, contrast, inversion, zoom, translation. Three of
them warp the whole image (a bilinear resample of every pixel each) and the others each make several
passes over the batch: together they cost more than the CNN's own training step. `RandomAugment`
draws the same random parameters and applies them in one warp and one fused colour pass:

- flip, rotation, zoom and translation are affine maps of output to input coordinates, so their
  product is one affine map, and one resample replaces three;
- contrast and inversion are per-image, per-channel linear maps of the pixel values (then a clip to
  0..255), and a bilinear warp with reflected borders commutes with them, so they are applied once,
  after the warp.

The differences from the stacked layers: each image draws its own contrast factor (Keras draws one per
batch), the contrast mean is taken after the zoom and translation instead of before, and the image is
interpolated once instead of three times (less blur).

Both passes run as one XLA-compiled function (`compiled_augment`): the warp is written in plain ops
(`affine_resample`, the same values as TF's ImageProjectiveTransformV3, which XLA cannot compile), so
XLA fuses the coordinate maps, the four reads, the blend and the colour pass into a few loops. On this
2-core machine a batch of 32 at 350 px takes ~60 ms augmented instead of ~155 ms. Only the augmentation
is compiled: the whole train step under XLA (`jit_compile=True`) took 585 ms per batch against 230 ms
with TF's oneDNN convolutions.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from .config import AugmentConfig
from .kerasenv import legacy_keras

_CACHE: dict[str, Any] = {}
AUGMENT_LAYER_NAME = "augment"
EFFECTS = ("flip", "rotation", "contrast", "invert_probability", "zoom", "translation")


def affine_transforms(tf, flip_x, flip_y, angles, zooms, translations, height: float, width: float):
    """Per image, the product flip @ rotation @ zoom @ translation of the Keras layers' output-to-input
    maps, as the 8 numbers ImageProjectiveTransformV3 takes. flip_x/flip_y: 1.0 to mirror, 0.0 not;
    angles in radians; zooms: (B, 2) factors (x, y), < 1 zooms in; translations: (B, 2) pixels (x, y)."""
    batch = tf.shape(angles)[0]
    zero, one = tf.zeros([batch], tf.float32), tf.ones([batch], tf.float32)

    def matrix(rows):
        return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)  # (B, 3, 3)

    w1, h1 = width - 1.0, height - 1.0
    flip = matrix([[1.0 - 2.0 * flip_x, zero, flip_x * w1],
                   [zero, 1.0 - 2.0 * flip_y, flip_y * h1],
                   [zero, zero, one]])
    cos, sin = tf.cos(angles), tf.sin(angles)
    rotation = matrix([[cos, -sin, (w1 - (cos * w1 - sin * h1)) / 2.0],
                       [sin, cos, (h1 - (sin * w1 + cos * h1)) / 2.0],
                       [zero, zero, one]])
    zoom = matrix([[zooms[:, 0], zero, w1 / 2.0 * (1.0 - zooms[:, 0])],
                   [zero, zooms[:, 1], h1 / 2.0 * (1.0 - zooms[:, 1])],
                   [zero, zero, one]])
    shift = matrix([[one, zero, -translations[:, 0]],
                    [zero, one, -translations[:, 1]],
                    [zero, zero, one]])
    product = flip @ rotation @ zoom @ shift
    flat = tf.reshape(product, [batch, 9])
    return flat[:, :8] / flat[:, 8:9]


IDENTITY_TRANSFORM = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)


def _reflect(tf, coords, size):
    """ImageProjectiveTransformV3's REFLECT fill (d c b a | a b c d | d c b a), then its clamp."""
    period = 2.0 * size
    folded = tf.math.floormod(coords, period)
    folded = tf.where(folded >= size, period - folded - 1.0, folded)
    return tf.clip_by_value(folded, 0.0, size - 1.0)


def affine_resample(tf, images, transforms):
    """Bilinear resample of each image through its affine output-to-input map, REFLECT borders: what
    ImageProjectiveTransformV3 computes for affine transforms, written in plain ops so that XLA can
    compile it. TF's kernel maps coordinates once per channel in a generic per-value loop (~120 ms for
    32 images at 350 px on 2 cores here); compiled, this takes ~40 ms."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    ys, xs = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    a0, a1, a2, b0, b1, b2 = (transforms[:, i][:, None, None] for i in range(6))
    source_x = _reflect(tf, a0 * xs + a1 * ys + a2, w)
    source_y = _reflect(tf, b0 * xs + b1 * ys + b2, h)
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    fx, fy = (source_x - x0)[..., None], (source_y - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, width - 1), tf.minimum(y0 + 1, height - 1)
    pixels = tf.reshape(images, [-1, shape[3]])
    first = (tf.range(batch) * height * width)[:, None, None]

    def read(y, x):
        return tf.gather(pixels, first + y * width + x)

    top = read(y0, x0) * (1.0 - fx) + read(y0, x1) * fx
    bottom = read(y1, x0) * (1.0 - fx) + read(y1, x1) * fx
    return top * (1.0 - fy) + bottom * fy


def colour_shift(tf, images, factor, inverted):
    """contrast c * (x - mean) + mean, clipped, then inversion 255 - x, folded into one scale and offset
    per image and channel: clip(sign*c*x + sign*(1-c)*mean + 255*inverted). factor 1 = no contrast."""
    sign = 1.0 - 2.0 * inverted
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    offset = 255.0 * inverted + sign * (1.0 - factor) * mean
    return tf.clip_by_value(images * (sign * factor) + offset, 0.0, 255.0)


def compiled_augment():
    """The warp and the colour pass as one XLA-compiled function (they fuse into a few loops over the
    batch; the augmentation then costs less than the CNN's step instead of more)."""
    if "compiled" not in _CACHE:
        import tensorflow as tf

        def augment(images, transforms, factor, inverted, warp: bool, colour: bool):
            out = affine_resample(tf, images, transforms) if warp else images
            return colour_shift(tf, out, factor, inverted) if colour else out

        _CACHE["compiled"] = tf.function(augment, jit_compile=True, reduce_retracing=True)
    return _CACHE["compiled"]


def _random_augment_class() -> type:
    keras = legacy_keras()
    import tensorflow as tf

    @keras.utils.register_keras_serializable(package="tfos_facecnn")
    class RandomAugment(keras.layers.Layer):
        """The reference augmentations (see the module doc) on raw pixels 0..255; identity at inference."""

        def __init__(self, flip: str = "none", rotation: float = 0.0, contrast: float = 0.0,
                     invert_probability: float = 0.0, zoom_in: float = 0.0, zoom_out: float = 0.0,
                     translation: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.flip, self.rotation, self.contrast = flip, rotation, contrast
            self.invert_probability, self.zoom_in, self.zoom_out = invert_probability, zoom_in, zoom_out
            self.translation, self.seed = translation, seed

        def _uniform(self, shape, low: float, high: float, salt: int):
            seed = None if self.seed is None else self.seed + salt
            return tf.random.uniform(shape, low, high, seed=seed)

        def _transforms(self, batch, height, width):
            def coin(enabled: bool, salt: int):
                if not enabled:
                    return tf.zeros([batch])
                return tf.cast(self._uniform([batch], 0.0, 1.0, salt) < 0.5, tf.float32)

            flip_x = coin(self.flip in ("horizontal", "horizontal_and_vertical"), 1)
            flip_y = coin(self.flip in ("vertical", "horizontal_and_vertical"), 2)
            turn = self.rotation * 2.0 * math.pi
            angles = self._uniform([batch], -turn, turn, 3)
            zoom = self._uniform([batch, 1], 1.0 - self.zoom_in, 1.0 + self.zoom_out, 4)
            scale = tf.stack([width, height])[None, :]
            shifts = self._uniform([batch, 2], -self.translation, self.translation, 5) * scale
            return affine_transforms(tf, flip_x, flip_y, angles, tf.concat([zoom, zoom], axis=1), shifts,
                                     height, width)

        def call(self, inputs, training=None):
            if not training:
                return inputs
            warps = self.flip != "none" or max(self.rotation, self.zoom_in, self.zoom_out, self.translation) > 0
            colours = self.contrast > 0 or self.invert_probability > 0
            if not (warps or colours):
                return inputs
            shape = tf.shape(inputs)
            batch, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
            # The random draws stay outside the compiled function (XLA has no stateful random ops on
            # every backend); identity parameters switch a part off at no cost worth a second graph.
            transforms = (self._transforms(batch, height, width) if warps
                          else tf.tile(tf.constant([IDENTITY_TRANSFORM]), [batch, 1]))
            factor = self._uniform([batch, 1, 1, 1], 1.0 - self.contrast, 1.0 + self.contrast, 6)
            inverted = tf.cast(self._uniform([batch, 1, 1, 1], 0.0, 1.0, 7) < self.invert_probability, tf.float32)
            return compiled_augment()(inputs, transforms, factor, inverted, warps, colours)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "flip": self.flip, "rotation": self.rotation, "contrast": self.contrast,
                    "invert_probability": self.invert_probability, "zoom_in": self.zoom_in,
                    "zoom_out": self.zoom_out, "translation": self.translation, "seed": self.seed}

    return RandomAugment




def random_augment_layer(cfg: AugmentConfig, seed: int | None = None, name: str = AUGMENT_LAYER_NAME):
    if "RandomAugment" not in _CACHE:
        _CACHE["RandomAugment"] = _random_augment_class()
    return _CACHE["RandomAugment"](flip=cfg.flip, rotation=cfg.rotation, contrast=cfg.contrast,
                                   invert_probability=cfg.invert_probability, zoom_in=cfg.zoom_in,
                                   zoom_out=cfg.zoom_out, translation=cfg.translation, seed=seed, name=name)


def is_enabled(cfg: AugmentConfig) -> bool:
    return any(_only(cfg, effect) != _NOTHING for effect in EFFECTS)


_NOTHING = AugmentConfig(flip="none", rotation=0.0, contrast=0.0, invert_probability=0.0, zoom_in=0.0,
                         zoom_out=0.0, translation=0.0)


def _only(cfg: AugmentConfig, effect: str) -> AugmentConfig:
    if effect == "zoom":
        return replace(_NOTHING, zoom_in=cfg.zoom_in, zoom_out=cfg.zoom_out)
    return replace(_NOTHING, **{effect: getattr(cfg, effect)})


def augmentation_layers(cfg: AugmentConfig, seed: int) -> list:
    """The model's augmentation: one RandomAugment layer, or none when every effect is off."""
    return [random_augment_layer(cfg, seed)] if is_enabled(cfg) else []


def effect_layers(cfg: AugmentConfig, seed: int) -> list:
    """One layer per switched-on effect, in the reference order (the report shows each alone)."""
    names = {"invert_probability": "random_invert"}
    return [random_augment_layer(_only(cfg, effect), seed, name=names.get(effect, f"random_{effect}"))
            for effect in EFFECTS if _only(cfg, effect) != _NOTHING]
