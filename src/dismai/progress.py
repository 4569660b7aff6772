"""One look for every long-running loop (Monte Carlo, relaxation, training): a rich bar on stderr.

stdout stays clean for tables and paths; the bar shows done/total, elapsed time and an ETA,
then any per-task fields (e.g. failures, the last epoch's losses).
"""

from __future__ import annotations

__all__ = ["make_progress"]


def make_progress(*columns: str, enabled: bool = True, bar_width: int | None = 40):
    """A rich ``Progress`` (not started): description, bar, n/total, elapsed, eta, then one
    text column per format string in `columns` (e.g. ``"failed {task.fields[failed]}"``).

    ``enabled=False`` gives a silent bar with the same interface.
    """
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
