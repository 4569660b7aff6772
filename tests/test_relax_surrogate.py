"""Teacher relaxation after a surrogate pre-relaxation (dismai.relax_surrogate)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.optimize import FIRE

from dismai.energy.base import CalculatorModel
from dismai.errors import InputError
from dismai.relax import relax_structures
from dismai.relax_surrogate import SurrogateOptimizer
from dismai.structures import StructureSet


def _copper(seed: int):
    """Rattled fcc Cu with a vacancy and two Au: a minimum that a pair potential with
    copper's parameters gets a little wrong."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    del atoms[0]
    atoms.symbols[[0, 17]] = "Au"
    atoms = atoms[np.argsort(atoms.numbers, kind="stable")]  # species in blocks
    atoms.rattle(0.15, seed=seed)
    return atoms


def _fmax(atoms) -> float:
    return float(np.sqrt((atoms.get_forces() ** 2).sum(1)).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_ends_at_a_teacher_minimum_in_fewer_teacher_calls(seed):
    plain = _copper(seed)
    plain.calc = EMT()
    fire = FIRE(plain, logfile=None)
    assert fire.run(fmax=0.05, steps=500)
    atoms = _copper(seed)
    atoms.calc = EMT()  # the teacher; a Lennard-Jones copper the surrogate (40 FIRE steps
    # on EMT against 15 after it, measured)
    opt = SurrogateOptimizer(atoms, LennardJones(sigma=2.2, epsilon=0.4, rc=6.0, smooth=True))
    assert opt.run(fmax=0.05, steps=500)
    assert _fmax(atoms) < 0.05  # converged on the teacher's forces, not the surrogate's
    assert opt.surrogate_steps > 10
    assert 1 < opt.nsteps < fire.nsteps
    # the teacher as its own surrogate: the first stage is the whole relaxation
    same = _copper(seed)
    same.calc = EMT()
    exact = SurrogateOptimizer(same, EMT())
    assert exact.run(fmax=0.05, steps=500) and exact.nsteps == 1
    assert exact.surrogate_steps == fire.nsteps
    assert np.allclose(same.positions, plain.positions, atol=1e-12)


class _Broken(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": np.nan, "forces": np.full((len(self.atoms), 3), np.nan)}


def test_a_surrogate_gone_wrong_is_dropped():
    atoms = _copper(2)
    atoms.calc = EMT()
    opt = SurrogateOptimizer(atoms, _Broken())
    assert opt.run(fmax=0.05, steps=500)
    assert _fmax(atoms) < 0.05


class _EMTModel(CalculatorModel):
    name = "emt"

    def calculator(self):
        return EMT()


class _LJModel(CalculatorModel):
    name = "lj-copper"
    model_name = "sigma-2.2"

    def calculator(self):
        return LennardJones(sigma=2.2, epsilon=0.4, rc=6.0, smooth=True)


def test_relax_structures_with_a_surrogate_records_it(tmp_path):
    atoms = [_copper(s) for s in (3, 4)]
    structures = StructureSet(atoms[0].cell.array, tuple(atoms[0].get_chemical_symbols()),
                              np.stack([a.get_scaled_positions() for a in atoms]))
    run = relax_structures(structures, _EMTModel(), tmp_path / "r", optimizer="surrogate",
                           surrogate=_LJModel(), n_workers=1, progress=False)
    assert [r["status"] for r in run.table] == ["converged", "converged"]
    meta = (tmp_path / "r" / "relax_meta.json").read_text()
    assert '"surrogate": "lj-copper"' in meta and "sigma-2.2" in meta
    with pytest.raises(InputError, match="surrogate"):
        relax_structures(structures, _EMTModel(), optimizer="fire", surrogate=_LJModel(),
                         n_workers=1, progress=False)
    with pytest.raises(InputError, match="surrogate"):
        relax_structures(structures, _EMTModel(), optimizer="surrogate", n_workers=1,
                         progress=False)
