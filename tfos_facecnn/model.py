"""The reference CNN (425,665 parameters at 350 px) with preprocessing inside the model."""

from __future__ import annotations

from .augment import augmentation_layers
from .config import VARIANTS, AugmentConfig, TrainConfig
from .kerasenv import legacy_keras

CONV_BLOCKS = (  # (filters, kernel, stride, pool): the reference architecture
    (32, 5, 2, 2),
    (32, 3, 2, 2),
    (32, 2, 2, 1),
)
DENSE_UNITS = 128


def build_model(
    variant: str,
    image_size: int,
    augment: AugmentConfig | None,
    learning_rate: float = 1e-3,
    l1_factor: float = 1e-5,
    l2_factor: float = 1e-4,
    dropout_rate: float = 0.5,
    seed: int = 42,
    compile_model: bool = True,
):
    """Builds and compiles one variant; `augment=None` gives the inference graph (same weights).

    The model takes raw RGB pixels (0..255) of shape (image_size, image_size, 3): augmentation (training
    only) and the 1/255 rescaling are layers, so an exported model needs no preprocessing code.
    """
    keras = legacy_keras()
    layers = keras.layers
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    regularizer = None
    if variant == "l1":
        regularizer = keras.regularizers.L1(l1_factor)
    elif variant == "l2":
        regularizer = keras.regularizers.L2(l2_factor)
    keras.utils.set_random_seed(seed)

    stack = [keras.Input(shape=(image_size, image_size, 3), name="pixels")]
    if augment is not None:
        stack += augmentation_layers(augment, seed)
    stack.append(layers.Rescaling(1.0 / 255, name="rescaling"))
    for index, (filters, kernel, stride, pool) in enumerate(CONV_BLOCKS, start=1):
        stack.append(layers.Conv2D(filters, kernel, strides=stride, activation="relu",
                                   kernel_regularizer=regularizer, name=f"conv{index}"))
        stack.append(layers.MaxPooling2D(pool, name=f"pool{index}"))
    stack.append(layers.Flatten(name="flatten"))
    if variant == "dropout":
        stack.append(layers.Dropout(dropout_rate, seed=seed, name="dropout_flat"))
    stack.append(layers.Dense(DENSE_UNITS, activation="relu", kernel_regularizer=regularizer, name="dense"))
    if variant == "dropout":
        stack.append(layers.Dropout(dropout_rate, seed=seed + 1, name="dropout_dense"))
    stack.append(layers.Dense(1, activation="sigmoid", kernel_regularizer=regularizer, name="p_face"))
    # Sequential (not functional): tf-keras saves it in a form Keras 3 can load too.
    model = keras.Sequential(stack, name=f"facecnn_{variant}")
    if not compile_model:
        return model
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    return model


def build_from_config(cfg: TrainConfig, training: bool = True):
    """training=False: the inference graph, uncompiled (what is exported)."""
    return build_model(
        cfg.variant,
        cfg.image_size,
        cfg.augment if training else None,
        learning_rate=cfg.learning_rate,
        l1_factor=cfg.l1_factor,
        l2_factor=cfg.l2_factor,
        dropout_rate=cfg.dropout_rate,
        seed=cfg.seed,
        compile_model=training,
    )


def inference_copy(trained, cfg: TrainConfig):
    """The trained weights in the graph without augmentation: what is exported.

    Augmentation layers hold no weights and are identity at inference, so dropping them changes no
    prediction, and the export then loads in plain Keras 3 as well as tf-keras, with no custom layer.
    It is saved uncompiled: tf-keras' optimizer config does not deserialize in Keras 3.
    """
    model = build_from_config(cfg, training=False)
    model.set_weights(trained.get_weights())
    return model
