"""Input modes as plug-ins: one module per mode holds both its halves (what the driver plans and feeds,
what a TF node reads), chosen here and nowhere else. Adding a mode: a new module with a `MODE` (a
modes.base.InputMode) and one line below.

The registry names modules instead of importing them, so that the pure core (config.py) can list the
modes without importing Spark or TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import InputMode

_MODULES = {
    "spark": "tfos_facecnn.modes.spark",  # InputMode.SPARK: executors decode images and feed TFoS queues
    "tensorflow": "tfos_facecnn.modes.tensorflow",  # InputMode.TENSORFLOW: nodes read TFRecord shards
}
INPUT_MODES = tuple(_MODULES)


def mode_for(name: str) -> InputMode:
    """The plug-in of an input mode named in the config (config.py has checked the name)."""
    return importlib.import_module(_MODULES[name]).MODE
