"""Cross-run tables in the paper's layout, one per dataset family, as Markdown, LaTeX and
CSV.

Rows are models (then baselines, then the noise floor); columns are the family's paper
metrics (its ``report_metrics``) per dataset, plus ``pct_near_copy``.  A cell is
"mean (min, max)" over repeats, as the paper's Tables 1-3, or, for a single run, the
value with its 95 % pivotal bootstrap interval "v [lo, hi]".
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from dismai.metrics.report_common import csv_field, csv_number, format_number
from dismai.report.collect import NOISE_FLOOR, Group

__all__ = ["Cell", "Table", "cell_of", "family_tables", "SHORT_TITLES", "tables_csv",
           "metric_columns"]

#: column headers as short as the paper's
SHORT_TITLES = {"pct_vacancy": "% w/ vac", "pct_failed": "% failed",
                "pct_near_copy": "% near copy", "mean_relax_steps": "relax steps"}
RAW = "@raw"  # suffix of a metric scored on the structures as generated


def short_title(metric: str) -> str:
    base = metric.removesuffix(RAW)
    return SHORT_TITLES.get(base, base)


@dataclass
class Cell:
    """One table cell: the repeats' values, and the interval of a single run."""

    values: list[float] = field(default_factory=list)
    lower: float | None = None  # single run: the interval's ends
    upper: float | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def min(self) -> float | None:
        return float(np.min(self.values)) if self.values else None

    @property
    def max(self) -> float | None:
        return float(np.max(self.values)) if self.values else None

    def text(self) -> str:
        if not self.values:
            return "-"
        if self.n > 1:
            return (f"{format_number(self.mean)} ({format_number(self.min)}, "
                    f"{format_number(self.max)})")
        if self.lower is None:
            return format_number(self.values[0])
        return (f"{format_number(self.values[0])} [{format_number(self.lower)}, "
                f"{format_number(self.upper)}]")


def _entry_cell(entry) -> Cell:
    if not isinstance(entry, dict) or entry.get("value") is None:
        return Cell()
    v, lo, hi = entry["value"], entry.get("lower_error"), entry.get("upper_error")
    if lo is None or hi is None:
        return Cell([float(v)])
    return Cell([float(v)], float(v - lo), float(v + hi))


def cell_of(group: Group, metric: str) -> Cell:
    """The group's cell for a metric (NAME or NAME@raw): mean/min/max over repeats."""
    entries = [r.scores().get(metric) for r in group.results]
    entries = [e for e in entries if isinstance(e, dict) and e.get("value") is not None]
    if len(entries) == 1:
        return _entry_cell(entries[0])
    return Cell([float(e["value"]) for e in entries])


def noise_floor_cell(groups: list[Group], metric: str) -> Cell:
    """The dataset's noise floor (the same in every result of one dataset version)."""
    base = metric.removesuffix(RAW)
    for g in groups:
        for r in g.results:
            entry = (r.data.get("noise_floor") or {}).get(base)
            if entry is not None:
                return _entry_cell(entry)
    return Cell()


@dataclass
class Table:
    title: str
    family: str
    columns: list[tuple[str, str]]  # (dataset, metric)
    rows: list[tuple[str, list[Cell], int]]  # (label, cells, repeats)
    note: str = ""

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(d for d, _ in self.columns))

    def headers(self) -> list[str]:
        many = len(self.datasets) > 1
        return [(f"{d}: " if many else "") + short_title(m) for d, m in self.columns]

    def markdown(self) -> str:
        head = ["model", "repeats", *self.headers()]
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, cells, n in self.rows:
            lines.append("| " + " | ".join([label, str(n) if n else "-",
                                             *(c.text() for c in cells)]) + " |")
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        def esc(s: str) -> str:
            return (s.replace("\\", r"\textbackslash{}").replace("%", r"\%")
                    .replace("_", r"\_").replace("&", r"\&").replace("#", r"\#"))

        head = ["model", "repeats", *self.headers()]
        out = [f"% {self.title}", r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
               r"\hline", " & ".join(esc(h) for h in head) + r" \\", r"\hline"]
        for label, cells, n in self.rows:
            out.append(" & ".join([esc(label), str(n) if n else "-",
                                   *(esc(c.text()) for c in cells)]) + r" \\")
        out += [r"\hline", r"\end{tabular}"]
        return "\n".join(out) + "\n"


