"""`python -m tfos_facecnn COMMAND ...`: a small dispatcher over subcommands.

Each subcommand lives in its own module or package with a `configure_parser(parser)` and a `command(args) -> int`;
adding one (say `predict`) is one more entry in COMMANDS. Errors a command reports with DownloadError
become one `error: ...` line on stderr and exit code 2 (bad arguments) or 1 (failure), not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import fetch, predict_job

# name -> (help line, adds the options, runs the parsed arguments and returns the exit code)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "download": ("fetch the full face2comics data set into --dest (faces/ and comics/)",
                 fetch.configure_parser, fetch.command),
    "predict": ("print face/comic and P(face) for each image with an exported model (no Spark)",
                predict_job.configure_local_parser, predict_job.local_command),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfos_facecnn",
                                     description="tfos-facecnn tools (training itself runs with spark-submit "
                                     "jobs/train.py)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_line, configure, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_line, description=help_line)
        configure(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parses argv, runs the command and returns its exit code (argparse's own errors give 2)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad options; callers want a code back
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        return args.run(args)
    except fetch.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except fetch.DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume the download", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
