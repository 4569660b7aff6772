"""Relax with an expensive teacher potential after a pre-relaxation on a cheap surrogate.

`SurrogateOptimizer` is an ASE optimiser in two stages: its first step relaxes a copy of
the structure on the surrogate (e.g. the distilled `interface-mlip`, ~0.05 CPU-s per call
on a 264-atom interface) with FIRE to the same fmax, and moves there; every later step is
a FIRE step on the atoms' own calculator (the teacher, e.g. CHGNet, ~1 CPU-s per call).
The convergence test is ASE's usual one on the **teacher's** forces, so the result is a
teacher minimum, reached from a start the surrogate has already brought close: a better
surrogate only takes fewer teacher calls.  A surrogate stage that ends in non-finite
positions is dropped (the teacher starts from the input).  `nsteps` counts the teacher
steps plus the one pre-relaxation step; `surrogate_steps` the surrogate's FIRE steps.

Measured on the interface (docs/interface.md): CHGNet FIRE from the distilled potential's
minima took 127 steps on average against 215 from the raw candidates, but ended in other
CHGNet minima than FIRE alone, farther from them than CG's are.  (A variant that
shifted the surrogate to the teacher's forces at every teacher call and took trust-region
steps on it was tried first and needed more teacher calls than plain FIRE: the distilled
network's curvature is too far from CHGNet's near the minimum.)
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator
from ase.optimize import FIRE
from ase.optimize.optimize import Optimizer

__all__ = ["SurrogateOptimizer"]


class SurrogateOptimizer(Optimizer):
    """ASE optimiser: FIRE on `surrogate` (an ASE calculator) first, then FIRE on the
    atoms' calculator.  surrogate_max_steps caps the first stage."""

    def __init__(self, atoms, surrogate: Calculator, *, surrogate_max_steps: int = 1000,
                 logfile=None, **kwargs):
        self.surrogate = surrogate
        self.surrogate_max_steps = int(surrogate_max_steps)
        super().__init__(atoms, logfile=logfile, **kwargs)

    def initialize(self):
        self.surrogate_steps = None  # None until the first stage has run
        self._teacher_fire = None

    def step(self):
        if self.surrogate_steps is None:
            probe = self.atoms.copy()
            probe.calc = self.surrogate
            first = FIRE(probe, logfile=None)
            first.run(fmax=self.fmax if self.fmax is not None else 0.05,
                      steps=self.surrogate_max_steps)
            self.surrogate_steps = int(first.nsteps)
            if np.all(np.isfinite(probe.positions)):
                self.atoms.set_positions(probe.positions)
            return
        if self._teacher_fire is None:
            self._teacher_fire = FIRE(self.atoms, logfile=None)
        self._teacher_fire.step()
