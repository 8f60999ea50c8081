"""bench/run.py --quick end to end: every figure measured (no error entry), the markdown written.
No timing target is asserted: the figures of a 16-image quick run only prove the suite works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, spark_env

pytestmark = pytest.mark.spark
FIGURES = ("a0", "a", "b", "j", "c", "c2", "d", "e0", "e_tensorflow", "e_spark", "f", "g", "h", "k", "i")
RATIOS = ("b/a", "b/a0", "c/a0", "j/b", "c/b", "d", "e0", "e0_independent", "e_tensorflow", "e_spark",
          "e_tensorflow/e0", "e_spark/e0", "f_tensorflow", "f_spark", "g_tf_node",
          "g_python_worker", "h", "k", "i")


@pytest.mark.timeout(1500)
def test_quick_suite_measures_every_figure(tmp_path: Path):
    results_file, markdown = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(results_file),
         "--markdown", str(markdown), "--work-dir", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=1450,
        env=spark_env(),  # the tests' fast-start JVMs for its drivers: figures of a quick run prove nothing anyway
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(results_file.read_text())
    assert results["machine"]["cores"] >= 1 and results["machine"]["tensorflow"]
    errors = {key: fig["error"][:800] for key, fig in results["figures"].items() if "error" in fig}
    assert not errors, errors
    for key in FIGURES:
        figure = results["figures"][key]
        assert figure["value"] > 0 and figure["unit"], (key, figure)
    b = results["figures"]["b"]["detail"]  # b/a0 from runs made in turns: one pair in a quick run
    assert b["a0_alternated_images_per_s"] > 0 and len(b["pair_ratios"]) == len(b["runs"]) == 1
    e0 = results["figures"]["e0"]["detail"]  # each of its three kinds of run made once, all trained
    assert e0["two_independent_images_per_s"] > 0 and e0["independent_efficiency"] > 0
    assert [len(e0["images_per_s_by_kind"][kind]) for kind in ("alone", "mwms", "independent")] == [1, 1, 1]
    for name in RATIOS:
        ratio = results["ratios"][name]
        assert ratio["value"] is not None and "error" not in ratio, (name, ratio)
        assert ratio["passed"] in (True, False, None)
    text = markdown.read_text()
    for key in FIGURES:
        assert f"| {key} |" in text, key
    assert "## What each change bought" in text and "## Ratios vs targets" in text


def test_peak_rss_is_the_high_water_mark_not_the_current_size():
    """A peak that came and went between two polls still counts (the N vs 4N memory figure relies on it)."""
    import psutil

    from bench.common import peak_rss

    me = psutil.Process()
    resident_before = me.memory_info().rss
    block = bytearray(64 * 2**20)  # touched: bytearray zero-fills, so the pages are resident
    during = peak_rss(me)
    del block
    after = peak_rss(me)
    assert during >= resident_before + 48 * 2**20  # the block counted while it lived
    assert after >= during - 4 * 2**20  # the kernel's per-thread RSS counters lag by a few pages
    assert after - me.memory_info().rss >= 48 * 2**20  # and still counts once freed (64 MB: mmapped, returned)
