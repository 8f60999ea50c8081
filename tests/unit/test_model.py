import numpy as np
import pytest

from tfos_facecnn.config import AugmentConfig, TrainConfig
from tfos_facecnn.model import build_from_config, build_model, inference_copy

REFERENCE_PARAMS = 425_665
# (layer name, output shape without the batch dim) of the reference CNN at 350 px
REFERENCE_SHAPES = [
    ("rescaling", (350, 350, 3)),
    ("conv1", (173, 173, 32)),
    ("pool1", (86, 86, 32)),
    ("conv2", (42, 42, 32)),
    ("pool2", (21, 21, 32)),
    ("conv3", (10, 10, 32)),
    ("pool3", (10, 10, 32)),
    ("flatten", (3200,)),
    ("dense", (128,)),
    ("p_face", (1,)),
]


@pytest.mark.parametrize("variant", ["base", "l1", "l2", "dropout"])
def test_reference_parameter_count_and_shapes(variant):
    model = build_model(variant, 350, AugmentConfig())
    assert model.count_params() == REFERENCE_PARAMS
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == REFERENCE_PARAMS
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    for name, shape in REFERENCE_SHAPES:
        assert shapes[name] == shape, name
    assert model.input_shape == (None, 350, 350, 3)


def test_variants_differ_as_documented():
    l1 = build_model("l1", 64, None)
    l2 = build_model("l2", 64, None)
    dropout = build_model("dropout", 64, None)
    base = build_model("base", 64, None)
    assert all(layer.kernel_regularizer is not None for layer in l1.layers if hasattr(layer, "kernel"))
    assert "L1" in type(l1.get_layer("conv1").kernel_regularizer).__name__
    assert "L2" in type(l2.get_layer("dense").kernel_regularizer).__name__
    assert [layer.name for layer in dropout.layers if "dropout" in layer.name] == ["dropout_flat", "dropout_dense"]
    assert not any(getattr(layer, "kernel_regularizer", None) for layer in base.layers)


def test_augmentation_acts_in_training_only():
    model = build_model("base", 64, AugmentConfig())
    pixels = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3)).astype("float32")
    first = model(pixels, training=False).numpy()
    second = model(pixels, training=False).numpy()
    np.testing.assert_array_equal(first, second)
    exported = inference_copy(model, TrainConfig(image_size=64))
    np.testing.assert_allclose(exported(pixels, training=False).numpy(), first, rtol=1e-5, atol=1e-6)
    augmented = model.layers[0](pixels, training=True).numpy()
    assert not np.allclose(augmented, pixels)


def test_every_augmentation_can_be_switched_off():
    off = AugmentConfig(flip="none", rotation=0, contrast=0, invert_probability=0, zoom_in=0, zoom_out=0,
                        translation=0)
    model = build_from_config(TrainConfig(image_size=64, augment=off))
    assert [layer.name for layer in model.layers][0] == "rescaling"
    on = build_from_config(TrainConfig(image_size=64))
    names = [layer.name for layer in on.layers]
    assert names[:2] == ["augment", "rescaling"]


def _layer(**effects):
    from tfos_facecnn.augment import random_augment_layer

    off = dict(flip="none", rotation=0, contrast=0, invert_probability=0, zoom_in=0, zoom_out=0, translation=0)
    return random_augment_layer(AugmentConfig(**{**off, **effects}), seed=1)


def test_inversion_and_flip_are_exact():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    inverted = _layer(invert_probability=1.0)
    np.testing.assert_allclose(inverted(pixels, training=True).numpy(), 255.0 - pixels, atol=1e-4)
    np.testing.assert_array_equal(inverted(pixels, training=False).numpy(), pixels)
    flipped = _layer(flip="horizontal")(pixels, training=True).numpy()
    for image, out in zip(pixels, flipped, strict=True):  # each image flipped or not, exactly
        assert np.allclose(out, image, atol=1e-3) or np.allclose(out, image[:, ::-1], atol=1e-3)


def test_contrast_keeps_each_channel_mean_and_range():
    pixels = np.random.default_rng(1).uniform(60, 200, (4, 16, 16, 3)).astype("float32")
    out = _layer(contrast=0.1)(pixels, training=True).numpy()
    np.testing.assert_allclose(out.mean(axis=(1, 2)), pixels.mean(axis=(1, 2)), rtol=1e-4)
    spread = out.std(axis=(1, 2)) / pixels.std(axis=(1, 2))
    assert np.all((spread > 0.9 - 1e-4) & (spread < 1.1 + 1e-4))


