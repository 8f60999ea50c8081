"""How good the model from the defaults is, seed by seed: python bench/quality.py [--seeds 1,2,3,4,5]
[--quick] [--config FILE] [--out FILE] [--markdown BENCHMARKS.md] [--work-dir DIR] [-- JOB OPTIONS...]

Each seed is a spark-submit of jobs/train.py on local[*] with the embedded sample and the shipped
settings (or --config, plus any job options after `--`, e.g. `-- --epochs 100`). Per seed it reports the
chosen (exported) epoch, the final training accuracy, the best validation accuracy over the epochs, the
exported model's validation accuracy and mean P(face) on the validation faces and comics, and its test
accuracy with a 95% Wilson interval. Targets (issue #16): every seed reaches validation accuracy
>= 0.9375 (15 of 16 images), mean P(face) >= 0.8 on validation faces and <= 0.2 on validation comics.
Quality, not speed: not timed, and safe to run beside other work. ~1.5 min per seed on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import job_command, run_streaming  # noqa: E402

RUN_TIMEOUT_S = 1200  # a 50-epoch run at 350 px takes ~1.5 min here; a hang is a failure, not a wait
QUICK_ARGS = ["--epochs", "2", "--image-size", "48"]  # --quick: proves the script, says nothing of quality
TARGET_VAL_ACCURACY = 0.9375  # 15 of the sample's 16 validation images
TARGET_P_FACE_ON_FACES = 0.8
TARGET_P_FACE_ON_COMICS = 0.2
SECTION_START, SECTION_END = "<!-- quality:start -->", "<!-- quality:end -->"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/quality.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds (default 1,2,3,4,5)")
    p.add_argument("--quick", action="store_true", help="2 epochs at 48 px: proves the script")
    p.add_argument("--config", default=None, help="YAML settings for every run (default conf/train.yaml)")
    p.add_argument("--label", default="defaults", help="what these settings are, for the table")
    p.add_argument("--out", default=None, help="JSON report (default WORK_DIR/quality.json)")
    p.add_argument("--markdown", default=None, help="write the table into this file between quality markers")
    p.add_argument("--work-dir", default=None, help="where runs write (default: a temporary folder, removed)")
    p.add_argument("job_args", nargs="*", help="more jobs/train.py options, after --")
    args = p.parse_args(argv)
    try:
        args.seed_list = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: expected comma-separated whole numbers, e.g. 1,2,3")
    return args


def validation_scores(export: Path) -> dict[str, Any]:
    """The exported model on the run's validation split (the sample's split by the run's settings)."""
    import numpy as np

    from tfos_facecnn import sample_data_dir
    from tfos_facecnn.evaluation import raw_split, training_config
    from tfos_facecnn.inference import load_model
    from tfos_facecnn.pipeline import predict_files

    cfg = training_config(str(export))
    items = raw_split(cfg.data_dir or sample_data_dir(), cfg, "val")
    model = load_model(str(export / "model.keras"))
    p_face = predict_files(model, [path for path, _ in items], cfg.image_size, cfg.batch_size)
    labels = np.asarray([label for _, label in items])
    faces, comics = p_face[labels == 1], p_face[labels == 0]
    return {"val_images": len(items), "val_accuracy": float(np.mean((p_face >= 0.5) == (labels == 1))),
            "p_face_faces": float(np.mean(faces)), "p_face_comics": float(np.mean(comics))}


