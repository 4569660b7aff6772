"""The Li3ScCl6(100)-LiCoO2(110) battery-interface family (264 atoms), relaxed with CHGNet.

Recipe: dismai.datasets.interface_recipe (docs/interface.md): slabs, a random interface
region, relaxation with a universal potential, low-energy selection (γ ≤ 0).  Metrics:
dismai.metrics.interface: cation motif fingerprints (d_Li, d_Co, d_Sc, d_all and cosines),
% failed, mean relaxation steps; interface energies are a plot.  The full build needs a
GPU or about 240 CPU-hours (docs/interface.md); until it has run, the dataset is listed as
not built, and `interface-preview` (CHGNet-relaxed structures, docs/interface.md) ships.
"""

from __future__ import annotations

import numpy as np

from dismai.families.base import BuildResult, DatasetSpec
from dismai.families.relaxed import RelaxedFamily

__all__ = ["FAMILY", "InterfaceFamily", "interface_statistics"]

_TITLES = {f"{k}_{s}": f"{k}_{s} ({name} fingerprint, {kind})"
           for s, name in (("Li", "Li"), ("Co", "Co"), ("Sc", "Sc"), ("all", "all cations"))
           for k, kind in (("d", "Euclidean"), ("cos", "cosine"))}


def interface_statistics(structures, e_ref: float) -> dict:
    """Energy per atom, interface energy γ (J/m^2) and interface-region thickness."""
    from dismai.interface_cell import interface_energy

    e = np.asarray(structures.properties["energy_per_atom"], dtype=np.float64)
    gamma = interface_energy(e, e_ref, structures.lattice, structures.n_atoms)
    out = {"n": int(len(structures)),
           "energy_mean_eV_per_atom": round(float(e.mean()), 5),
           "energy_std_eV_per_atom": round(float(e.std()), 5),
           "gamma_mean_J_m2": round(float(gamma.mean()), 4),
           "gamma_std_J_m2": round(float(gamma.std()), 4)}
    if "interface_thickness" in structures.properties:
        t = np.asarray(structures.properties["interface_thickness"], dtype=np.float64)
        out["interface_thickness_mean_A"] = round(float(t.mean()), 3)
    return out


