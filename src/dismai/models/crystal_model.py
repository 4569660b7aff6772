"""Models of general crystals: they learn from a `CrystalSet` and sample one.

The Dismai-Bench models generate structures on one fixed template (`GenerativeModel`).
The original CrysTens models (and Perov-5 / Carbon-24 in general) vary the cell, the atom
count and the composition per structure, so they pass `CrystalSet`s instead.  Everything
else is shared: config dataclasses and presets, the Trainer (checkpoints, resume, CSV log,
sample dumps), model files readable with ``torch.load(weights_only=True)`` and
``GenerativeModel.load``.  A subclass implements the TrainableModel hooks and
``_sample_crystals``; it sets ``max_atoms`` where its representation has a limit.

Samples that cannot be turned into a crystal are left out of ``sample()``; ``generate()``
returns every attempt with the reason it failed, for validity rates.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np

from dismai.crystals import Crystal, CrystalSet
from dismai.errors import ModelError, NotFittedError, TrainingDataError
from dismai.models.training import TrainableModel

__all__ = ["CrystalModel", "check_crystal_data"]


def check_crystal_data(train, val=None, max_atoms: int | None = None) -> None:
    """One-line errors for data a general-crystal model cannot learn from."""
    for what, s in (("training", train), ("validation", val)):
        if s is None and what == "validation":
            continue
        if not isinstance(s, CrystalSet):
            raise TrainingDataError(f"{what} data must be a CrystalSet, got {type(s).__name__}")
        if what == "training" and len(s) < 1:
            raise TrainingDataError("the training set is empty")
        if max_atoms is not None and len(s) and s.n_atoms.max() > max_atoms:
            i = int(np.argmax(s.n_atoms))
            raise TrainingDataError(f"{what} crystal {i} has {s.n_atoms[i]} atoms; this model "
                                    f"takes at most {max_atoms}")


class CrystalModel(TrainableModel):
    """A trained generator of general crystals (variable cell, atom count and species)."""

    #: the most atoms per crystal the representation holds (None: no limit)
    max_atoms: ClassVar[int | None] = None
    sample_suffix: ClassVar[str] = ".csv"

    # ------------------------------------------------------------------ to implement
    def _sample_crystals(self, n: int, seed: int) -> list[tuple[Crystal | None, str]]:
        """n attempts: (crystal with its properties, "") or (None, why it failed)."""
        raise NotImplementedError

    def _sample_frac(self, n: int, seed: int):  # the fixed-template hook does not apply
        raise ModelError(f"{self.name} generates general crystals; use sample()")

    # ------------------------------------------------------------------ data and template
    def check_data(self, train, val=None) -> None:
        check_crystal_data(train, val, self.max_atoms)

    def data_fingerprint(self, train, val) -> str:
        h = hashlib.sha256()
        for s in (train, val):
            h.update(b"set" if s is not None else b"none")
            for c in s or ():
                for a in (c.lattice, c.frac, c.numbers.astype(np.int64)):
                    h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def _build(self, data) -> None:
        """data: the training CrystalSet (fit) or the stored template (load)."""
        name = data.name if isinstance(data, CrystalSet) else str(data["data"])
        self.template = {"data": name}

    def template_payload(self) -> dict:
        return dict(self.template)

    @classmethod
    def template_from_payload(cls, d: dict) -> dict:
        return dict(d)

    def write_samples(self, samples: CrystalSet, path) -> None:
        samples.to_csv(path)

    # ------------------------------------------------------------------ sampling
    def generate(self, n: int, seed: int = 0) -> list[tuple[Crystal | None, str]]:
        """n attempts, failures included; the same (n, seed) gives the same result."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name}: call fit() or load() before sampling")
        if n < 1:
            raise ModelError(f"number of crystals must be >= 1, got {n}")
        return self._sample_crystals(int(n), int(seed))

    def sample(self, n: int, seed: int = 0) -> CrystalSet:
        """The valid crystals among n attempts (fewer than n where some failed)."""
        return CrystalSet([c for c, _ in self.generate(n, seed) if c is not None],
                          f"{self.name} samples")

    def __repr__(self) -> str:
        fitted = f"fitted on {self.template['data']}" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}({fitted})"
