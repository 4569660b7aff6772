"""The evaluation core: one result type, one table, one writer, for every dataset family.

``evaluate_structures`` checks the input, asks the dataset's family to score it
(:meth:`dismai.families.base.DatasetFamily.evaluate`) and writes, into ``out_dir``,
the family's per-structure files plus ``metrics.json`` and ``metrics.txt``:

    metrics.json = {"dataset": NAME, "n_input": M, "n_generated": N, <family header>,
                    "metrics": {METRIC: {"value", "lower_error", "upper_error"}},
                    "noise_floor": {... same shape: the validation split scored against
                                    the training split ...}}

The family header holds what the family adds (alloys: ``lattice_match``; relaxed
families: ``relaxed``, ``n_failed_move_apart``, ``n_failed_relaxation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dismai.errors import InputError, StructureError
from dismai.fileio import write_json, write_text
from dismai.metrics.report_common import format_entry, format_number, text_table

__all__ = ["Evaluation", "evaluate_structures", "check_n_generated", "format_table",
           "METRICS_JSON", "METRICS_TABLE"]

METRICS_JSON = "metrics.json"
METRICS_TABLE = "metrics.txt"


@dataclass
class Evaluation:
    """The result of scoring structures against a dataset.

    n_input: structures given; n_final: structures that reached the metrics (after any
    lattice matching, move-apart and relaxation); n_generated: structures originally
    generated (the denominator of pct_failed).  metrics and noise_floor: name ->
    {"value", "lower_error", "upper_error"} (errors None where there is no interval).
    header: family-specific keys of metrics.json; details: the family's per-structure
    results (used for its CSV and plots); titles: readable metric names for tables.
    """

    dataset: str
    family: str
    n_input: int
    n_final: int
    n_generated: int
    metrics: dict
    noise_floor: dict
    header: dict = field(default_factory=dict)
    details: Any = field(default=None, repr=False)
    titles: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        """The metrics.json contract (see the module docstring)."""
        return {"dataset": self.dataset, "n_input": self.n_input,
                "n_generated": self.n_generated, **self.header, "metrics": self.metrics,
                "noise_floor": self.noise_floor}

    def table(self) -> str:
        return format_table(self.metrics, self.noise_floor, self.titles)


def format_table(metrics: dict, noise_floor: dict | None = None,
                 titles: dict | None = None) -> str:
    """metric | value | 95 % interval | noise floor (val vs train), one number format."""
    noise_floor = noise_floor or {}
    titles = titles or {}
    rows = []
    for name, m in metrics.items():
        floor = noise_floor.get(name)
        rows.append((titles.get(name, name), format_number(m.get("value")),
                     format_entry(m, value=False), format_entry(floor)))
    return text_table(("metric", "value", "95% CI (pivotal)", "noise floor (val vs train)"),
                      rows)


def check_n_generated(n_generated: int | None, n_input: int) -> int:
    """n_generated as an int >= n_input (default n_input); one-line InputError otherwise."""
    if n_generated is None:
        return n_input
    if isinstance(n_generated, bool) or int(n_generated) != n_generated:
        raise InputError(f"n_generated must be an integer, got {n_generated!r}")
    n_generated = int(n_generated)
    if n_generated < n_input:
        raise InputError(f"n_generated ({n_generated}) must be at least the number of "
                         f"structures in the input ({n_input})")
    return n_generated


def evaluate_structures(gen, dataset, n_generated: int | None = None, out_dir=None,
                        progress=True, **options) -> Evaluation:
    """Score generated structures with the metric suite of the dataset's family.

    gen: a StructureSet on ``dataset.template`` (same cell and species order).
    dataset: a :class:`dismai.datasets.Dataset` (or anything with .name, .family,
    .reference, .template, .manifest).  n_generated: structures originally generated
    (failures included); default len(gen).  out_dir: if given, write the outputs there.
    progress: see :mod:`dismai.progress` (the relaxation of relaxed families).
    options: the family's evaluation options (``dataset.family.options``).
    """
    family = dataset.family
    n_gen = check_n_generated(n_generated, len(gen))
    opts = family.check_options(options)
    if not gen.same_template(dataset.template, atol=1e-3):
        raise StructureError(
            f"structures do not match the {dataset.name} template "
            f"({dataset.template.formula}, cell {dataset.template.lattice.diagonal().tolist()})"
        )
    ev = family.evaluate(gen, dataset, n_gen, out_dir=out_dir, progress=progress, **opts)
    ev.titles = dict(family.metric_titles)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        family.write_outputs(ev, dataset.reference, out)
        write_text(out / METRICS_TABLE, ev.table())
        write_json(out / METRICS_JSON, ev.to_json())
    return ev
