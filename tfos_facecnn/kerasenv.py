"""One place that picks the Keras implementation and imports TensorFlow.

TF 2.21 ships Keras 3, whose model.fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585);
tf-keras (Keras 2) with TF_USE_LEGACY_KERAS=1 trains correctly, and its .keras files load in Keras 3.

TensorFlow and tf-keras leave ~1 million Python objects behind on import, and every full garbage
collection walks them all: ~0.3 s of CPU each. PySpark's reused Python workers run one after every task
(pyspark/daemon.py), so an executor's worker that had imported TF (the TF node's start task) spent 0.3 s
per feeding task that followed, as much CPU as the TF node beside it (a tiny two-node run: 58 s of CPU,
43 s once frozen), and the node itself paid for them in every collection while tracing. `import_frozen`
moves what the import created into the collector's permanent generation (gc.freeze), once per process:
modules live as long as the process, so nothing collectable is kept.
"""

from __future__ import annotations

import gc
import importlib
import os
from types import ModuleType

_FROZEN: set[str] = set()  # libraries whose import this process has frozen (a forked child inherits it)


def import_frozen(name: str) -> ModuleType:
    """Imports the module `name`; the first call in a process freezes every object alive (gc.freeze)."""
    module = importlib.import_module(name)
    if name not in _FROZEN:
        _FROZEN.add(name)
        gc.freeze()
    return module


def tensorflow() -> ModuleType:
    """The tensorflow module, tf.keras being tf-keras."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    return import_frozen("tensorflow")


def legacy_keras() -> ModuleType:
    """Returns the tf_keras module, with TF told to use it as tf.keras too."""
    tensorflow()
    return import_frozen("tf_keras")
