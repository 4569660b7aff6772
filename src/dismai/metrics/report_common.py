"""Pieces every dataset family's report uses: colours, CSV cells, Agg figures, binned histograms.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state: safe in threads and on
headless machines) and saved atomically, so an interrupted run never leaves a truncated file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dismai.fileio import atomic_path

__all__ = ["TRAIN_COLOUR", "GEN_COLOUR", "csv_number", "csv_field", "format_number",
           "format_entry",
           "text_table", "figure", "save_png", "binned_percentages", "motif_bars",
           "plot_histograms", "PLOT_DATA", "curve_panel", "histogram_panel", "violin_panel",
           "bars_panel", "write_plot_data"]

#: the comparison data of one evaluation, drawn side by side with other runs by `dismai report`
PLOT_DATA = "plot_data.json"

TRAIN_COLOUR = "#4C72B0"
GEN_COLOUR = "#DD8452"


def csv_number(x) -> str:
    """Full-precision CSV cell; empty for None, NaN and inf."""
    if x is None:
        return ""
    x = float(x)
    return repr(x) if np.isfinite(x) else ""


def csv_field(s: str) -> str:
    """Quote a text cell that holds a comma or a quote."""
    return f'"{s}"' if ("," in s or '"' in s) else s


def format_number(x) -> str:
    """Table cell: 4 significant digits, scientific below 1e-3; '-' for None, 'nan' for NaN/inf."""
    if x is None:
        return "-"
    x = float(x)
    if not np.isfinite(x):
        return "nan"
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3e}"


def format_entry(entry, value: bool = True) -> str:
    """A metrics entry {"value", "lower_error", "upper_error"} as 'v [v - lower, v + upper]'
    (the 95 % pivotal interval), or only the interval with ``value=False``; '-' for None.
    A bare number is formatted as a value."""
    if entry is None:
        return "-"
    if not isinstance(entry, dict):
        return format_number(entry)
    v, lo, hi = entry.get("value"), entry.get("lower_error"), entry.get("upper_error")
    interval = (f"[{format_number(v - lo)}, {format_number(v + hi)}]"
                if v is not None and lo is not None and hi is not None else "")
    if not value:
        return interval or "-"
    return f"{format_number(v)} {interval}".rstrip()


def text_table(header, rows, numbers_right: bool = False) -> str:
    """Plain aligned columns under a dashed rule (no terminal-width wrapping, so logs stay
    readable).  numbers_right: right-align every column but the first."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def cell(i, c, w):
        return c.rjust(w) if numbers_right and i > 0 else c.ljust(w)

    lines = ["  ".join(cell(i, c, w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             .rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def figure(width: float, height: float):
    """A matplotlib Figure with its own Agg canvas (no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path) -> None:
    with atomic_path(Path(path), suffix=".png.tmp") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")


def binned_percentages(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, int]:
    """pandas.cut(include_lowest=True) + value_counts(normalize=True) * 100, as the reference
    plot scripts bin energies (§4.4, §6.3, §7.2).

    Bins are right-closed, (e_i, e_i+1], with the lowest edge included; values outside the
    range (and NaN) are dropped and percentages are of the in-range count.
    Returns (percentages (len(edges) - 1,), number of in-range values).
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    b = np.searchsorted(edges, x, side="left") - 1  # (e_i, e_i+1] -> i
    b[x == edges[0]] = 0  # include_lowest
    inside = (b >= 0) & (b < len(edges) - 1)
    n_in = int(inside.sum())
    counts = np.bincount(b[inside], minlength=len(edges) - 1).astype(np.float64)
    return (100.0 * counts / n_in if n_in else counts), n_in


def motif_bars(ax, labels, stats: dict, horizontal: bool = False) -> None:
    """Train vs generated percentage bars per label, with the generated 95 % interval.

    stats: ``train_pct``, ``gen_pct``, ``lower_error``, ``upper_error`` per label.  Pivotal
    errors can be negative, so the interval [gen - lower, gen + upper] itself is drawn.
    """
    if not len(labels):
        return
    pos = np.arange(len(labels))
    gen = np.asarray(stats["gen_pct"], dtype=np.float64)
    lo = gen - np.asarray(stats["lower_error"], dtype=np.float64)
    hi = gen + np.asarray(stats["upper_error"], dtype=np.float64)
    bars, lines = (ax.barh, ax.hlines) if horizontal else (ax.bar, ax.vlines)
    bars(pos - 0.2, stats["train_pct"], 0.4, color=TRAIN_COLOUR, label="train")
    bars(pos + 0.2, gen, 0.4, color=GEN_COLOUR, label="generated")
    lines(pos + 0.2, lo, hi, color="k", lw=1)
    if horizontal:
        ax.set_yticks(pos)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
    else:
        ax.set_xticks(pos)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)


def plot_histograms(path, edges: np.ndarray, train, gen, xlabel: str, title: str) -> None:
    """Train and generated percentages per bin (binned_percentages) as overlaid bars, each
    labelled with how many of its finite values fell in range (None series are skipped)."""
    fig = figure(7, 4.2)
    ax = fig.add_subplot()
    centres = (edges[1:] + edges[:-1]) / 2
    width = 0.95 * (edges[1] - edges[0])
    for data, colour, name in ((train, TRAIN_COLOUR, "train"), (gen, GEN_COLOUR, "generated")):
        if data is None:
            continue
        pct, n_in = binned_percentages(data, edges)
        n_all = int(np.isfinite(np.asarray(data, dtype=float)).sum())
        ax.bar(centres, pct, width, color=colour, alpha=0.55,
               label=f"{name} ({n_in}/{n_all} in range)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("% of structures")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    save_png(fig, path)


# ---------------------------------------------------------------- comparison panels
# Each family's report also writes PLOT_DATA: the few distributions a reader compares between
# models (train vs generated), in a family-independent form, so `dismai report` can overlay
# any number of runs without knowing the family.  Numbers are rounded to 5 significant digits.
def _rounded(x):
    a = np.asarray(x, dtype=np.float64)
    out = np.where(np.isfinite(a), a, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(out != 0, np.floor(np.log10(np.abs(out))), 0)
    scale = 10.0 ** (4 - np.nan_to_num(mag))
    r = np.round(out * scale) / scale
    return [None if not np.isfinite(v) else float(v) for v in r.ravel()]


def curve_panel(name, title, xlabel, ylabel, x, train, gen, xlim=None) -> dict:
    """A mean curve (g(r), angle distribution): one line per run against the train line."""
    return {"name": name, "kind": "curve", "title": title, "xlabel": xlabel,
            "ylabel": ylabel, "x": _rounded(x), "train": _rounded(train),
            "gen": _rounded(gen), "xlim": list(xlim) if xlim else None}


def histogram_panel(name, title, xlabel, edges, train, gen) -> dict:
    """Percentages per bin of raw values (binned_percentages), train and generated."""
    edges = np.asarray(edges, dtype=np.float64)
    return {"name": name, "kind": "histogram", "title": title, "xlabel": xlabel,
            "ylabel": "% of structures", "edges": _rounded(edges),
            "train": None if train is None else _rounded(binned_percentages(train, edges)[0]),
            "gen": None if gen is None else _rounded(binned_percentages(gen, edges)[0])}


def violin_panel(name, title, ylabel, groups, train, gen) -> dict:
    """Per-structure values per group (SRO per pair): train and generated samples."""
    def cols(a):
        a = np.asarray(a, dtype=np.float64).reshape(-1, len(groups))
        return [[v for v in _rounded(a[:, j]) if v is not None] for j in range(len(groups))]

    return {"name": name, "kind": "violin", "title": title, "ylabel": ylabel,
            "groups": list(groups), "train": cols(train), "gen": cols(gen)}


def bars_panel(name, title, ylabel, labels, train, gen) -> dict:
    """Percentages per label (most-likely motifs), train and generated."""
    return {"name": name, "kind": "bars", "title": title, "ylabel": ylabel,
            "labels": [str(x) for x in labels], "train": _rounded(train), "gen": _rounded(gen)}


def write_plot_data(out_dir, panels: list[dict]) -> Path:
    """Write PLOT_DATA (version 1) into out_dir."""
    import json

    from dismai.fileio import write_text

    path = Path(out_dir) / PLOT_DATA
    write_text(path, json.dumps({"version": 1, "panels": panels}, separators=(",", ":")) + "\n")
    return path
