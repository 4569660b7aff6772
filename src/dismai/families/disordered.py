"""The generic `disordered` family: any fixed-cell, fixed-composition system you bring.

Its datasets are added from files (`dismai datasets add`, dismai.datasets.user), not built
by a recipe.  Metrics (dismai.metrics.disordered): per-species CrystalNN fingerprints
(optionally with neighbour-species fractions and oxidation states), partial g(r) per species
pair, bond angles per species triplet, % failed and, when the dataset names an energy
model, move-apart + relaxation with it and the mean relaxation steps.  On one-species
a-Si the metrics equal the a-Si family's; with the interface settings the fingerprints
equal the interface family's (tests/test_disordered.py).
"""

from __future__ import annotations

from dismai.errors import DatasetError
from dismai.families.relaxed import RelaxedFamily

__all__ = ["FAMILY", "DisorderedFamily"]


class DisorderedFamily(RelaxedFamily):
    name = "disordered"
    metrics_package = "dismai.metrics.disordered"
    metric_names = ("d_motif", "cos_motif", "d_rdf", "d_angle", "pct_failed",
                    "mean_relax_steps")
    report_metrics = ("d_motif", "d_rdf", "d_angle", "pct_failed")  # as a-Si
    metric_titles = {
        "d_motif": "d_motif (fingerprints, atom-weighted over species, Euclidean)",
        "cos_motif": "cos_motif (same, cosine)",
        "d_rdf": "d_rdf (partial g(r), all pairs, Euclidean)",
        "d_angle": "d_angle (bond angles per species triplet, Euclidean)",
        "pct_failed": "% failed structures",
        "mean_relax_steps": "mean relaxation steps",
    }
    #: relax None: relax exactly when the dataset names an energy model
    options = {**RelaxedFamily.options, "relax": None}
    storage = ("fractional coordinates, float64, shape (M, N, 3), species blocks and cell "
               "in the manifest; NAME.energy.npy (if given or computed): energy per atom")
    accepts_added = True

    def datasets(self):
        return []  # every dataset of this family is added by a user (dataset registry)

    def build(self, spec, recipe, *, work_dir, n_workers, progress):
        raise DatasetError(f"{spec.name!r} is an added dataset, not built by a recipe; "
                           "re-add it with `dismai datasets add`")

    def fit(self, structures):
        """Any fixed cell and composition fits (StructureSet already guarantees both)."""
        return structures

    def added_reference(self, train, val, *, options: dict, n_workers) -> dict:
        from dismai.metrics.disordered.evaluate import build_reference
        from dismai.metrics.disordered.features import DisorderedSettings

        settings = DisorderedSettings.from_dict(options.get("fingerprint"))
        settings.check(train.species)
        return build_reference(train, val, settings, n_workers=n_workers)

    def evaluate(self, gen, dataset, n_generated, *, relax=None, **kwargs):
        if relax is None:
            relax = bool(dataset.manifest.get("relax"))
        ev = super().evaluate(gen, dataset, n_generated, relax=relax, **kwargs)
        ev.header["d_motif_by_species"] = ev.details.by_species
        return ev


FAMILY = DisorderedFamily()
