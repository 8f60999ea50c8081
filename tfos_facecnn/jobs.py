"""Every job has one shape: argv -> its frozen config (cli.py) -> one library function(spark, config) ->
a summary line; errors.py maps failures to exit codes. The jobs/*.py scripts call these."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .errors import run_command

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _job(work) -> int:
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines as Python exits stay off the console
    return run_command(work)


def run_train(argv: Sequence[str]) -> int:
    def work() -> None:
        from .cli import parse_train_args
        from .driver import train
        from .session import session_source

        cfg, master = parse_train_args(argv)
        result = train(session_source(master_url=master), cfg)
        for trained in result.each():
            test = trained.metrics.get("test", {})
            print(f"done: test accuracy={test.get('accuracy')} on {test.get('count')} images; "
                  f"outputs in {trained.export_dir}")

    return _job(work)


def run_crossval(argv: Sequence[str]) -> int:
    def work() -> None:
        from .cli import parse_crossval_args
        from .crossvalidation import crossval
        from .session import session_source

        cfg, folds, master = parse_crossval_args(argv)
        summary = crossval(session_source(master_url=master), cfg, folds)
        for row in summary["folds"]:
            interval = row["interval_95"]
            print(f"fold {row['fold']}: test accuracy {row['accuracy']:.3f} on {row['images']} images "
                  f"(95% {interval['low']:.2f}-{interval['high']:.2f}), exported epoch {row['chosen_epoch']}")
        pooled = summary["pooled_interval_95"]
        print(f"done: {len(summary['folds'])}-fold accuracy {summary['mean_accuracy']:.3f} +- "
              f"{summary['std_accuracy']:.3f} (mean +- sd over folds; range {summary['min_accuracy']:.3f}-"
              f"{summary['max_accuracy']:.3f}); pooled {summary['pooled_accuracy']:.3f} on "
              f"{summary['images_tested']} images (95% {pooled['low']:.2f}-{pooled['high']:.2f})")

    return _job(work)


def run_prepare(argv: Sequence[str]) -> int:
    def work() -> None:
        from .cli import parse_prepare_args
        from .preparation import prepare
        from .session import session_source

        pcfg, master = parse_prepare_args(argv)
        manifest = prepare(session_source(master_url=master), pcfg)
        counts = manifest["counts"]
        print(f"prepared {pcfg.output_dir}: " + ", ".join(f"{s} {counts[s]['total']}" for s in counts)
              + f" records ({manifest['record_format']}, {manifest['image_size']} px); "
              f"{len(manifest['skipped'])} skipped")

    return _job(work)


def run_evaluate(argv: Sequence[str]) -> int:
    def work() -> None:
        from .cli import parse_evaluate_args
        from .evaluation import evaluate
        from .session import session_source

        ecfg, master = parse_evaluate_args(argv)
        result = evaluate(session_source(master_url=master), ecfg)
        m = result["metrics"]
        print(f"evaluated {m['count']} images: accuracy={m['accuracy']:.4f} f1={m['f1']:.4f} "
              f"roc_auc={m['roc_auc']}; {len(m['errors'])} unreadable; report in {result['output_dir']}/report.md")

    return _job(work)


def run_predict(argv: Sequence[str]) -> int:
    def work() -> None:
        from .cli import parse_predict_args
        from .inference import predict
        from .session import session_source

        pcfg, master = parse_predict_args(argv)
        summary = predict(session_source(master_url=master), pcfg)
        for path, reason in summary["errors"]:
            print(f"could not predict {path}: {reason}")
        print(f"predicted {summary['rows'] - len(summary['errors'])} of {summary['rows']} images into "
              f"{summary['output']} ({summary['format']}); {len(summary['errors'])} error row(s)")

    return _job(work)


def run_local_predict(args: Any) -> int:
    """`python -m tfos_facecnn predict` (its dispatcher maps errors to exit codes): tab-separated lines
    under a header, the columns of jobs/predict.py (path, p_face, predicted, error; empty where none),
    no Spark; 1 if any image failed."""
    from .inference import PREDICTION_COLUMNS, expand_inputs, load_model, model_file, predict_paths

    model = load_model(model_file(args.model))
    paths = expand_inputs(args.images)
    print("\t".join(PREDICTION_COLUMNS), flush=True)
    failed = 0
    for row in predict_paths(model, paths):
        if row.error is None:
            print(f"{row.path}\t{row.p_face:.4f}\t{row.predicted}\t", flush=True)
        else:
            failed += 1
            print(f"{row.path}\t\t\t{row.error}", flush=True)
    return 1 if failed else 0
