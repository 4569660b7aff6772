"""Reference generators that learn nothing: the floor every trained model must beat.

``random`` scatters atoms uniformly in the cell; ``shuffled-lattice`` (alloys only) puts the
composition on the ideal 4x4x4 FCC sites in a random order, i.e. a perfect lattice with no
chemical short-range order.  A metric on which a model does not beat these says little
about what the model learnt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dismai import fcc
from dismai.models.base import GenerativeModel, TrainingDataError, check_training_data
from dismai.models.training import MODEL_FILE, RunDirError
from dismai.structures import StructureSet

__all__ = ["RandomBaseline", "ShuffledLatticeBaseline"]


class _Baseline(GenerativeModel):
    """fit() only records the template (and writes run_dir/model.pt); there are no weights."""

    def fit(self, train: StructureSet, val: StructureSet | None = None, *, run_dir=None,
            resume: bool = False, progress: bool = False) -> None:
        check_training_data(train, val, min_atoms=self.min_atoms)
        if run_dir is not None and (Path(run_dir) / MODEL_FILE).exists() and not resume:
            raise RunDirError(f"{run_dir} already holds a model; pass --resume or another --out")
        self._build(train)
        if run_dir is not None:
            self.save(Path(run_dir) / MODEL_FILE)


class RandomBaseline(_Baseline):
    """Every atom uniformly at random in the cell; species blocks kept."""

    name = "random"

    def _sample_frac(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.random((n, self.template.n_atoms, 3))


class ShuffledLatticeBaseline(_Baseline):
    """The alloy composition randomly permuted over the ideal FCC sites."""

    name = "shuffled-lattice"

    def _build(self, template: StructureSet) -> None:
        if template.n_atoms != fcc.N_SITES or not np.allclose(
            template.lattice, fcc.lattice_matrix(), atol=1e-3
        ):
            raise TrainingDataError(
                "shuffled-lattice needs the 4x4x4 FCC alloy template "
                f"({fcc.N_SITES} atoms in a {fcc.CELL_LENGTH} Å cubic cell), got {template!r}"
            )
        super()._build(template)

    def _sample_frac(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        sites = fcc.site_frac()
        order = rng.random((n, len(sites))).argsort(axis=1)
        return sites[order]
