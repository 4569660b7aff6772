"""The Fe60Ni20Cr20 FCC alloy family: four cluster-expansion Monte Carlo datasets.

Recipe: dismai.datasets.alloy_recipe (docs/datasets.md).  Metrics: dismai.metrics.alloy
(docs/alloy-benchmark.md): lattice matching, 45 cluster probabilities, d_cluster, % with
vacancies, % failed.  Nothing is relaxed: structures are matched to the ideal lattice.
"""

from __future__ import annotations

import numpy as np

from dismai.evaluation import Evaluation
from dismai.families.base import BuildResult, DatasetFamily, DatasetSpec

__all__ = ["FAMILY", "AlloyFamily"]


def alloy_statistics(site_species: np.ndarray) -> dict:
    """Mean CE formation energy and mean 1NN/2NN Warren-Cowley SRO per pair."""
    from dismai.energy.cluster_expansion import count_vector, formation_energy
    from dismai.metrics.alloy.sro import SRO_COLUMNS, warren_cowley

    counts = count_vector(site_species)
    e = formation_energy(counts)
    sro = warren_cowley(counts)
    return {
        "n": int(len(site_species)),
        "ce_energy_mean_eV_per_atom": round(float(e.mean()), 6),
        "ce_energy_std_eV_per_atom": round(float(e.std()), 6),
        "sro_mean": dict(zip(SRO_COLUMNS, np.round(sro.mean(axis=0), 4).tolist(), strict=True)),
        "sro_std": dict(zip(SRO_COLUMNS, np.round(sro.std(axis=0), 4).tolist(), strict=True)),
    }


class AlloyFamily(DatasetFamily):
    name = "alloy"
    metric_names = ("d_cluster", "pct_vacancy", "pct_failed")
    report_metrics = ("d_cluster", "pct_vacancy", "pct_failed")  # paper Table 3
    metric_titles = {"d_cluster": "d_cluster", "pct_vacancy": "% with vacancies",
                     "pct_failed": "% failed"}
    baselines = ("random", "shuffled-lattice")
    #: lattice_match: auto, as-is, translated or rotated; self_exclusion: the pymatgen quirk
    #: of the reference; workers: threads for the rotated variant (None: all cores)
    options = {"lattice_match": "auto", "self_exclusion": False, "workers": None}
    storage = "site species per FCC site, uint8 (0 Cr, 1 Fe, 2 Ni), shape (M, 256)"

    def datasets(self) -> list[DatasetSpec]:
        from dismai.datasets.alloy_recipe import COMPOSITION, default_recipe

        specs = []
        for temperature in (300, 1500):
            for sro in ("narrow", "wide"):
                window = ("all 12 SRO parameters within ±0.1 of the mean" if sro == "narrow"
                          else "no SRO restriction")
                specs.append(DatasetSpec(
                    name=f"alloy-{temperature}K-{sro}", family=self.name,
                    description=f"Fe60Ni20Cr20 FCC, CE Monte Carlo at {temperature} K, {window}",
                    n_atoms=256, composition=dict(COMPOSITION),
                    recipe=default_recipe(temperature, sro)))
        return specs

    def structures(self, data, arrays, manifest):
        from dismai.datasets.alloy_recipe import structures_from_site_species

        return structures_from_site_species(data)

    def work_key(self, spec: DatasetSpec, recipe: dict) -> str:
        """Narrow and wide sets of one temperature share one chain folder."""
        return f"alloy-{recipe['temperature']}K-seed{recipe['seed']}"

    def build(self, spec, recipe, *, work_dir, n_workers, progress) -> BuildResult:
        import dismai.datasets.alloy_recipe as alloy_recipe
        from dismai.metrics.alloy.reference import build_reference

        result = alloy_recipe.build(progress=progress, chain_dir=work_dir, **recipe)
        data = result.site_species
        n = result.n_train
        structures = alloy_recipe.structures_from_site_species(data)
        idx = np.arange(len(data))
        return BuildResult(
            data=data, n_train=n, structures=structures,
            reference=build_reference(structures[idx[:n]], structures[idx[n:]]),
            statistics={"train": alloy_statistics(data[:n]), "val": alloy_statistics(data[n:]),
                        "all": alloy_statistics(data)},
            info=result.info)

    accepts_added = True
    near_copy_kind = "sites"

    def fit(self, structures):
        """An added alloy dataset (e.g. the published files): Fe/Ni/Cr on the 256-site
        4x4x4 FCC cell of edge 14.4 Å in any orientation, every site occupied (checked
        when the reference is built); returned on the canonical cell."""
        from dismai.errors import DatasetError
        from dismai.fcc import CELL_LENGTH, N_SITES, lattice_matrix
        from dismai.structures import StructureSet, cell_parameters

        extra = sorted(set(structures.species) - {"Fe", "Ni", "Cr"})
        if extra or structures.n_atoms != N_SITES:
            raise DatasetError(f"the alloy family needs {N_SITES} Fe/Ni/Cr atoms, got "
                               f"{structures.formula}; use --family disordered")
        lengths, angles = cell_parameters(structures.lattice)
        if not (np.allclose(lengths, CELL_LENGTH, atol=1e-3) and np.allclose(angles, 90.0,
                                                                             atol=1e-2)):
            raise DatasetError(f"the alloy family needs the {CELL_LENGTH} Å cubic cell, got "
                               f"lengths {np.round(lengths, 4).tolist()} Å, angles "
                               f"{np.round(angles, 3).tolist()}°; use --family disordered")
        return StructureSet(lattice_matrix(), structures.species, structures.frac,
                            structures.properties)

    def added_reference(self, train, val, *, options, n_workers) -> dict:
        from dismai.metrics.alloy.reference import build_reference

        return build_reference(train, val)

    def evaluate(self, gen, dataset, n_generated, *, out_dir=None, progress=True,
                 lattice_match="auto", self_exclusion=False, workers=None) -> Evaluation:
        import os

        from dismai.metrics.alloy.evaluate import evaluate

        ev = evaluate(gen, dataset.reference, n_generated=n_generated,
                      lattice_match=lattice_match, self_exclusion=self_exclusion,
                      workers=workers or os.cpu_count() or 1)
        return Evaluation(dataset=dataset.name, family=self.name, n_input=len(gen),
                          n_final=ev.n_accepted, n_generated=n_generated, metrics=ev.metrics,
                          noise_floor=dataset.reference.get("noise_floor", {}),
                          header={"lattice_match": ev.lattice_match}, details=ev)

    def resolved_options(self, evaluation) -> dict:
        """``auto`` lattice matching picks one variant per set; on structures with no lattice
        (the random baseline) its pick flips from run to run (rotated: every structure
        fails; translated: all accepted with ~210 vacancies), so a bench pins the model's."""
        chosen = evaluation.header.get("lattice_match")
        return {} if chosen is None else {"lattice_match": chosen}

    def write_outputs(self, evaluation, reference, out_dir) -> None:
        from dismai.metrics.alloy.report import write_outputs

        write_outputs(evaluation.details, reference, out_dir)


FAMILY = AlloyFamily()
