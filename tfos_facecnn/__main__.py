"""`python -m tfos_facecnn COMMAND ...`: a small dispatcher over subcommands.

Each subcommand has a `configure_parser(parser)` and a `command(args) -> int`; adding one is one more entry
in COMMANDS. Errors become one `error: ...` line on stderr and an exit code (errors.py), not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__, fetch
from .cli import configure_local_predict
from .errors import run_command
from .jobs import run_local_predict

# name -> (help line, adds the options, runs the parsed arguments and returns the exit code)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "download": ("fetch the full face2comics data set into --dest (faces/ and comics/)",
                 fetch.configure_parser, fetch.command),
    "predict": ("print face/comic and P(face) for each image with an exported model (no Spark)",
                configure_local_predict, run_local_predict),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfos_facecnn",
                                     description="tfos-facecnn tools (training itself runs with spark-submit "
                                     "jobs/train.py)")
    parser.add_argument("--version", action="version", version=f"tfos-facecnn {__version__}")
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
    return run_command(lambda: args.run(args), "interrupted; run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