class InterfaceFamily(RelaxedFamily):
    name = "interface"
    metrics_package = "dismai.metrics.interface"
    metric_names = ("d_Li", "cos_Li", "d_Co", "cos_Co", "d_Sc", "cos_Sc", "d_all", "cos_all",
                    "pct_failed", "mean_relax_steps")
    report_metrics = ("d_Li", "d_Co", "d_Sc", "d_all", "pct_failed")  # paper Table 1
    metric_titles = {**_TITLES, "pct_failed": "% failed structures",
                     "mean_relax_steps": "mean relaxation steps"}
    # the learning gate: every cation's fingerprint distance as generated, and the
    # relaxation steps (a-Si's d_motif, d_rdf and d_angle do not exist here)
    gate_metrics = (("d_Li", "as_generated"), ("d_Co", "as_generated"),
                    ("d_Sc", "as_generated"), ("mean_relax_steps", "relaxed"))
    storage = ("fractional coordinates, float32, shape (M, 264, 3), species blocks Li Sc Co "
               "Cl O; NAME.energy.npy: energy per atom after relaxation, float64")

    def datasets(self) -> list[DatasetSpec]:
        from dismai.datasets.interface_recipe import default_recipe
        from dismai.interface_cell import COMPOSITION, N_ATOMS

        recipe = {**default_recipe(), "energy_model": "chgnet"}
        return [DatasetSpec(
            name="interface", family=self.name,
            description="Li3ScCl6(100)-LiCoO2(110) interface: random interface region "
                        "between slabs, relaxed (CHGNet), low-energy structures",
            n_atoms=N_ATOMS, composition=dict(COMPOSITION), recipe=recipe),
            DatasetSpec(
                name="interface-preview", family=self.name,
                description="CHGNet-relaxed preview: the low-energy structures among the "
                            "candidates CHGNet relaxed for the interface-mlip recipe "
                            "(seeds 101 and 202), until the full build has run",
                n_atoms=N_ATOMS, composition=dict(COMPOSITION), parent="interface",
                recipe={"source": "interface-mlip teacher relaxations",
                        "energy_model": "chgnet", "optimizer": "fire",
                        "relax_fmax": 0.05, "relax_steps": 1000,
                        "cell_c": recipe["cell_c"], "window_j_m2": recipe["window_j_m2"],
                        "train_fraction": recipe["train_fraction"], "seed": 0,
                        "preview": True})]

    def structures(self, data, arrays, manifest):
        from dismai.interface_cell import COMPOSITION, SPECIES_ORDER, cell_lattice
        from dismai.structures import StructureSet

        species = tuple(s for s in SPECIES_ORDER for _ in range(COMPOSITION[s]))
        props = {}
        if "energy" in arrays:
            props["energy_per_atom"] = np.asarray(arrays["energy"], dtype=np.float64)
        return StructureSet(cell_lattice(manifest["recipe"]["cell_c"]), species,
                            np.asarray(data, dtype=np.float64), props)

    def build(self, spec, recipe, *, work_dir, n_workers, progress) -> BuildResult:
        import dismai.datasets.interface_recipe as interface_recipe
        from dismai.energy import get_energy_model
        from dismai.metrics.interface.reference import build_reference

        recipe = dict(recipe)
        if "source" in recipe:
            return self._build_preview(recipe, work_dir, n_workers)
        model = get_energy_model(recipe.pop("energy_model"))  # a missing backend fails now
        result = interface_recipe.build(recipe, work_dir, energy_model=model,
                                        n_workers=n_workers, progress=progress)
        s, n = result.structures, result.n_train
        idx = np.arange(len(s))
        train, val = s[idx[:n]], s[idx[n:]]
        return BuildResult(
            data=s.frac.astype(np.float32), n_train=n, structures=s,
            reference=build_reference(train, val, e_ref=result.e_ref,
                                      n_workers=n_workers or 1),
            statistics={"train": interface_statistics(train, result.e_ref),
                        "val": interface_statistics(val, result.e_ref)},
            arrays={"energy": np.asarray(s.properties["energy_per_atom"], dtype=np.float64)},
            info={**result.info, "e_ref_eV_per_atom": result.e_ref})

    def _build_preview(self, recipe, work_dir, n_workers) -> BuildResult:
        """The CHGNet FIRE minima of the distilled potential's teacher jobs (held-in and
        held-out candidates, `dismai.energy.distill`), with the recipe's low-energy window:
        real CHGNet relaxations, reproducible, and cheap to extend."""
        from dismai.energy.distill import get_recipe, teacher_frames, template
        from dismai.energy.teacher_data import job_minimum
        from dismai.interface_cell import interface_energy, low_energy_reference
        from dismai.metrics.interface.reference import build_reference
        from dismai.structures import StructureSet

        pot = get_recipe("interface-mlip")
        train_jobs, valid_jobs = teacher_frames(pot, work_dir)
        lattice, species = template()
        inv = np.linalg.inv(lattice)
        frac, energy, steps, cand, seed = [], [], [], [], []
        for which, jobs in (("train", train_jobs), ("valid", valid_jobs)):
            for k, path in enumerate(jobs):
                converged, minimum, e, n_steps = job_minimum(path)
                if not converged:
                    continue
                frac.append(minimum @ inv)
                energy.append(e)
                steps.append(n_steps)
                cand.append(k)
                seed.append(int(pot[f"{which}_seed"]))
        energy = np.asarray(energy)
        e_ref = low_energy_reference(energy, recipe["window_j_m2"], lattice=lattice)
        gamma = interface_energy(energy, e_ref, lattice)
        keep = np.flatnonzero(gamma <= 0.0)
        f = np.stack(frac)[keep]
        f[..., :2] %= 1.0
        s = StructureSet(lattice, species, f, {
            "energy_per_atom": energy[keep], "interface_energy": gamma[keep],
            "relax_steps": np.asarray(steps)[keep],
            "candidate_index": np.asarray(cand)[keep],
            "candidate_seed": np.asarray(seed)[keep]})
        n = int(round(float(recipe["train_fraction"]) * len(s)))
        idx = np.arange(len(s))
        train, val = s[idx[:n]], s[idx[n:]]
        return BuildResult(
            data=s.frac.astype(np.float32), n_train=n, structures=s,
            reference=build_reference(train, val, e_ref=e_ref, n_workers=n_workers or 1),
            statistics={"train": interface_statistics(train, e_ref),
                        "val": interface_statistics(val, e_ref),
                        "all_relaxed_candidates": {
                            "n": int(len(energy)),
                            "gamma_spread_J_m2": round(float(gamma.max() - gamma.min()), 4),
                            "low_energy_share": round(float(len(keep) / len(energy)), 4)}},
            arrays={"energy": np.asarray(s.properties["energy_per_atom"], dtype=np.float64)},
            info={"e_ref_eV_per_atom": e_ref, "n_candidates": int(len(energy)),
                  "n_low_energy": int(len(keep)), "energy_model": "chgnet 0.3.0",
                  # which teacher jobs: the first n of build_candidates(n, seed) per set
                  "teacher_candidates": {w: {"seed": int(pot[f"{w}_seed"]),
                                             "n": int(pot[f"n_{w}"])}
                                         for w in ("train", "valid")}})

    accepts_added = True
    default_energy_model = "chgnet"

    def fit(self, structures):
        """An added interface dataset (e.g. the published files): the 264-atom
        Li72 Sc12 Co36 Cl72 O72 composition on the in-plane cell a = 12.470 Å,
        b = 17.200 Å, γ = 75.667° with c perpendicular (any c, any orientation); returned
        on the canonical cell (a along x, c along z)."""
        from dismai.errors import DatasetError
        from dismai.interface_cell import (
            CELL_A,
            CELL_B,
            CELL_GAMMA_DEG,
            COMPOSITION,
            cell_lattice,
        )
        from dismai.structures import StructureSet, cell_parameters

        if structures.composition != COMPOSITION:  # dict equality: block order is free
            raise DatasetError(f"the interface family needs {COMPOSITION}, got "
                               f"{structures.composition}; use --family disordered")
        (a, b, c), (alpha, beta, gamma) = cell_parameters(structures.lattice)
        if not (np.allclose([a, b], [CELL_A, CELL_B], atol=1e-3)
                and np.allclose([alpha, beta, gamma], [90.0, 90.0, CELL_GAMMA_DEG], atol=1e-2)):
            raise DatasetError(
                f"the interface family needs the in-plane cell a {CELL_A}, b {CELL_B} Å, "
                f"gamma {CELL_GAMMA_DEG}° with c perpendicular; got a {a:.4f}, b {b:.4f} Å, "
                f"angles {alpha:.3f}, {beta:.3f}, {gamma:.3f}°; use --family disordered")
        return StructureSet(cell_lattice(c), structures.species, structures.frac,
                            structures.properties)

    def added_reference(self, train, val, *, options, n_workers) -> dict:
        from dismai.metrics.interface.reference import build_reference

        return build_reference(train, val, n_workers=n_workers or 1)

    def relax_settings(self, dataset) -> dict:
        recipe = dataset.manifest["recipe"]
        return {"model": recipe["energy_model"], "fmax": recipe["relax_fmax"],
                "max_steps": recipe["relax_steps"], "optimizer": recipe["optimizer"]}


FAMILY = InterfaceFamily()
