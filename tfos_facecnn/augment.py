"""The training-only augmentation block of the reference study, as Keras layers inside the model."""

from __future__ import annotations

from typing import Any

from .config import AugmentConfig
from .kerasenv import legacy_keras

INVERT_LAYER_NAME = "random_invert"


def _random_invert_class() -> type:
    keras = legacy_keras()
    import tensorflow as tf

    @keras.utils.register_keras_serializable(package="tfos_facecnn")
    class RandomInvert(keras.layers.Layer):
        """With probability p per image, replaces raw pixels x (0..255) by 255 - x; identity at inference."""

        def __init__(self, probability: float, seed: int | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.probability = probability
            self.seed = seed

        def call(self, inputs, training=None):
            if not training or self.probability <= 0:
                return inputs
            batch = tf.shape(inputs)[0]
            draw = tf.random.uniform([batch, 1, 1, 1], seed=self.seed)
            return tf.where(draw < self.probability, 255.0 - inputs, inputs)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "probability": self.probability, "seed": self.seed}

    return RandomInvert


_CACHE: dict[str, type] = {}


def random_invert_layer(probability: float, seed: int | None = None, name: str = INVERT_LAYER_NAME):
    if "RandomInvert" not in _CACHE:
        _CACHE["RandomInvert"] = _random_invert_class()
    return _CACHE["RandomInvert"](probability, seed=seed, name=name)


def augmentation_layers(cfg: AugmentConfig, seed: int) -> list:
    """The switched-on augmentations, in the reference order; each acts only when training=True."""
    layers = legacy_keras().layers
    out = []
    if cfg.flip != "none":
        out.append(layers.RandomFlip(cfg.flip, seed=seed, name="random_flip"))
    if cfg.rotation > 0:
        out.append(layers.RandomRotation(cfg.rotation, seed=seed + 1, name="random_rotation"))
    if cfg.contrast > 0:
        out.append(layers.RandomContrast(cfg.contrast, seed=seed + 2, name="random_contrast"))
    if cfg.invert_probability > 0:
        out.append(random_invert_layer(cfg.invert_probability, seed=seed + 3))
    if cfg.zoom_in > 0 or cfg.zoom_out > 0:
        # Keras zoom factors: negative zooms in, positive zooms out.
        out.append(layers.RandomZoom((-cfg.zoom_in, cfg.zoom_out), seed=seed + 4, name="random_zoom"))
    if cfg.translation > 0:
        out.append(layers.RandomTranslation(cfg.translation, cfg.translation, seed=seed + 5, name="random_translation"))
    return out
