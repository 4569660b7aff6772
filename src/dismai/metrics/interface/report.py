"""Interface evaluation outputs: per-structure CSV, plots, motif breakdown (§7.2, §7.5).

Plots use matplotlib's Agg canvas and every file is written atomically (dismai.fileio),
like the a-Si report: interface-energy histograms of generated vs training structures
(-0.5...0.5 J/m^2, 0.05 bins, percentages of in-range values, §7.2) and the most-likely
coordination motifs of Sc and Li split by their number of O neighbours (paper Fig. 9).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dismai.fileio import write_json, write_text
from dismai.metrics.interface.evaluate import (
    GAMMA_BIN_EDGES,
    InterfaceEvaluation,
)
from dismai.metrics.interface.motifs import CATIONS
from dismai.metrics.report_common import (
    bars_panel,
    histogram_panel,
    motif_bars,
    plot_histograms,
    write_plot_data,
)
from dismai.metrics.report_common import csv_field as _csv_field
from dismai.metrics.report_common import csv_number as _num
from dismai.metrics.report_common import figure as _figure
from dismai.metrics.report_common import save_png as _save_png

__all__ = ["per_structure_csv", "plot_gamma_histogram", "plot_motif_breakdown",
           "comparison_panels", "write_outputs"]

def per_structure_csv(ev: InterfaceEvaluation, reference: dict) -> str:
    """CSV: index, energy, γ, per-species Euclidean distance of the structure's mean
    fingerprint to the train mean, mean CN and mean O count per species, fallback sites."""
    f = ev.features
    header = ["structure_index", "energy_eV_per_atom", "interface_energy_J_m2"]
    header += [f"d_{s}_to_train" for s in CATIONS]
    header += [f"mean_CN_{s}" for s in CATIONS] + [f"mean_nO_{s}" for s in CATIONS]
    header += ["n_fallback_sites"]
    train = {s: np.asarray(reference["train_mean_fingerprint"][s]) for s in CATIONS}
    out = io.StringIO()
    out.write(",".join(_csv_field(h) for h in header) + "\n")
    e = None if ev.energy is None else ev.energy["energy_per_atom"]
    g = None if ev.energy is None else ev.energy["gamma"]
    for i in range(len(f)):
        row = [str(i), _num(None if e is None else e[i]), _num(None if g is None else g[i])]
        row += [_num(np.linalg.norm(f.mean_fp[s][i] - train[s])) for s in CATIONS]
        row += [_num(f.cn[s][i].mean()) for s in CATIONS]
        row += [_num(f.n_o[s][i].mean()) for s in CATIONS]
        row.append(str(int(f.n_fallback[i])))
        out.write(",".join(row) + "\n")
    return out.getvalue()


def plot_gamma_histogram(train_gamma, gen_gamma, path) -> None:
    """Interface-energy distributions, % per 0.05 J/m^2 bin on -0.5...0.5 (§7.2)."""
    plot_histograms(path, GAMMA_BIN_EDGES, train_gamma, gen_gamma,
                    "normalised interface energy γ (J/m²)", "Interface energy (eq. 6)")


def plot_motif_breakdown(ev: InterfaceEvaluation, species: str, path) -> None:
    """Most-likely motifs of one cation split by O neighbours, train vs generated with
    pivotal error bars (paper Fig. 9 for Sc)."""
    m = ev.motifs[species]
    rows = m["rows"]
    fig = _figure(7, max(3.0, 0.32 * len(rows) + 1.5))
    ax = fig.add_subplot()
    motif_bars(ax, rows, m, horizontal=True)
    ax.set_xlabel(f"% of {species} atoms")
    ax.set_title(f"Most likely {species} coordination motifs (number of O neighbours)")
    ax.legend(loc="best", fontsize=8)
    _save_png(fig, path)


def comparison_panels(ev: InterfaceEvaluation, reference: dict) -> list[dict]:
    """What `dismai report` overlays across runs: Sc and Li motifs, interface energies."""
    panels = []
    for s in ("Sc", "Li"):
        m = ev.motifs[s]
        panels.append(bars_panel(f"motifs_{s}", f"Most likely {s} motifs (number of O)",
                                 f"% of {s} atoms", m["rows"], m["train_pct"], m["gen_pct"]))
    if ev.energy is not None or reference.get("train_gamma") is not None:
        panels.append(histogram_panel(
            "gamma", "Interface energy (eq. 6)", "normalised interface energy γ (J/m²)",
            GAMMA_BIN_EDGES, reference.get("train_gamma"),
            None if ev.energy is None else ev.energy["gamma"]))
    return panels


def write_outputs(ev: InterfaceEvaluation, reference: dict, out_dir) -> dict[str, Path]:
    """Write plots, the per-structure CSV and motifs.json (the Fig. 9 motif breakdown,
    failure counts, % low-energy) into out_dir; metrics.json is the evaluation core's."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "per_structure.csv", "details": out / "motifs.json",
             "motifs_Sc": out / "most_likely_motifs_Sc.png",
             "motifs_Li": out / "most_likely_motifs_Li.png"}
    write_text(paths["csv"], per_structure_csv(ev, reference))
    write_json(paths["details"], {"motifs": ev.motifs, "extra": ev.extra,
                                  "pct_low_energy": None if ev.energy is None
                                  else ev.energy["pct_low_energy"]})
    plot_motif_breakdown(ev, "Sc", paths["motifs_Sc"])
    plot_motif_breakdown(ev, "Li", paths["motifs_Li"])
    if ev.energy is not None or reference.get("train_gamma") is not None:
        paths["energy"] = out / "interface_energy_histogram.png"
        plot_gamma_histogram(reference.get("train_gamma"),
                             None if ev.energy is None else ev.energy["gamma"], paths["energy"])
    paths["plot_data"] = write_plot_data(out, comparison_panels(ev, reference))
    return paths
