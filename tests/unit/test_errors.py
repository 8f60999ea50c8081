"""errors.run_command: one line and one exit code per outcome, and an interrupt stays an interrupt when a
clean-up step fails on its way out (a py4j call cut short by SIGTERM failing again in a finally)."""

from __future__ import annotations

import pytest

from tfos_facecnn.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Interrupted,
    Terminated,
    interrupt_behind,
    run_command,
)


def failing_while_unwinding(interrupt: KeyboardInterrupt) -> None:
    """What the driver saw: the signal's exception, then another raised in a `finally` while it unwound,
    then that one wrapped as a node failure (`raise ... from e`)."""
    try:
        try:
            raise interrupt
        finally:
            raise ValueError("An error occurred while calling o42.setCallSite")  # noqa: B012
    except ValueError as e:
        raise RuntimeError("error: TF node chief:0 on vm was lost: its executor exited") from e


def test_an_interrupt_is_found_behind_the_errors_raised_while_it_unwound():
    with pytest.raises(RuntimeError) as raised:
        failing_while_unwinding(Terminated("interrupted during epoch 4/12"))
    found = interrupt_behind(raised.value)
    assert isinstance(found, Terminated) and str(found) == "interrupted during epoch 4/12"
    assert interrupt_behind(RuntimeError("a node failed")) is None
    loop = RuntimeError("a")
    loop.__context__ = RuntimeError("b")
    loop.__context__.__context__ = loop  # a cycle ends the walk
    assert interrupt_behind(loop) is None


@pytest.mark.parametrize(("interrupt", "code"), [(Terminated("interrupted during epoch 4/12"), EXIT_TERMINATED),
                                                 (Interrupted("interrupted during epoch 4/12"), EXIT_INTERRUPTED)])
def test_a_failure_while_an_interrupt_unwound_exits_as_the_interrupt(capsys, interrupt, code: int):
    interrupt.reported = True  # its line is already on the terminal
    assert run_command(lambda: failing_while_unwinding(interrupt)) == code
    assert capsys.readouterr().err == ""


def test_an_unreported_interrupt_behind_a_failure_prints_its_one_line(capsys):
    assert run_command(lambda: failing_while_unwinding(Terminated("interrupted during epoch 2/3"))) == EXIT_TERMINATED
    assert capsys.readouterr().err == "error: stopped by SIGTERM: interrupted during epoch 2/3\n"


def test_a_failure_is_one_error_line_and_exit_1(capsys):
    def fail() -> None:
        raise RuntimeError("TF node worker:0 failed: fault injected")

    assert run_command(fail) == EXIT_FAILED
    assert capsys.readouterr().err == "error: TF node worker:0 failed: fault injected\n"
