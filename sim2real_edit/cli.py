"""What every script shares: one-line errors instead of tracebacks, and interruptions that say what was saved.

    parser = cli.ArgumentParser(description=__doc__)       # adds --debug; usage errors are one line
    parser.add_argument("--steps", type=cli.positive_int)  # checked before any heavy import
    ...
    if __name__ == "__main__":
        cli.run_main(main)

A failing script prints `error: <what is wrong and how to fix it>` and exits with 2; `--debug` shows the
traceback instead. Ctrl-C (exit 130) and SIGTERM (exit 143) end with one line that says what was saved and
how to continue, from the notes registered with `on_interrupt`.
"""

from __future__ import annotations

import argparse
import math
import signal
import sqlite3
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

DEBUG_FLAG = "--debug"
EXIT_ERROR = 2  # like argparse's usage errors
EXIT_BUG = 1
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
MAX_SEED = 2**32 - 1  # what every consumer of a seed accepts (numpy, SIMPLER's RandomState)

# Errors that describe a problem with the input or the machine and say what to do; anything else is a bug.
_EXPECTED_ERRORS = (ValueError, OSError, ImportError, sqlite3.Error)
# Every error class these packages define is a refusal by design (run folder busy, config changed, damaged
# file...), and says what to do.
_OUR_PACKAGES = ("sim2real_edit", "envs", "policies", "evaluation")

_interrupt_notes: list[Callable[[], str | None]] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds (and cleans up) like Ctrl-C."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with `--debug` and one-line usage errors (the usage is in --help)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true", help="show the full traceback of an error")

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def on_interrupt(note: Callable[[], str | None]) -> None:
    """Registers what to say when the script is interrupted: e.g. what is saved and how to continue."""
    _interrupt_notes.append(note)


def run_main(main: Callable[[list[str]], Any], argv: list[str] | None = None) -> None:
    """Runs `main(argv)` as a script: errors become one line and exit 2, interruptions one line too."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    _interrupt_notes.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        main(argv)
    except KeyboardInterrupt as interruption:
        if debug:
            raise
        terminated = isinstance(interruption, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
        print(f"{what}: {_saved_note()}", file=sys.stderr)
        sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
    except Exception as error:
        if debug:
            raise
        print(f"error: {error_message(error)}", file=sys.stderr)
        sys.exit(EXIT_ERROR if is_expected(error) else EXIT_BUG)
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_expected(error: BaseException) -> bool:
    """Whether `error` reports a problem with the inputs or the machine (not a bug in this code)."""
    return isinstance(error, _EXPECTED_ERRORS) or type(error).__module__.split(".")[0] in _OUR_PACKAGES


def error_message(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if is_expected(error):
        return text
    return (f"unexpected {type(error).__name__}: {text.rstrip('.')}. This looks like a bug: rerun with "
            f"{DEBUG_FLAG} for the traceback and report it")


def _saved_note() -> str:
    notes = []
    for note in _interrupt_notes:
        try:
            text = note()
        except Exception as error:  # noqa: BLE001 (a note must never hide the interruption itself)
            text = f"(could not tell what was saved: {error})"
        if text:
            notes.append(text)
    return "; ".join(notes) or "nothing had been saved yet"


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


# ---------------------------------------------------------------------- argparse types, checked before imports


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is an integer in [0, {MAX_SEED}], got {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
