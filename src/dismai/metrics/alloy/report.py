"""Alloy evaluation outputs: per-structure CSV, SRO and energy plots.

Plots are drawn with matplotlib's Agg canvas directly (no pyplot state, so they work in
threads and on headless machines).  Every file appears atomically (temporary name, then
rename) so an interrupted run never leaves a truncated output.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dismai.fileio import write_text
from dismai.metrics.alloy.evaluate import AlloyEvaluation
from dismai.metrics.report_common import GEN_COLOUR as _GEN_COLOUR
from dismai.metrics.report_common import TRAIN_COLOUR as _TRAIN_COLOUR
from dismai.metrics.report_common import binned_percentages as _binned
from dismai.metrics.report_common import csv_number as _num
from dismai.metrics.report_common import figure as _figure
from dismai.metrics.report_common import histogram_panel, violin_panel, write_plot_data
from dismai.metrics.report_common import save_png as _save_png

__all__ = [
    "ENERGY_BIN_EDGES",
    "per_structure_csv",
    "binned_percentages",
    "energy_histogram",
    "plot_sro",
    "plot_energy_histogram",
    "comparison_panels",
    "write_outputs",
]

#: §4.4: np.arange(-5, 15 + 0.5, 0.5) meV/atom, 41 edges
ENERGY_BIN_EDGES = np.arange(-5.0, 15.0 + 0.5, 0.5)


def per_structure_csv(ev: AlloyEvaluation) -> str:
    """CSV text: index, accepted, status, n_removed, vac_count, E_f, 12 SRO, 45 probabilities."""
    header = (["structure_index", "accepted", "status", "n_removed", "vac_count",
               "formation_energy_eV_per_atom"]
              + [f"sro_{c}" for c in ev.sro_columns]
              + [f"prob_{c}" for c in ev.columns])
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for i in range(ev.n_input):
        row = [str(i), str(bool(ev.accepted[i])).lower(), str(ev.status[i]),
               str(int(ev.n_removed[i])) if ev.n_removed[i] >= 0 else "",
               str(int(ev.vac_count[i])) if ev.vac_count[i] >= 0 else "",
               _num(ev.formation_energy[i])]
        row += [_num(x) for x in ev.sro[i]]
        row += [_num(x) for x in ev.probabilities[i]]
        out.write(",".join(row) + "\n")
    return out.getvalue()


def binned_percentages(values: np.ndarray, edges: np.ndarray = ENERGY_BIN_EDGES
                       ) -> tuple[np.ndarray, int]:
    """Percentages per right-closed bin of in-range values, and their count (§4.4)."""
    return _binned(values, edges)


def energy_histogram(energy_ev: np.ndarray, train_mean_ev: float,
                     edges: np.ndarray = ENERGY_BIN_EDGES) -> tuple[np.ndarray, int]:
    """Percentages per bin of (E - mean_train) * 1000 meV/atom (plot_energy_distribution.py)."""
    x = (np.asarray(energy_ev, dtype=np.float64) - train_mean_ev) * 1000.0
    return binned_percentages(x, edges)


def _kde(v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE with Scott's bandwidth (as scipy.stats.gaussian_kde / seaborn), in numpy.

    Avoids importing scipy.stats (over a second) just to draw six violins.
    """
    h = np.std(v, ddof=1) * len(v) ** (-1.0 / 5.0)
    z = (grid[:, None] - v[None, :]) / h
    return np.exp(-0.5 * z * z).sum(axis=1) / (len(v) * h * np.sqrt(2 * np.pi))