def test_one_composed_warp_matches_the_keras_layers_one_after_another():
    """rotation, then zoom, then translation (Keras' three warps) == one warp with the product matrix,
    away from the borders, up to the extra interpolation of the three-warp path."""
    import tensorflow as tf
    from tf_keras.src.layers.preprocessing.image_preprocessing import (
        get_rotation_matrix,
        get_translation_matrix,
        get_zoom_matrix,
        transform,
    )

    from tfos_facecnn.augment import affine_transforms

    size = 96.0
    yy, xx = np.mgrid[0:96, 0:96].astype("float32")
    smooth = np.stack([np.sin(xx / 9), np.cos(yy / 11), np.sin((xx + yy) / 13)], axis=-1) * 100 + 128
    images = tf.constant(np.stack([smooth, smooth[::-1]]), tf.float32)
    angles = tf.constant([0.3, -0.5])
    zooms = tf.constant([[0.8, 0.8], [1.1, 1.1]])
    shifts = tf.constant([[5.0, -3.0], [-7.0, 2.0]])
    stepwise = images
    for matrix in (get_rotation_matrix(angles, size, size), get_zoom_matrix(zooms, size, size),
                   get_translation_matrix(shifts)):
        stepwise = transform(stepwise, matrix, fill_mode="reflect", interpolation="bilinear")
    composed = affine_transforms(tf, tf.zeros([2]), tf.zeros([2]), angles, zooms, shifts, size, size)
    once = transform(images, composed, fill_mode="reflect", interpolation="bilinear")
    inner = (slice(None), slice(30, 66), slice(30, 66))
    assert float(tf.reduce_mean(tf.abs(once[inner] - stepwise[inner]))) < 1.0  # of 0..255
    for single, keras_matrix in ((dict(angles=angles), get_rotation_matrix(angles, size, size)),
                                 (dict(zooms=zooms), get_zoom_matrix(zooms, size, size)),
                                 (dict(translations=shifts), get_translation_matrix(shifts))):
        parts = {"angles": tf.zeros([2]), "zooms": tf.ones([2, 2]), "translations": tf.zeros([2, 2]), **single}
        mine = affine_transforms(tf, tf.zeros([2]), tf.zeros([2]), parts["angles"], parts["zooms"],
                                 parts["translations"], size, size)
        np.testing.assert_allclose(mine.numpy(), keras_matrix.numpy(), atol=1e-4)


def test_compiled_warp_matches_tensorflows_projective_transform_op():
    """The XLA-compiled resample computes what ImageProjectiveTransformV3 (bilinear, REFLECT) does,
    borders and reflected areas included, for flips, rotations, zooms and shifts."""
    import tensorflow as tf

    from tfos_facecnn.augment import affine_resample, affine_transforms

    rng = np.random.default_rng(3)
    images = tf.constant(rng.integers(0, 256, (4, 37, 53, 3)).astype("float32"))
    transforms = affine_transforms(
        tf, tf.constant([1.0, 0.0, 1.0, 0.0]), tf.constant([0.0, 1.0, 1.0, 0.0]),
        tf.constant([0.4, -1.1, 2.5, 0.0]), tf.constant([[0.7, 0.7], [1.3, 1.3], [1.0, 1.0], [0.5, 0.5]]),
        tf.constant([[4.0, -9.0], [-20.0, 3.0], [0.0, 0.0], [60.0, 45.0]]), 37.0, 53.0)
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[37, 53], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT").numpy()
    compiled = tf.function(lambda x, t: affine_resample(tf, x, t), jit_compile=True)
    np.testing.assert_allclose(compiled(images, transforms).numpy(), expected, atol=0.05)
    np.testing.assert_allclose(affine_resample(tf, images, transforms).numpy(), expected, atol=0.05)


def test_augmentation_trains_inside_the_model_under_a_distribution_strategy():
    """The compiled augmentation inside model.fit (as in a TF node): finite loss, weights move."""
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = build_from_config(TrainConfig(image_size=48, batch_size=8))
    before = [w.copy() for w in model.get_weights()]
    pixels = np.random.default_rng(4).integers(0, 256, (16, 48, 48, 3)).astype("float32")
    history = model.fit(pixels, np.arange(16) % 2, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_exported_model_loads_in_keras3_and_tf_keras(tmp_path):
    import subprocess
    import sys

    model = inference_copy(build_model("dropout", 64, AugmentConfig()), TrainConfig(image_size=64, variant="dropout"))
    path = tmp_path / "model.keras"
    model.save(path)
    expected = float(model(np.full((1, 64, 64, 3), 100.0, dtype="float32")).numpy()[0, 0])
    script = (
        "import keras, numpy as np, sys;"
        f"m = keras.models.load_model({str(path)!r});"
        "print(keras.__version__, float(m.predict(np.full((1,64,64,3),100.0,'float32'), verbose=0)[0,0]))"
    )
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}  # no TF_USE_LEGACY_KERAS: plain Keras 3
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    version, value = out.stdout.split()[-2:]
    assert version.startswith("3.")
    assert abs(float(value) - expected) < 1e-5