def metric_columns(family: str | None, groups: list[Group], raw: bool = False) -> list[str]:
    """The family's paper metrics (+ pct_near_copy) present in any group; with raw, the
    as-generated ones (+ mean_relax_steps, the relaxed half of the learning gate)."""
    from dismai.errors import UnknownNameError
    from dismai.families import get_family

    present = {m for g in groups for r in g.results for m in r.scores()}
    try:
        fam = get_family(family) if family else None
        wanted = list(fam.report_metrics or fam.metric_names) if fam else []
    except UnknownNameError:
        wanted = []
    if not wanted:  # an unregistered family: whatever the results hold
        wanted = [m for m in dict.fromkeys(m for g in groups for r in g.results
                                           for m in r.data.get("metrics", {}))]
    if raw:
        cols = [f"{m}{RAW}" for m in wanted if f"{m}{RAW}" in present]
        return cols + (["mean_relax_steps"] if cols and "mean_relax_steps" in present else [])
    return [m for m in [*wanted, "pct_near_copy"] if m in present]


def family_tables(groups: list[Group]) -> list[Table]:
    """One table per family (columns: its datasets x paper metrics), and for relaxed
    families with as-generated scores a second table of those."""
    families = list(dict.fromkeys(g.family for g in groups))
    tables = []
    for fam in families:
        fg = [g for g in groups if g.family == fam]
        for raw in (False, True):
            metrics = metric_columns(fam, fg, raw=raw)
            if not metrics:
                continue
            datasets = list(dict.fromkeys(g.dataset for g in fg))
            columns = [(d, m) for d in datasets for m in metrics]
            rows = []
            labels = list(dict.fromkeys((g.baseline, g.label) for g in fg))
            for baseline, label in sorted(labels):
                cells = []
                n = 0
                for d, m in columns:
                    g = next((x for x in fg if x.dataset == d and x.label == label
                              and x.baseline == baseline), None)
                    cells.append(Cell() if g is None else cell_of(g, m))
                    n = max(n, 0 if g is None else len(g.results))
                rows.append((label + (" [baseline]" if baseline else ""), cells, n))
            rows.append((NOISE_FLOOR, [noise_floor_cell([g for g in fg if g.dataset == d], m)
                                       for d, m in columns], 0))
            title = f"{fam}: " + ", ".join(datasets)
            note = ("Cells: mean (min, max) over repeats; a single run shows its value "
                    "[95 % pivotal bootstrap interval]. Lower is better.")
            if raw:
                title += " - as generated (no move-apart, no relaxation)"
                note += (" Scored on the structures as the model produced them; `% failed` "
                         "here counts structures left out for coincident atoms; `relax "
                         "steps` is the relaxed half of the learning gate.")
            tables.append(Table(title, fam, columns, rows, note))
    return tables


def tables_csv(tables: list[Table]) -> str:
    """Long format: one line per table row x dataset x metric, every number in full."""
    out = io.StringIO()
    out.write("table,model,repeats,dataset,metric,mean,min,max,value,lower,upper\n")
    for t in tables:
        for label, cells, n in t.rows:
            for (d, m), c in zip(t.columns, cells, strict=True):
                single = c.n == 1
                out.write(",".join([
                    csv_field(t.title), csv_field(label), str(n), d, m,
                    csv_number(c.mean), csv_number(c.min), csv_number(c.max),
                    csv_number(c.values[0] if single else None),
                    csv_number(c.lower if single else None),
                    csv_number(c.upper if single else None)]) + "\n")
    return out.getvalue()
