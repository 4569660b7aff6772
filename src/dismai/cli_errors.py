"""The one error policy of the command line, shared by every `dismai` command.

Expected failures (bad input, unknown names, corrupted files, failed builds) print one line
on stderr and exit with code 2; an interrupted training run exits 128 + signal after its
checkpoint is written.
"""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

err_console = Console(stderr=True)

EXPECTED = (ValueError, OSError, RuntimeError, NotImplementedError)


def fail(message: str) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def friendly(fn):
    """Turn expected exceptions into a one-line message and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            training = sys.modules.get("dismai.models.training")
            if training is not None and isinstance(exc, training.TrainingInterrupted):
                err_console.print(f"interrupted: {exc}; continue with the same command and "
                                  "--resume", markup=False, highlight=False, soft_wrap=True)
                raise typer.Exit(128 + exc.signum) from None
            if not isinstance(exc, EXPECTED):
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(msg)

    return wrapper
