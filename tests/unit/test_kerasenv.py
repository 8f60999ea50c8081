"""kerasenv.import_frozen: a large library's import is frozen out of the garbage collector once per
process, so a reused PySpark worker's collection after each task does not walk TensorFlow's objects."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from tfos_facecnn.kerasenv import import_frozen
before = gc.get_freeze_count()
module = import_frozen("xml.dom.minidom")
after_first = gc.get_freeze_count()
kept = [[i] for i in range(1000)]  # new objects, made after the import
import_frozen("xml.dom.minidom")
after_second = gc.get_freeze_count()
print(json.dumps([module.__name__, before, after_first, after_second]))
"""


def test_the_first_import_freezes_what_exists_and_a_second_call_freezes_nothing_new():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    name, before, after_first, after_second = json.loads(out.stdout)
    assert name == "xml.dom.minidom"
    assert before == 0
    assert after_first > 1000  # the interpreter's and the module's objects: now out of the collector's reach
    assert after_second == after_first  # the 1,000 lists made later stay collectable
