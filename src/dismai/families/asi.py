"""The amorphous-silicon family: sw-vink melt-quench blocks, relaxed before scoring.

Recipe: dismai.datasets.asi_recipe (docs/datasets.md).  Metrics: dismai.metrics.asi
(docs/asi-benchmark.md): CrystalNN motif fingerprints, g(r), bond angles, % failed, mean
relaxation steps.  Generated structures are moved apart and relaxed with sw-vink (LAMMPS
CG), exactly as the training set was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dismai.families.base import BuildResult, DatasetSpec
from dismai.families.relaxed import RelaxedFamily

__all__ = ["FAMILY", "ASiFamily", "asi_statistics"]


def asi_statistics(structures) -> dict:
    """Density, 4-fold fraction (2.85 Å), bond angles, RDF peaks, energy per atom."""
    from ase.neighborlist import neighbor_list

    from dismai.metrics.asi.rdf import rdf

    four, angles = [], []
    for at in structures.to_atoms():
        i, j, d = neighbor_list("ijD", at, 2.85)
        cn = np.bincount(i, minlength=len(at))
        four.append(np.mean(cn == 4))
        for c in range(len(at)):
            v = d[i == c]
            if len(v) < 2:
                continue
            u = v / np.linalg.norm(v, axis=1)[:, None]
            cos = np.clip(u @ u.T, -1, 1)[np.triu_indices(len(u), 1)]
            angles.append(np.degrees(np.arccos(cos)))
    angles = np.concatenate(angles)
    sample = structures.frac[: min(len(structures), 300)]
    g = np.mean([rdf(structures.lattice, f) for f in sample], axis=0)
    r = (np.arange(len(g)) + 0.5) * (10.0 / len(g))  # bin centres, 0-10 Å
    first = int(np.argmax(g * (r < 3.0)))
    second = int(np.argmax(g * ((r > 3.2) & (r < 4.4))))
    mass = 28.0855 * structures.n_atoms / 6.02214076e23
    e = structures.properties.get("energy_per_atom")
    return {
        "n": int(len(structures)),
        "density_g_cm3": round(mass / (structures.volume * 1e-24), 4),
        "fourfold_fraction_2.85A": round(float(np.mean(four)), 4),
        "bond_angle_mean_deg": round(float(angles.mean()), 3),
        "bond_angle_rms_width_deg": round(float(angles.std()), 3),
        "rdf_first_peak_A": round(float(r[first]), 3),
        "rdf_second_peak_A": round(float(r[second]), 3),
        "energy_mean_eV_per_atom": None if e is None else round(float(np.mean(e)), 5),
        "energy_std_eV_per_atom": None if e is None else round(float(np.std(e)), 5),
    }


class ASiFamily(RelaxedFamily):
    name = "a-si"
    metrics_package = "dismai.metrics.asi"
    metric_names = ("d_motif", "cos_motif", "d_rdf", "d_angle", "pct_failed",
                    "mean_relax_steps")
    report_metrics = ("d_motif", "d_rdf", "d_angle", "pct_failed")  # paper Table 2
    metric_titles = {
        "d_motif": "d_motif (fingerprint, Euclidean)",
        "cos_motif": "cos_motif (fingerprint, cosine)",
        "d_rdf": "d_rdf (g(r), Euclidean)",
        "d_angle": "d_angle (bond angles, Euclidean)",
        "pct_failed": "% failed structures",
        "mean_relax_steps": "mean relaxation steps",
    }
    recipe_version = 2  # 2: parents quenched at 1e13 K/s (version 1: 1e14)
    storage = ("fractional coordinates, float32, shape (M, N, 3); NAME.energy.npy: "
               "sw-vink energy per atom after relaxation, float64")

    def datasets(self) -> list[DatasetSpec]:
        from dismai.datasets.asi_recipe import default_recipe

        full = DatasetSpec(
            name="a-si", family=self.name,
            description="amorphous Si: sw-vink melt-quench parents cut into 256-atom blocks, "
                        "relaxed",
            n_atoms=256, composition={"Si": 256}, recipe=default_recipe())
        # the small variant for CPU learning checks: the same parents, 64-atom blocks
        # (edge scaled by (64/256)^(1/3)), counts fixed and relaxed exactly as a-si
        small = DatasetSpec(
            name="a-si-64", family=self.name,
            description="small a-si: 64-atom blocks cut from the same parents, relaxed",
            n_atoms=64, composition={"Si": 64}, recipe={**default_recipe(), "block_atoms": 64},
            parent="a-si")
        return [full, small]

    def structures(self, data, arrays, manifest):
        from dismai.datasets.asi_recipe import structures_from_arrays

        return structures_from_arrays(data, manifest["build"]["block_edge_A"],
                                      arrays.get("energy"))

    def build(self, spec, recipe, *, work_dir, n_workers, progress) -> BuildResult:
        import dismai.datasets.asi_recipe as asi_recipe
        from dismai.metrics.asi.reference import build_reference

        parents = Path(work_dir).parent / asi_recipe.parent_key(recipe)
        result = asi_recipe.build(recipe, work_dir, n_workers=n_workers, progress=progress,
                                  parent_dir=parents)
        n = result.n_train
        structures = asi_recipe.structures_from_arrays(result.frac, result.block_edge,
                                                       result.energy)
        idx = np.arange(len(result.frac))
        train, val = structures[idx[:n]], structures[idx[n:]]
        info = {**result.info, "relax_steps_mean": round(float(result.relax_steps.mean()), 2),
                "energy_model": "sw-vink (Vink et al. 2001 modified Stillinger-Weber, LAMMPS)"}
        return BuildResult(
            data=result.frac, n_train=n, structures=structures,
            reference=build_reference(train, val, n_workers=n_workers or 1),
            statistics={"train": asi_statistics(train), "val": asi_statistics(val)},
            arrays={"energy": result.energy}, info=info)

    accepts_added = True
    default_energy_model = "sw-vink"

    def fit(self, structures):
        """An added a-Si dataset: silicon only (any cell, any number of atoms)."""
        from dismai.errors import DatasetError

        if set(structures.species) != {"Si"}:
            raise DatasetError(f"the a-si family needs Si-only structures, got "
                               f"{structures.formula}; use --family disordered")
        return structures

    def added_reference(self, train, val, *, options, n_workers) -> dict:
        from dismai.metrics.asi.reference import build_reference

        return build_reference(train, val, n_workers=n_workers or 1)

    def relax_settings(self, dataset) -> dict:
        recipe = dataset.manifest["recipe"]
        return {"model": "sw-vink", "fmax": recipe["relax_fmax"],
                "max_steps": recipe["relax_steps"], "optimizer": "lammps-cg"}


FAMILY = ASiFamily()
