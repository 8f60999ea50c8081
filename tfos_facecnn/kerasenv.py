"""One place that picks the Keras implementation.

TF 2.21 ships Keras 3, whose model.fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585);
tf-keras (Keras 2) with TF_USE_LEGACY_KERAS=1 trains correctly, and its .keras files load in Keras 3.
"""

from __future__ import annotations

import os


def legacy_keras():
    """Returns the tf_keras module, with TF told to use it as tf.keras too."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras

    return tf_keras
