"""The evaluation core: one result type, one table, one writer, for every dataset family.

``evaluate_structures`` checks the input, asks the dataset's family to score it
(:meth:`dismai.families.base.DatasetFamily.evaluate`) and writes, into ``out_dir``,
the family's per-structure files plus ``metrics.json`` and ``metrics.txt``:

    metrics.json = {"schema_version": 2, "dataset": NAME, "label": what was scored,
                    "n_input": M, "n_generated": N, <family header>,
                    "metrics": {METRIC: {"value", "lower_error", "upper_error"}},
                    "noise_floor": {... same shape: the validation split scored against
                                    the training split ...},
                    "provenance": {... dismai.provenance: code, data, machine, model ...}}

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
           "add_near_copies", "METRICS_JSON", "METRICS_TABLE", "CORE_TITLES"]

METRICS_JSON = "metrics.json"
METRICS_TABLE = "metrics.txt"
NEAR_COPIES_CSV = "near_copies.csv"
#: metrics the core adds to every family's (evaluation option ``near_copies``)
CORE_TITLES = {"pct_near_copy": "% near copies of a training structure"}


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
    label: str | None = None
    provenance: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        """The metrics.json contract (see the module docstring)."""
        from dismai.provenance import METRICS_SCHEMA_VERSION

        return {"schema_version": METRICS_SCHEMA_VERSION, "dataset": self.dataset,
                "label": self.label, "n_input": self.n_input,
                "n_generated": self.n_generated, **self.header, "metrics": self.metrics,
                "noise_floor": self.noise_floor, "provenance": self.provenance}

    def table(self) -> str:
        return format_table(self.metrics, self.noise_floor, self.titles)


def add_near_copies(ev: Evaluation, gen, dataset):
    """Add ``pct_near_copy`` (dismai.metrics.memorisation) to an evaluation, with the
    validation split's value as its noise floor; returns the per-structure distances.

    Computed on the structures as given (what the model produced), against the training
    split, with the distance the family declares (``near_copy_kind``: sites or atoms).
    """
    from dismai.metrics.bootstrap import no_ci
    from dismai.metrics.memorisation import nearest_distances, pct_near_copy

    ref = dataset.near_copy_reference()
    nearest = nearest_distances(dataset.family.near_copy_kind, gen, dataset.train)
    ev.metrics["pct_near_copy"] = no_ci(pct_near_copy(nearest, ref["threshold"])).as_dict()
    ev.noise_floor = {**ev.noise_floor,
                      "pct_near_copy": no_ci(ref["pct_val"]).as_dict()}
    ev.header["near_copy"] = {"distance": ref["distance"], "threshold": ref["threshold"],
                              "rule": ref["rule"]}
    return nearest


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
                        progress=True, label: str | None = None,
                        provenance: dict | None = None, **options) -> Evaluation:
    """Score generated structures with the metric suite of the dataset's family.

    gen: a StructureSet on ``dataset.template`` (same cell and species order).
    dataset: a :class:`dismai.datasets.Dataset` (or anything with .name, .family,
    .reference, .template, .manifest).  n_generated: structures originally generated
    (failures included); default len(gen).  out_dir: if given, write the outputs there.
    progress: see :mod:`dismai.progress` (the relaxation of relaxed families).
    label: what was scored (a model name, a file): how `dismai report` names the row.
    provenance: extra provenance (e.g. the model's), merged over dismai.provenance's
    environment and dataset blocks.
    options: the family's evaluation options (``dataset.family.options``), plus
    ``near_copies`` (default True): add ``pct_near_copy``, see :func:`add_near_copies`.
    """
    from dismai.provenance import dataset_provenance, environment

    family = dataset.family
    n_gen = check_n_generated(n_generated, len(gen))
    near_copies = options.pop("near_copies", None)
    opts = family.check_options(options)
    if not gen.same_template(dataset.template, atol=1e-3):
        raise StructureError(
            f"structures do not match the {dataset.name} template "
            f"({dataset.template.formula}, cell {dataset.template.lattice.diagonal().tolist()})"
        )
    ev = family.evaluate(gen, dataset, n_gen, out_dir=out_dir, progress=progress, **opts)
    ev.titles = {**family.metric_titles, **CORE_TITLES}
    ev.label = label
    ev.provenance = {**environment(), "dataset": dataset_provenance(dataset),
                     "options": {k: v for k, v in opts.items() if k != "workers"},
                     **(provenance or {})}
    nearest = None
    if near_copies is not False and hasattr(dataset, "near_copy_reference"):
        nearest = add_near_copies(ev, gen, dataset)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        family.write_outputs(ev, dataset.reference, out)
        if nearest is not None:
            write_text(out / NEAR_COPIES_CSV, "structure_index,nearest_train_distance\n" +
                       "".join(f"{i},{d!r}\n" for i, d in enumerate(nearest.tolist())))
        write_text(out / METRICS_TABLE, ev.table())
        write_json(out / METRICS_JSON, ev.to_json())
    return ev