def _half_violin(ax, x0: float, values: np.ndarray, side: int, scale: float, grid: np.ndarray,
                 colour: str) -> None:
    """One half of a split violin (seaborn-like: density_norm='count', inner='quart')."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return
    if len(v) < 2 or np.ptp(v) < 1e-12:
        ax.plot([x0, x0 + side * 0.4], [v[0], v[0]], color=colour, lw=2)
        return
    dens = _kde(v, grid) * len(v) * scale
    lo, hi = v.min(), v.max()
    sel = (grid >= lo - 0.05 * np.ptp(v)) & (grid <= hi + 0.05 * np.ptp(v))
    ax.fill_betweenx(grid[sel], x0, x0 + side * dens[sel], color=colour, alpha=0.7, lw=0.8,
                     edgecolor="k")
    for q, style in ((25, ":"), (50, "--"), (75, ":")):
        y = np.percentile(v, q)
        w = np.interp(y, grid, dens)
        ax.plot([x0, x0 + side * w], [y, y], color="k", ls=style, lw=1)


def plot_sro(train_sro: np.ndarray, gen_sro: np.ndarray, columns, shell: int, path: Path) -> None:
    """Split violins train (left) vs generated (right) of the six shell-`shell` SRO columns."""
    cols = [i for i, c in enumerate(columns) if c.startswith(f"{shell}NN_")]
    train = np.asarray(train_sro, dtype=np.float64)[:, cols]
    gen = np.asarray(gen_sro, dtype=np.float64)[:, cols]
    both = np.concatenate([train[np.isfinite(train)], gen[np.isfinite(gen)]])
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    if len(both):
        pad = 0.1 * max(np.ptp(both), 1e-3)
        grid = np.linspace(both.min() - pad, both.max() + pad, 400)
        peak = 0.0  # density_norm='count': one width scale for every half violin
        for data in (train, gen):
            for j in range(len(cols)):
                v = data[:, j][np.isfinite(data[:, j])]
                if len(v) >= 2 and np.ptp(v) >= 1e-12:
                    peak = max(peak, float((_kde(v, grid) * len(v)).max()))
        scale = 0.45 / peak if peak > 0 else 1.0
        for j in range(len(cols)):
            _half_violin(ax, j, train[:, j], -1, scale, grid, _TRAIN_COLOUR)
            _half_violin(ax, j, gen[:, j], +1, scale, grid, _GEN_COLOUR)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([columns[i].split("_", 1)[1] for i in cols])
    ax.set_xlim(-0.6, len(cols) - 0.4)
    ax.set_ylabel(r"Warren-Cowley $\alpha$ (reference convention)")
    ax.set_title(f"{shell}NN short-range order: train (left) vs generated (right)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=_TRAIN_COLOUR, label=f"train (n={len(train)})"),
                       Patch(color=_GEN_COLOUR, label=f"generated (n={len(gen)})")],
              loc="best", fontsize=8)
    _save_png(fig, path)


def plot_energy_histogram(train_energy: np.ndarray, gen_energy: np.ndarray,
                          train_mean: float, path: Path) -> None:
    """CE formation-energy distributions relative to the training mean (§4.4 binning)."""
    edges = ENERGY_BIN_EDGES
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    for data, colour, label in ((train_energy, _TRAIN_COLOUR, "train"),
                                (gen_energy, _GEN_COLOUR, "generated")):
        pct, n_in = energy_histogram(data, train_mean, edges)
        n_all = int(np.isfinite(np.asarray(data, dtype=float)).sum())
        ax.stairs(pct, edges, color=colour, fill=True, alpha=0.45,
                  label=f"{label} ({n_in}/{n_all} in range)")
        ax.stairs(pct, edges, color=colour, lw=1.2)
    ax.set_xlabel(r"$E_f - \langle E_f \rangle_{train}$ (meV/atom)")
    ax.set_ylabel("structures (%)")
    ax.set_title("Cluster-expansion formation energy")
    ax.legend(fontsize=8)
    _save_png(fig, path)


def comparison_panels(ev: AlloyEvaluation, reference: dict) -> list[dict]:
    """What `dismai report` overlays across runs: the 1NN and 2NN SRO distributions and the
    cluster-expansion energies relative to the training mean."""
    train_sro = np.asarray(reference.get("train_sro", np.empty((0, 12))), dtype=np.float64)
    train_sro = train_sro.reshape(-1, len(ev.sro_columns))
    gen_sro = ev.sro[ev.accepted]
    panels = []
    for shell in (1, 2):
        cols = [i for i, c in enumerate(ev.sro_columns) if c.startswith(f"{shell}NN_")]
        panels.append(violin_panel(
            f"sro_{shell}NN", f"{shell}NN short-range order", r"Warren-Cowley $\alpha$",
            [ev.sro_columns[i].split("_", 1)[1] for i in cols], train_sro[:, cols],
            gen_sro[:, cols]))
    train_e = np.asarray(reference.get("train_formation_energy", []), dtype=np.float64)
    mean = float(reference.get("train_formation_energy_mean",
                               train_e.mean() if len(train_e) else np.nan))
    if np.isfinite(mean):
        panels.append(histogram_panel(
            "energy", "Cluster-expansion formation energy",
            "E_f - mean(E_f, train) (meV/atom)", ENERGY_BIN_EDGES,
            (train_e - mean) * 1000.0 if len(train_e) else None,
            (ev.formation_energy[ev.accepted] - mean) * 1000.0))
    return panels


def write_outputs(evaluation: AlloyEvaluation, reference: dict, out_dir) -> dict[str, Path]:
    """Write per_structure.csv, sro_1NN.png, sro_2NN.png, energy_histogram.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "per_structure.csv",
        "sro_1nn": out / "sro_1NN.png",
        "sro_2nn": out / "sro_2NN.png",
        "energy": out / "energy_histogram.png",
    }
    write_text(paths["csv"], per_structure_csv(evaluation))
    ok = evaluation.accepted
    train_sro = np.asarray(reference.get("train_sro", np.empty((0, 12))), dtype=np.float64)
    train_sro = train_sro.reshape(-1, len(evaluation.sro_columns))
    for shell, key in ((1, "sro_1nn"), (2, "sro_2nn")):
        plot_sro(train_sro, evaluation.sro[ok], evaluation.sro_columns, shell, paths[key])
    train_e = np.asarray(reference.get("train_formation_energy", []), dtype=np.float64)
    train_mean = float(reference.get("train_formation_energy_mean",
                                     train_e.mean() if len(train_e) else np.nan))
    plot_energy_histogram(train_e, evaluation.formation_energy[ok], train_mean, paths["energy"])
    paths["plot_data"] = write_plot_data(out, comparison_panels(evaluation, reference))
    return paths