def one_seed(work: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = work / f"seed-{seed}"
    model, export = run_dir / "model", run_dir / "export"
    extra = (["--config", args.config] if args.config else []) + (QUICK_ARGS if args.quick else []) + args.job_args
    command = job_command("train.py", "local[*]", "--seed", str(seed), "--no-report", "--overwrite",
                          "--model-dir", str(model), "--export-dir", str(export), *extra)
    result = run_streaming(command, RUN_TIMEOUT_S, work / "logs" / f"seed-{seed}.err")
    result.check(f"jobs/train.py --seed {seed}")
    history = json.loads((export / "history.json").read_text())
    metrics = json.loads((export / "metrics.json").read_text())
    test = metrics["test"]
    row = {
        "seed": seed,
        "epochs": len(history),
        "chosen_epoch": (metrics.get("chosen_epoch") or {}).get("epoch"),
        "final_train_accuracy": history[-1]["accuracy"],
        "best_val_accuracy": max(h["val_accuracy"] for h in history),
        **validation_scores(export),
        "test_accuracy": test["accuracy"],
        "test_interval": (test.get("intervals_95") or {}).get("accuracy"),
        "test_images": test.get("count"),
        "wall_s": round(result.wall_s, 1),
    }
    row["meets_targets"] = (row["val_accuracy"] >= TARGET_VAL_ACCURACY and row["p_face_faces"] >= TARGET_P_FACE_ON_FACES
                            and row["p_face_comics"] <= TARGET_P_FACE_ON_COMICS)
    shutil.rmtree(run_dir, ignore_errors=True)  # scratch of a finished run: only its row is kept
    return row


def _interval(row: dict[str, Any]) -> str:
    interval = row.get("test_interval")
    return f" [{interval['low']:.2f}, {interval['high']:.2f}]" if interval else ""


def markdown(report: dict[str, Any]) -> str:
    lines = [
        SECTION_START,
        f"Settings: {report['label']}" + (f" (`{' '.join(report['job_args'])}`)" if report["job_args"] else "") + ", "
        f"written by `python bench/quality.py` on {report['started']} in {report['wall_s']:.0f} s. "
        f"Validation: the sample's 16 images (8 faces, 8 comics), scored by the exported model; test: "
        "4 images, so its interval is wide.",
        "",
        "| seed | epochs | exported epoch | final train acc | best val acc | exported val acc | "
        "P(face) val faces | P(face) val comics | test acc [95%] | targets |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['seed']} | {r['epochs']} | {r['chosen_epoch']} | {r['final_train_accuracy']:.3f} | "
            f"{r['best_val_accuracy']:.3f} | {r['val_accuracy']:.3f} | {r['p_face_faces']:.3f} | "
            f"{r['p_face_comics']:.3f} | {r['test_accuracy']:.2f}{_interval(r)} | "
            f"{'pass' if r['meets_targets'] else '**FAIL**'} |")
    lines += ["", f"Targets: validation accuracy >= {TARGET_VAL_ACCURACY}, mean P(face) >= "
              f"{TARGET_P_FACE_ON_FACES} on faces and <= {TARGET_P_FACE_ON_COMICS} on comics; "
              f"{report['passed']} of {len(report['rows'])} seeds meet them.", SECTION_END]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replaces the text between the quality markers (or appends it under a heading)."""
    old = path.read_text() if path.exists() else ""
    if SECTION_START in old and SECTION_END in old:
        text = old[:old.index(SECTION_START)] + section + old[old.index(SECTION_END) + len(SECTION_END):]
    else:
        heading = "## Quality of the model from the defaults (bench/quality.py)"
        text = f"{old.rstrip()}\n\n{heading}\n\n{section}\n"
    path.write_text(text)


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="facecnn-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    started, clock = time.strftime("%Y-%m-%dT%H:%M:%S"), time.monotonic()
    try:
        rows = []
        for seed in args.seed_list:
            rows.append(one_seed(work, seed, args))
            r = rows[-1]
            print(f"[quality] seed {seed}: val acc {r['val_accuracy']:.3f}, P(face) faces {r['p_face_faces']:.3f} "
                  f"comics {r['p_face_comics']:.3f}, epoch {r['chosen_epoch']} of {r['epochs']}", flush=True)
        report = {"label": args.label, "job_args": [*(["--config", args.config] if args.config else []),
                                                    *(QUICK_ARGS if args.quick else []), *args.job_args],
                  "started": started, "wall_s": round(time.monotonic() - clock, 1), "rows": rows,
                  "passed": sum(r["meets_targets"] for r in rows)}
        out = Path(args.out) if args.out else work / "quality.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        section = markdown(report)
        print(section, flush=True)
        if args.markdown:
            write_section(Path(args.markdown), section)
        return 0
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
