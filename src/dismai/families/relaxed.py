"""The shared pipeline of families whose generated structures are relaxed before scoring.

prepare = move atoms apart (docs/energy-models.md) and relax with the dataset's own
potential and settings, exactly as its training set was relaxed; then the family scores
the survivors.  The a-Si and interface families differ only in the potential, the
optimiser and the metric suite, which they declare.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from dismai.errors import InputError
from dismai.evaluation import Evaluation
from dismai.families.base import DatasetFamily
from dismai.learning import GATE_METRICS

__all__ = ["RelaxedFamily", "Prepared", "NothingScored"]


#: as-generated scoring: atoms closer than this (Å) coincide (fingerprints undefined)
COINCIDENT_ANGSTROM = 0.01


@dataclass
class Prepared:
    """Structures ready for the metrics and how many were lost on the way."""

    structures: object  # StructureSet of the survivors
    n_failed_move_apart: int
    relax_run: object | None  # dismai.relax.RelaxRun, None without relaxation


@dataclass
class NothingScored:
    """The details of an evaluation in which no structure reached the metrics: only
    % failed is defined (100), and the relaxation records say why each one failed."""

    relax_results: object | None  # dismai.relax.RelaxRun, None without relaxation
    metrics: dict
    n_final: int = 0


class RelaxedFamily(DatasetFamily):
    relaxes = True
    gate_metrics = GATE_METRICS  # d_motif, d_rdf, d_angle as generated; relaxation steps
    #: relax: relax before scoring; workers: processes (None: all cores); relax_dir: the
    #: resumable relaxation store (default OUT/relax); reference_compatible: move atoms
    #: apart exactly as the reference code (docs/energy-models.md); as_generated: also
    #: score the structures exactly as given (no move-apart, no relaxation), reported as
    #: ``metrics_as_generated`` in metrics.json (the learning gate, docs/learning.md)
    options = {"relax": True, "workers": None, "relax_dir": None,
               "reference_compatible": False, "as_generated": False}

    def relax_settings(self, dataset) -> dict:
        """keyword arguments of dismai.relax.relax_structures: model, fmax, max_steps,
        optimizer (from the dataset's recipe: the training set's own settings)."""
        raise NotImplementedError

    #: the package of the family's metric suite: its ``evaluate`` module scores the
    #: survivors, its ``report`` module writes the per-structure files and plots
    metrics_package: ClassVar[str] = ""

    def score(self, survivors, reference: dict, n_generated: int, n_failed_postprocess: int,
              relax_run, workers):
        """The family's metric evaluation object (with .metrics, .n_final) of survivors."""
        evaluate = importlib.import_module(f"{self.metrics_package}.evaluate").evaluate
        return evaluate(survivors, reference, n_generated=n_generated,
                        n_failed_postprocess=n_failed_postprocess, relax_results=relax_run,
                        n_workers=workers or 1)

    def relax_settings_of(self, dataset) -> dict:
        """The dataset's relaxation settings: an added dataset's from its manifest (the
        energy model named at `datasets add`), a built one's from its recipe."""
        if not dataset.manifest.get("added"):
            return self.relax_settings(dataset)
        relax = dataset.manifest.get("relax")
        if not relax:
            raise InputError(f"dataset {dataset.name!r} names no energy model, so generated "
                             "structures cannot be relaxed; evaluate with --no-relax, or "
                             "re-add it with --energy-model")
        return {k: relax[k] for k in ("model", "fmax", "max_steps", "optimizer")}

    def prepare(self, gen, dataset, *, relax: bool = True, workers=None, relax_dir=None,
                reference_compatible: bool = False, progress=True) -> Prepared:
        from dismai.postprocess import move_atoms_apart

        moved = move_atoms_apart(gen, reference_compatible=reference_compatible)
        survivors = moved.structures
        run = None
        if relax and len(survivors):
            from dismai.relax import relax_structures

            run = relax_structures(survivors, out_dir=relax_dir, n_workers=workers,
                                   progress=progress, **self.relax_settings_of(dataset))
            survivors = run.structures
        return Prepared(survivors, int((~moved.ok).sum()), run)

    def evaluate(self, gen, dataset, n_generated, *, out_dir=None, progress=True, relax=True,
                 workers=None, relax_dir=None, reference_compatible=False,
                 as_generated=False) -> Evaluation:
        where = relax_dir or (Path(out_dir) / "relax" if out_dir is not None else None)
        prep = self.prepare(gen, dataset, relax=relax, workers=workers, relax_dir=where,
                            reference_compatible=reference_compatible, progress=progress)
        run = prep.relax_run
        if len(prep.structures) == 0:
            # a model whose every structure fails gets its score (100 % failed) and the
            # failure records, not an error: that is a benchmark result like any other
            from dismai.metrics.accounting import pct_failed_metric

            ev = NothingScored(run, {"pct_failed": pct_failed_metric(0, n_generated)})
        else:
            ev = self.score(prep.structures, dataset.reference, n_generated,
                            prep.n_failed_move_apart, run, workers)
        header = {"relaxed": bool(relax), "n_failed_move_apart": prep.n_failed_move_apart,
                  "n_failed_relaxation": 0 if run is None else len(run.failed)}
        if as_generated:
            header["metrics_as_generated"] = self.score_as_generated(gen, dataset, workers)
        return Evaluation(dataset=dataset.name, family=self.name, n_input=len(gen),
                          n_final=ev.n_final, n_generated=n_generated, metrics=ev.metrics,
                          noise_floor=dataset.reference.get("noise_floor", {}), header=header,
                          details=ev)

    def score_as_generated(self, gen, dataset, workers) -> dict:
        """The family's metrics on the structures as the model produced them.

        Coordination fingerprints are undefined for an atom that sits on another (its
        Voronoi cell is empty), so structures with two atoms closer than
        COINCIDENT_ANGSTROM are left out and counted in ``pct_failed``; the distances are
        over the rest (none left: only ``pct_failed``)."""
        from dismai.metrics.accounting import pct_failed_metric
        from dismai.postprocess import close_pairs

        ok = np.array([len(close_pairs(c, gen.lattice, COINCIDENT_ANGSTROM)) == 0
                       for c in gen.cart()], dtype=bool)
        out = {}
        if ok.any():
            raw = self.score(gen[np.flatnonzero(ok)], dataset.reference, len(gen), 0, None,
                             workers)
            out = {k: v for k, v in raw.metrics.items() if k != "pct_failed"}
        out["pct_failed"] = pct_failed_metric(int(ok.sum()), len(gen))
        return out

    def write_outputs(self, evaluation, reference, out_dir) -> None:
        if not isinstance(evaluation.details, NothingScored):  # no per-structure files
            self.write_family_outputs(evaluation.details, reference, out_dir)
        run = evaluation.details.relax_results  # the RelaxRun prepare() made, or None
        if run is not None:
            run.write_table_csv(Path(out_dir) / "relax_results.csv")

    def write_family_outputs(self, details, reference, out_dir) -> None:
        report = importlib.import_module(f"{self.metrics_package}.report")
        report.write_outputs(details, reference, out_dir)
