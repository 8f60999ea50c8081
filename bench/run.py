"""The benchmark suite: python bench/run.py [--quick] [--images N] [--repeats R] [--out FILE] [--markdown FILE]

Generates its own data set (full-size JPEGs augmented from the embedded sample), then runs every
measurement on it, each in its own subprocesses with a timeout; a failed measurement becomes an error
entry and the suite goes on. Writes results.json (machine, figures, ratios vs targets) and a markdown table.

  a0  the peer: plain one-process tf.keras script, TF defaults, in memory  images/s
  a   one-process tf-keras fit on the prepared TFRecords (no Spark)       images/s
  b   InputMode.TENSORFLOW, 1 node, local[*]                                images/s   b/a >= 0.90, b/a0 >= 1.0
  j   b with the prepared shards, model and export on s3:// (S3 server)     images/s   j/b >= 0.95
  c   InputMode.SPARK, 1 node, local[*], the same images at training size   images/s   c/b >= 0.85
  c2  InputMode.SPARK from the raw JPEGs, with decode ms/image beside it    images/s
  d   prepare job vs naive Pillow decode + resize                           images/s/core, >= 1.5x
  e0  e's peer: 2 plain scripts under MultiWorkerMirroredStrategy vs 1, no Spark  efficiency, in turns
  e   2 x 1-core nodes vs 1 x 1-core node, each input mode                  efficiency >= 0.9 / 0.8, in turns
  f   spark-submit to the first training step, local[*]                     s <= 20
  g   peak RSS of the TF node and the Python worker at N and 4N images      growth <= 10%
  h   jobs/predict.py vs one-process model.predict                          ratio >= 0.8
  k   1 TF node on a 2-core executor vs on a 1-core executor (TENSORFLOW)  speed-up
  i   training FLOPs/image x best images/s vs the fp32 matmul peak          fraction
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import measure_other, measure_train, report  # noqa: E402
from bench.common import BENCH, machine_info  # noqa: E402
from bench.suite import Settings, Suite  # noqa: E402

MEASUREMENTS = [  # in order: f reads b's and c's runs, h uses b's model, i the best of a/b/c
    ("a0", measure_train.measure_a0),
    ("a", measure_train.measure_a),
    ("b", measure_train.measure_b),
    ("j", measure_train.measure_j),
    ("c", measure_train.measure_c),
    ("c2", measure_train.measure_c2),
    ("f", measure_train.measure_f),
    ("d", measure_other.measure_d),
    ("h", measure_other.measure_h),
    ("e0", measure_train.measure_e0),
    ("e_tensorflow", measure_train.measure_e_tensorflow),
    ("e_spark", measure_train.measure_e_spark),
    ("g", measure_train.measure_g),
    ("k", measure_train.measure_k),
    ("i", measure_other.measure_i),
]
CHANGES_HEADING = "## What each change bought"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="16 images of 256 px, 48 px training: proves the suite")
    p.add_argument("--images", type=int, help="generated images (default 256; --quick 16)")
    p.add_argument("--repeats", type=int, default=1, help="runs per throughput figure (median over them)")
    p.add_argument("--image-size", type=int, dest="image_size", help="training size (default 350; --quick 48)")
    p.add_argument("--out", default=str(BENCH / "results.json"), help="results file (default bench/results.json)")
    p.add_argument("--markdown", default=None, help="markdown table to write (e.g. BENCHMARKS.md)")
    p.add_argument("--only", default=None, help="comma-separated figures to run (default all)")
    p.add_argument("--work-dir", default=None, help="keep the data and logs here (default: a temp dir, removed)")
    args = p.parse_args(argv)
    if args.images is not None and args.images < 6:
        p.error("--images must be at least 6 (three face/comic pairs: one per split)")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def build_settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in (("images", args.images), ("image_size", args.image_size)) if v is not None}
    overrides["repeats"] = args.repeats
    if args.quick:
        return Settings.quick_settings(**overrides)
    settings = Settings()
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


def run_suite(settings: Settings, work: Path, only: set[str] | None) -> dict:
    started = time.time()
    suite = Suite(settings, work)
    results = {
        "suite": {"started": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv[1:],
                  "settings": settings.to_dict(), "work_dir": str(work)},
        "machine": machine_info(),
        "data": suite.data,
        "figures": suite.figures,
    }
    print(f"[bench] work dir {work}; settings {settings.to_dict()}", flush=True)
    setup_error = None
    try:
        measure_other.setup(suite)
        print(f"[bench] data ready in {time.time() - started:.0f} s: {suite.data.get('prepared_counts')}", flush=True)
    except Exception as e:  # noqa: BLE001 - recorded, and every figure says why it is missing
        setup_error = f"setup failed: {type(e).__name__}: {e}"
        print(f"[bench] {setup_error}", flush=True)
    for key, measure in MEASUREMENTS:
        if only and key not in only:
            continue
        t0 = time.time()
        if setup_error:
            suite.figures[key] = {"error": setup_error}
            continue
        try:
            suite.figures[key] = measure(suite)
            print(f"[bench] {key}: {suite.figures[key]['value']:.4g} {suite.figures[key]['unit']} "
                  f"({time.time() - t0:.0f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 - the suite goes on; the error is in results.json
            suite.figures[key] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            print(f"[bench] {key}: ERROR {type(e).__name__}: {str(e)[:500]} ({time.time() - t0:.0f} s)", flush=True)
    results["ratios"] = report.ratios(suite.figures)
    results["suite"]["seconds"] = round(time.time() - started, 1)
    return results


def write_markdown(path: Path, results: dict) -> None:
    """Writes the table; an existing file's 'What each change bought' section is kept as it is."""
    text = report.markdown(results)
    if path.exists():
        old = path.read_text()
        if CHANGES_HEADING in old:
            text = text[: text.index(CHANGES_HEADING)] + old[old.index(CHANGES_HEADING):]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = build_settings(args)
    only = set(args.only.split(",")) if args.only else None
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="facecnn-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = run_suite(settings, work.resolve(), only)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    report.write_json(Path(args.out), results)
    print(f"[bench] results: {args.out} ({results['suite']['seconds']:.0f} s)", flush=True)
    if args.markdown:
        write_markdown(Path(args.markdown), results)
        print(f"[bench] markdown: {args.markdown}", flush=True)
    for name, r in results["ratios"].items():
        verdict = "n/a" if r["passed"] is None else ("pass" if r["passed"] else "FAIL")
        value = "-" if r["value"] is None else f"{r['value']:.3g}"
        print(f"[bench] {name:16s} {value:>8s}  target {r['target'] or '-':8s} {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
