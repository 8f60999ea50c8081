"""Two-node training, run again and again with the shipped settings (TF's oneDNN kernels on):
python bench/stress.py [--runs N] [--quick] [--out FILE] [--work-dir DIR]

Each run is a spark-submit of jobs/train.py on local-cluster[2,1,1024] (48 px, 2 epochs, batch 8, a new
seed each run), alternating the input modes. Every third SPARK-mode run starves worker:0 on purpose
(TFOS_FACECNN_FAULT=worker:0@starve: its feed ends after the first chunk), the uneven feed that
used to hand a worker empty batches; it trains 8 epochs, so that the starved node trains on top-ups. A
run fails if it exits non-zero, times out, or prints oneDNN's "3 vs 32" error. Writes a JSON report;
exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import job_command, run_streaming  # noqa: E402

MASTER = "local-cluster[2,1,1024]"
RUN_ARGS = ["--image-size", "48", "--batch-size", "8", "--no-report"]
EPOCHS = 2
# A starved node's feed ends after one 16-image chunk; 8 epochs of 48-px batches of 8 need more than its
# pipeline reads ahead (modes.spark.read_ahead: 116 images at 4 per replica), so it trains on top-ups.
STARVED_EPOCHS = 8
RUN_TIMEOUT_S = 400  # a healthy run takes ~45 s on 2 cores; a hang is a failure, not a wait
STARVE_EVERY = 3  # every third SPARK-mode run feeds worker:0 short on purpose
ONEDNN_BUG = "input depth must be evenly divisible by filter depth"
# what each row keeps of nodes.json (modes.spark: what a node was fed and trained on)
NODE_FIGURES = ("epochs_run", "items_fed", "images_topped_up", "top_up_read_ahead")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/stress.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30, help="runs per input mode (default 30)")
    p.add_argument("--quick", action="store_true", help="1 run per mode (the SPARK one starved): proves the script")
    p.add_argument("--out", default=None, help="JSON report (default WORK_DIR/stress.json)")
    p.add_argument("--work-dir", default=None, help="where runs write (default: a temporary folder, removed)")
    return p.parse_args(argv)


def prepare(work: Path) -> Path:
    prepared = work / "prepared-48"
    result = run_streaming(job_command("prepare.py", "local[*]", "--output-dir", str(prepared), "--image-size", "48",
                                       "--num-shards", "2"), RUN_TIMEOUT_S, work / "logs" / "prepare.err")
    result.check("jobs/prepare.py")
    return prepared


def one_run(work: Path, prepared: Path, mode: str, index: int) -> dict:
    starve = mode == "spark" and index % STARVE_EVERY == 0
    run_dir = work / f"{mode}-{index}"
    data = ["--data-dir", str(prepared)] if mode == "tensorflow" else []
    conf = {"spark.executorEnv.TFOS_FACECNN_FAULT": "worker:0@starve"} if starve else None
    epochs = STARVED_EPOCHS if starve else EPOCHS
    command = job_command("train.py", MASTER, "--input-mode", mode, *RUN_ARGS, "--epochs", str(epochs), *data,
                          "--seed", str(index),
                          "--model-dir", str(run_dir / "model"), "--export-dir", str(run_dir / "export"), conf=conf)
    result = run_streaming(command, RUN_TIMEOUT_S, work / "logs" / f"{mode}-{index}.err")
    output = result.tail(200_000)
    nodes_file = run_dir / "model" / "nodes.json"
    nodes = json.loads(nodes_file.read_text()) if nodes_file.exists() else {}
    ok = result.returncode == 0 and not result.timed_out and ONEDNN_BUG not in output
    history_file = run_dir / "export" / "history.json"
    row = {"mode": mode, "index": index, "starved": starve, "epochs": epochs, "ok": ok,
           "returncode": result.returncode, "timed_out": result.timed_out, "wall_s": round(result.wall_s, 1),
           "nodes": {node: {key: rec.get(key) for key in NODE_FIGURES} for node, rec in nodes.items()},
           "epochs_in_history": len(json.loads(history_file.read_text())) if history_file.exists() else 0,
           "short_feed_warned": "warning: Spark fed TF node" in output and "took feeding tasks unevenly" in output,
           "error": None if ok else output[-3000:]}
    shutil.rmtree(run_dir, ignore_errors=True)  # scratch of a finished run: only its row is kept
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = 1 if args.quick else args.runs
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="facecnn-stress-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        prepared = prepare(work)
        rows = []
        for index in range(runs):
            for mode in ("spark", "tensorflow"):
                row = one_run(work, prepared, mode, index)
                rows.append(row)
                print(f"[stress] {mode} run {index + 1}/{runs}{' (starved)' if row['starved'] else ''}: "
                      f"{'ok' if row['ok'] else 'FAILED'} in {row['wall_s']} s", flush=True)
        failures = [row for row in rows if not row["ok"]]
        report = {"master": MASTER, "runs_per_mode": runs, "settings": RUN_ARGS + ["--epochs", str(EPOCHS)],
                  "starved_epochs": STARVED_EPOCHS, "onednn": "on (TF default)",
                  "failures": len(failures), "starved_runs": sum(row["starved"] for row in rows),
                  "wall_s": round(time.monotonic() - started, 1), "rows": rows}
        out = Path(args.out) if args.out else work / "stress.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        by_mode = {mode: sum(r["ok"] for r in rows if r["mode"] == mode) for mode in ("spark", "tensorflow")}
        print(f"[stress] {len(failures)} failure(s) in {len(rows)} runs (ok: {by_mode}); "
              f"{report['starved_runs']} starved; report in {out}", flush=True)
        return 1 if failures else 0
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
