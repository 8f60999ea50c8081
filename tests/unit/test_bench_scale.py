"""bench/scale.py's comparison of the large set with the small one (the runs themselves are not in CI)."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO))

from bench.scale import RUNS, _is_jvm, compare  # noqa: E402


def _size(ms: float, node_mb: float) -> dict:
    return {mode: {"ms_per_image": ms, "peak_rss_mb": {"tf_node": node_mb, "driver_python": 500.0, "jvm": None}}
            for mode in RUNS}


def test_growth_is_judged_against_the_ten_percent_bars():
    flat = compare(_size(10.0, 1000.0), _size(10.5, 1050.0))["tensorflow"]
    assert flat["time_per_image_growth"] == 0.05 and flat["time_passed"] and flat["memory_passed"]
    assert flat["peak_rss_growth"] == {"tf_node": 0.05, "driver_python": 0.0}  # no figure, no ratio
    grown = compare(_size(10.0, 1000.0), _size(12.0, 1200.0))["spark"]
    assert not grown["time_passed"] and not grown["memory_passed"]
    assert set(compare(_size(10.0, 1000.0), _size(10.0, 1000.0))) == set(RUNS)  # every run compared


def test_the_jvm_is_found_under_its_launcher_name():
    assert _is_jvm("/usr/lib/jvm/java-17/bin/java -cp x org.apache.spark.deploy.SparkSubmit")
    assert _is_jvm("/repo/.venv/bin/spark-submit --master local[*] jobs/train.py")
    assert _is_jvm("bash /repo/.venv/bin/spark-submit --master local[*] jobs/train.py")  # as /proc shows it
    assert not _is_jvm("/repo/.venv/bin/python -m pyspark.daemon")
    assert not _is_jvm("/repo/.venv/bin/python /repo/jobs/spark-submit-notes.py")
