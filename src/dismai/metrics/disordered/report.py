"""Outputs of the generic `disordered` family: per-structure CSV, partial g(r) and
bond-angle plots (train vs generated, with the per-bin pivotal band), the energy histogram,
and an NPZ of every per-structure distribution.  Written atomically, as the a-Si outputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dismai.fileio import write_bytes, write_text
from dismai.metrics.asi.angles import ANGLE_CENTRES
from dismai.metrics.asi.rdf import RDF_R
from dismai.metrics.asi.report import ENERGY_BIN_EDGES, plot_energy_histogram, train_delta_mev
from dismai.metrics.disordered.evaluate import DisorderedEvaluation
from dismai.metrics.report_common import (
    GEN_COLOUR,
    TRAIN_COLOUR,
    csv_field,
    csv_number,
    curve_panel,
    figure,
    histogram_panel,
    save_png,
    write_plot_data,
)

__all__ = ["per_structure_csv", "plot_panels", "comparison_panels", "write_outputs"]


def per_structure_csv(ev: DisorderedEvaluation) -> str:
    """index, energy, ΔE, fallback sites, angles per centre species, then the combined
    mean fingerprint."""
    f = ev.features
    centres = list(f.fingerprint)
    comb = f.combined_fingerprint()
    header = (["structure_index", "energy_eV_per_atom", "delta_E_meV_per_atom",
               "n_fallback_sites"] + [f"n_angles {s}" for s in centres]
              + [f"fp {k}" for k in range(comb.shape[1])])
    out = io.StringIO()
    out.write(",".join(csv_field(h) for h in header) + "\n")
    for i in range(len(f)):
        row = [str(i),
               csv_number(None if ev.energy_per_atom is None else ev.energy_per_atom[i]),
               csv_number(None if ev.delta_energy_mev is None else ev.delta_energy_mev[i]),
               str(int(f.n_fallback[i]))]
        row += [str(int(n)) for n in f.n_angles[i]]
        row += [csv_number(x) for x in comb[i]]
        out.write(",".join(row) + "\n")
    return out.getvalue()


def plot_panels(x, train: np.ndarray, band, names: list[str], xlabel: str, ylabel: str,
                path, scale: float = 1.0, xlim=None) -> None:
    """One panel per row of train (n_rows, n_bins), train vs generated with its band."""
    n = len(names)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = figure(4.2 * cols, 3.2 * rows)
    width = len(x)
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        sl = slice(k * width, (k + 1) * width)
        ax.plot(x, train[k] * scale, color=TRAIN_COLOUR, lw=1.4, label="train")
        ax.plot(x, band.mean[sl] * scale, color=GEN_COLOUR, lw=1.1, label="generated")
        ax.fill_between(x, band.low[sl] * scale, band.high[sl] * scale, color=GEN_COLOUR,
                        alpha=0.3, lw=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if xlim is not None:
            ax.set_xlim(*xlim)
        if k == 0:
            ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def comparison_panels(ev: DisorderedEvaluation, reference: dict) -> list[dict]:
    """What `dismai report` overlays across runs: every partial g(r) and angle
    distribution, and the energies relative to the training mean."""
    f = ev.features
    panels = []
    train_rdf = np.asarray(reference["train_mean_rdf"], dtype=np.float64)
    train_ang = np.asarray(reference["train_mean_angle"], dtype=np.float64)
    w, wa = len(RDF_R), len(ANGLE_CENTRES)
    for k, (a, b) in enumerate(f.pairs):
        panels.append(curve_panel(f"rdf_{a}-{b}", f"g {a}-{b}(r)", "r (Å)", "g(r)", RDF_R,
                                  train_rdf[k], ev.rdf_band.mean[k * w:(k + 1) * w]))
    for k, (a, c, b) in enumerate(f.triplets):
        panels.append(curve_panel(f"angles_{a}-{c}-{b}", f"{a}-{c}-{b} angles", "angle (deg)",
                                  "% of angles at centre", ANGLE_CENTRES, 100 * train_ang[k],
                                  100 * ev.angle_band.mean[k * wa:(k + 1) * wa],
                                  xlim=(30, 180)))
    if ev.delta_energy_mev is not None:
        panels.append(histogram_panel("energy", "Energy relative to the training mean",
                                      "E - mean(E_train) (meV/atom)", ENERGY_BIN_EDGES,
                                      train_delta_mev(reference), ev.delta_energy_mev))
    return panels


def write_outputs(ev: DisorderedEvaluation, reference: dict, out_dir) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"rdf": out / "partial_rdf.png", "angles": out / "bond_angles.png",
             "csv": out / "per_structure.csv", "npz": out / "per_structure_distributions.npz"}
    f = ev.features
    plot_panels(RDF_R, np.asarray(reference["train_mean_rdf"]), ev.rdf_band,
                [f"g {a}-{b}(r)" for a, b in f.pairs], "r (Å)", "g(r)", paths["rdf"])
    plot_panels(ANGLE_CENTRES, np.asarray(reference["train_mean_angle"]), ev.angle_band,
                [f"{a}-{c}-{b}" for a, c, b in f.triplets], "angle (deg)",
                "% of angles at centre", paths["angles"], scale=100.0, xlim=(30, 180))
    if ev.delta_energy_mev is not None:
        paths["energy"] = out / "energy_histogram.png"
        plot_energy_histogram(train_delta_mev(reference), ev.delta_energy_mev, paths["energy"])
    write_text(paths["csv"], per_structure_csv(ev))
    paths["plot_data"] = write_plot_data(out, comparison_panels(ev, reference))
    buf = io.BytesIO()
    np.savez_compressed(buf, rdf=f.rdf, rdf_r=RDF_R, rdf_pairs=np.array(f.pairs),
                        angle_distribution=f.angle_dist, angle_centres=ANGLE_CENTRES,
                        angle_triplets=np.array(f.triplets),
                        **{f"fingerprint_{s}": v for s, v in f.fingerprint.items()})
    write_bytes(paths["npz"], buf.getvalue())
    return paths
