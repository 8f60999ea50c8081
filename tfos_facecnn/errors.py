"""One mapping of errors to exit codes, for every command of the project (jobs/, python -m tfos_facecnn,
the cluster launcher): a failure becomes one `error: ...` line on stderr and its code, never a traceback.

- 2: the user's settings or inputs are wrong (ConfigError; the download's UsageError): nothing was started;
- 1: the job ran and failed (RuntimeError, OSError, ValueError, the download's DownloadError);
- 130 / 143: interrupted by Ctrl-C / stopped by SIGTERM.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .config import ConfigError

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Interrupted(KeyboardInterrupt):
    """Ctrl-C as a job reports it: its message says where the job stopped; `reported` once that line is on
    the terminal (a job prints it at once: spark-submit's JVM, which relays the Python driver's output,
    may be gone by the time the driver has cleaned up)."""

    reported = False


class Terminated(Interrupted):
    """SIGTERM, raised as the interrupt Ctrl-C raises (driver._signals_unwind): it unwinds the same way,
    and no handler on the way treats it as a failure to explain."""


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM an exception was raised while unwinding from, if any: a py4j call cut short by
    the signal can fail again in the clean-up on its way out (a job's call site reset over a connection
    py4j has just shut), and that second error must not be reported as the job's failure."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def interruption_line(error: KeyboardInterrupt, default: str = "interrupted") -> str:
    message = str(error) or default
    return f"error: stopped by SIGTERM: {message}" if isinstance(error, Terminated) else f"error: {message}"


def _bad_input(error: BaseException) -> bool:
    from .fetch.errors import UsageError

    return isinstance(error, (ConfigError, UsageError))


def run_command(work: Callable[[], int | None], interrupted: str = "interrupted") -> int:
    """Runs a command's work and returns its exit code; `interrupted` is the line printed on Ctrl-C."""
    try:
        return work() or 0
    except KeyboardInterrupt as e:  # the job may say where it stopped and where the same command resumes
        return _exit_interrupted(e, interrupted)
    except (RuntimeError, OSError, ValueError) as e:
        interrupt = interrupt_behind(e)
        if interrupt is not None:  # raised while an interrupt unwound: the interrupt is what happened
            return _exit_interrupted(interrupt, interrupted)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT if _bad_input(e) else EXIT_FAILED


def _exit_interrupted(error: KeyboardInterrupt, interrupted: str) -> int:
    """The interrupt's line, unless the job already printed it, and its exit code."""
    if not getattr(error, "reported", False):
        print(interruption_line(error, interrupted), file=sys.stderr)
    return EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED
