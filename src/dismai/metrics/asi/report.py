"""a-Si evaluation outputs: plots and per-structure CSV/NPZ.

Plots use matplotlib's Agg canvas directly (no pyplot state) and every file is written
atomically through :func:`dismai.fileio.atomic_path`, so an interrupted run never leaves a
truncated output.  Figures follow the reference's plot scripts (§6.3, §6.6-6.8):
mean g(r) and mean bond-angle distribution of generated vs training structures with the
per-bin pivotal bootstrap band (§0.3), most-likely-motif percentages with pivotal error
bars, and the energy histogram relative to the training mean (-50...100 meV/atom, 5 meV
bins, right-closed, lowest edge included, percentages of in-range values).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dismai.fileio import write_bytes, write_text
from dismai.metrics.asi.angles import ANGLE_CENTRES
from dismai.metrics.asi.evaluate import ASiEvaluation
from dismai.metrics.asi.motifs import motif_labels
from dismai.metrics.asi.rdf import RDF_R
from dismai.metrics.report_common import GEN_COLOUR as _GEN
from dismai.metrics.report_common import TRAIN_COLOUR as _TRAIN
from dismai.metrics.report_common import (
    bars_panel,
    binned_percentages,
    curve_panel,
    histogram_panel,
    motif_bars,
    plot_histograms,
    write_plot_data,
)
from dismai.metrics.report_common import csv_field as _csv_field
from dismai.metrics.report_common import csv_number as _num
from dismai.metrics.report_common import figure as _figure
from dismai.metrics.report_common import save_png as _save_png

__all__ = [
    "ENERGY_BIN_EDGES",
    "energy_histogram",
    "per_structure_csv",
    "plot_rdf",
    "plot_angles",
    "plot_motifs",
    "plot_energy_histogram",
    "train_delta_mev",
    "comparison_panels",
    "write_outputs",
]

#: §6.3: np.arange(-50, 100 + 5, 5) meV/atom, 31 edges, 30 bins
ENERGY_BIN_EDGES = np.arange(-50.0, 100.0 + 5.0, 5.0)


def energy_histogram(delta_mev: np.ndarray, edges: np.ndarray = ENERGY_BIN_EDGES
                     ) -> tuple[np.ndarray, int]:
    """(% per bin, in-range count) of ΔE values in meV/atom, pandas.cut semantics (§6.3)."""
    return binned_percentages(delta_mev, edges)


def per_structure_csv(ev: ASiEvaluation, reference: dict | None = None) -> str:
    """CSV: index, energy, ΔE, #angles, mean/std angle, first g(r) peak, most-likely-motif
    fractions (train-selected motifs), then the 61 mean fingerprint features."""
    f = ev.features
    fp_labels = list(f.labels)
    mot = list(ev.motifs.get("labels", []))
    codes = [motif_labels().index(m) for m in mot]
    header = (["structure_index", "energy_eV_per_atom", "delta_E_meV_per_atom", "n_angles",
               "mean_angle_deg", "std_angle_deg", "rdf_first_peak_A", "n_fallback_sites"]
              + [f"motif_frac {m}" for m in mot] + [f"fp {lab}" for lab in fp_labels])
    frac = f.motif_fraction
    out = io.StringIO()
    out.write(",".join(_csv_field(h) for h in header) + "\n")
    r_mask = RDF_R < 3.0  # first-shell peak of a-Si lies near 2.35 Å
    for i in range(len(f)):
        p = f.angle_dist[i]
        mean_a = float(p @ ANGLE_CENTRES) if p.sum() > 0 else float("nan")
        std_a = float(np.sqrt(max(p @ (ANGLE_CENTRES - mean_a) ** 2, 0.0))) if p.sum() > 0 \
            else float("nan")
        g = f.rdf[i]
        peak = float(RDF_R[r_mask][np.argmax(g[r_mask])]) if g[r_mask].max() > 0 \
            else float("nan")
        row = [str(i),
               _num(None if ev.energy_per_atom is None else ev.energy_per_atom[i]),
               _num(None if ev.delta_energy_mev is None else ev.delta_energy_mev[i]),
               str(int(f.n_angles[i])), _num(mean_a), _num(std_a), _num(peak),
               str(int(f.n_fallback[i]))]
        row += [_num(frac[i, c]) for c in codes]
        row += [_num(x) for x in f.fingerprint[i]]
        out.write(",".join(row) + "\n")
    return out.getvalue()


def _band_plot(x, train, band, xlabel, ylabel, title, path, scale=1.0, xlim=None) -> None:
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    ax.plot(x, np.asarray(train) * scale, color=_TRAIN, lw=1.5, label="train")
    ax.plot(x, band.mean * scale, color=_GEN, lw=1.2, label="generated")
    ax.fill_between(x, band.low * scale, band.high * scale, color=_GEN, alpha=0.3, lw=0,
                    label="generated 95% pivotal band")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.legend(loc="best", fontsize=8)
    _save_png(fig, path)


def plot_rdf(ev: ASiEvaluation, reference: dict, path) -> None:
    """Mean g(r), train vs generated with the per-bin band (plot_avg_rdf_Si_Si.py)."""
    _band_plot(RDF_R, reference["train_mean_rdf"], ev.rdf_band, "r (Å)", "g(r)",
               f"Si-Si RDF (n_gen = {ev.n_final})", path)


def plot_angles(ev: ASiEvaluation, reference: dict, path) -> None:
    """Mean bond-angle distribution in %, train vs generated with the per-bin band."""
    _band_plot(ANGLE_CENTRES, reference["train_mean_angle"], ev.angle_band,
               "bond angle (deg)", "% of angles per 0.5° bin",
               f"Si bond angles (n_gen = {ev.n_final})", path, scale=100.0, xlim=(40, 180))


def plot_motifs(ev: ASiEvaluation, path) -> None:
    """Most-likely motif percentages, train vs generated with pivotal error bars (§6.8)."""
    m = ev.motifs
    labels = m.get("labels", [])
    fig = _figure(max(5.0, 0.9 * len(labels) + 2.0), 4.2)
    ax = fig.add_subplot()
    motif_bars(ax, labels, m)
    ax.set_ylabel("% of Si atoms (most likely motif)")
    ax.set_title("Most likely coordination motifs")
    ax.legend(loc="best", fontsize=8)
    _save_png(fig, path)


def train_delta_mev(reference: dict) -> np.ndarray | None:
    """The training energies relative to their mean, meV/atom (None without energies)."""
    from dismai.metrics.accounting import delta_energy_mev

    train_e = reference.get("train_energy_per_atom")
    return None if train_e is None else delta_energy_mev(
        np.asarray(train_e, dtype=np.float64), reference)


def plot_energy_histogram(train_delta_mev, gen_delta_mev, path) -> None:
    """ΔE = E - mean(E_train) in meV/atom, % per 5 meV bin on -50...100 (§6.3)."""
    plot_histograms(path, ENERGY_BIN_EDGES, train_delta_mev, gen_delta_mev,
                    "E - mean(E_train) (meV/atom)", "Energy relative to the training mean")


def comparison_panels(ev: ASiEvaluation, reference: dict) -> list[dict]:
    """What `dismai report` overlays across runs: g(r), bond angles, motifs, energies."""
    m = ev.motifs
    panels = [
        curve_panel("rdf", "Si-Si RDF", "r (Å)", "g(r)", RDF_R, reference["train_mean_rdf"],
                    ev.rdf_band.mean),
        curve_panel("angles", "Si bond angles", "bond angle (deg)", "% of angles per 0.5° bin",
                    ANGLE_CENTRES, 100 * np.asarray(reference["train_mean_angle"]),
                    100 * ev.angle_band.mean, xlim=(40, 180)),
        bars_panel("motifs", "Most likely coordination motifs", "% of Si atoms",
                   m.get("labels", []), m.get("train_pct", []), m.get("gen_pct", [])),
    ]
    if ev.delta_energy_mev is not None:
        panels.append(histogram_panel("energy", "Energy relative to the training mean",
                                      "E - mean(E_train) (meV/atom)", ENERGY_BIN_EDGES,
                                      train_delta_mev(reference), ev.delta_energy_mev))
    return panels


def write_outputs(ev: ASiEvaluation, reference: dict, out_dir) -> dict[str, Path]:
    """Write plots and the per-structure CSV/NPZ into out_dir; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "rdf": out / "rdf_si_si.png",
        "angles": out / "bond_angle_distribution.png",
        "motifs": out / "most_likely_motifs.png",
        "csv": out / "per_structure.csv",
        "npz": out / "per_structure_distributions.npz",
    }
    plot_rdf(ev, reference, paths["rdf"])
    plot_angles(ev, reference, paths["angles"])
    plot_motifs(ev, paths["motifs"])
    if ev.delta_energy_mev is not None:
        paths["energy"] = out / "energy_histogram.png"
        plot_energy_histogram(train_delta_mev(reference), ev.delta_energy_mev, paths["energy"])
    write_text(paths["csv"], per_structure_csv(ev, reference))
    paths["plot_data"] = write_plot_data(out, comparison_panels(ev, reference))
    buf = io.BytesIO()
    np.savez_compressed(buf, rdf=ev.features.rdf, rdf_r=RDF_R,
                        angle_distribution=ev.features.angle_dist, angle_centres=ANGLE_CENTRES,
                        fingerprint=ev.features.fingerprint,
                        motif_counts=ev.features.motif_counts,
                        motif_labels=np.array(motif_labels()))
    write_bytes(paths["npz"], buf.getvalue())
    return paths
