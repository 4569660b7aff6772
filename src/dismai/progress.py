"""One progress convention for every long job (dataset builds, relaxation, training).

A long job takes ``progress`` and reports through ``report = reporter(progress)`` as

    report(stage, done, total, **fields)

where `stage` names the step ("Monte Carlo passes", "parent quenches", "relaxation",
"training"), `done` is the absolute number of finished units (so a resumed job simply
reports where it stands), `total` the number to reach, and `fields` short extras shown
beside the bar (e.g. ``failed=2``).  ``progress`` may be None/False (silent), True (a rich
bar per stage on stderr; stdout stays clean for tables and paths) or any callable with that
signature, which is passed through unchanged so nested jobs share one display.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

__all__ = ["ProgressCallback", "make_progress", "reporter", "silent"]

ProgressCallback = Callable[..., None]


def silent(stage: str, done: int, total: int | None = None, **fields) -> None:
    """The callback that shows nothing."""


def make_progress(*columns: str, enabled: bool = True, bar_width: int | None = 40):
    """A rich ``Progress`` (not started): description, bar, n/total, elapsed, eta, then one
    text column per format string in `columns` (e.g. ``"{task.fields[info]}"``)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=bar_width),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), *(TextColumn(c) for c in columns),
                    console=Console(stderr=True), disable=not enabled)


class _RichReporter:
    """Rich bars, one task per stage, created on the stage's first report."""

    def __init__(self):
        self._prog = make_progress("{task.fields[info]}", bar_width=30)
        self._tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int | None = None, **fields) -> None:
        info = "  ".join(f"{k} {v}" for k, v in fields.items())
        if stage not in self._tasks:
            self._tasks[stage] = self._prog.add_task(stage, total=total, info=info)
        self._prog.update(self._tasks[stage], completed=done, total=total, info=info)

    def __enter__(self):
        self._prog.start()
        return self

    def __exit__(self, *exc) -> None:
        self._prog.stop()


@contextlib.contextmanager
def reporter(progress):
    """Yield the callback for `progress` (None/False, True or a callable), see module doc."""
    if progress is None or progress is False:
        yield silent
    elif progress is True:
        with _RichReporter() as bar:
            yield bar
    elif callable(progress):
        yield progress
    else:
        raise TypeError(f"progress must be None, a bool or a callable, got {progress!r}")
