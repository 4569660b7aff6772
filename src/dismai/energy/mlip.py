"""Universal machine-learned potentials whose weights ship inside their wheels.

CHGNet 0.3.0 (`pip install 'dismai[chgnet]'`) and SevenNet-0 (`pip install
'dismai[sevennet]'`, model '7net-0') load offline; neither downloads anything at run
time.  Both use CUDA when torch sees a GPU.  The two potentials have different energy
zeros (CHGNet includes MP2020-style corrections), so never mix their energies.

Batched evaluation: CHGNet batches graphs natively (`predict_structure(..., batch_size)`),
which `CHGNetModel.energy_forces` uses.  SevenNet is evaluated structure by structure
here; for batched GPU relaxation of many structures the hook is
`SevenNetModel.energy_forces` (torch-sim's batched SevenNet model, package
`torch-sim-atomistic`, can replace the loop when a GPU is available).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from dismai.energy.base import BackendUnavailable, CalculatorModel, torch_device

__all__ = ["CHGNetModel", "SevenNetModel", "CHGNetEFCalculator"]


def _require(module: str, backend: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(backend, extra, str(exc).splitlines()[0]) from None
    except Exception as exc:  # a broken install (e.g. ABI mismatch with torch)
        raise BackendUnavailable(backend, extra,
                                 f"import failed: {type(exc).__name__}: {exc}") from None


class CHGNetEFCalculator(Calculator):
    """CHGNet energy + forces only (task 'ef'): no stress, ~1/3 cheaper than 'efsm'."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from pymatgen.io.ase import AseAtomsAdaptor

        structure = AseAtomsAdaptor.get_structure(self.atoms)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # chgnet's own requires_grad notice
            pred = self.model.predict_structure(structure, task="ef")
        n = len(self.atoms)
        factor = n if getattr(self.model, "is_intensive", True) else 1
        e = float(pred["e"]) * factor
        self.results = {"energy": e, "free_energy": e,
                        "forces": np.asarray(pred["f"], dtype=np.float64)}


class CHGNetModel(CalculatorModel):
    """Energy model 'chgnet' (default weights 0.3.0, shipped in the chgnet wheel)."""

    name = "chgnet"

    #: at most this many atoms per CHGNet graph batch: 16 interface structures (4224 atoms)
    #: in one batch went past 24 GB on a CPU, one (264 atoms) takes about 2.5 GB
    max_batch_atoms = 512

    def __init__(self, model_name: str = "0.3.0", device: str | None = None,
                 batch_size: int = 16):
        self.model_name = model_name
        self.device = device
        self.batch_size = int(batch_size)
        self._model = None

    def graph_batch_size(self, n_atoms: int) -> int:
        """Structures per CHGNet call: `batch_size`, capped by `max_batch_atoms`."""
        return max(1, min(self.batch_size, self.max_batch_atoms // max(int(n_atoms), 1)))

    def __getstate__(self):  # weights are reloaded in each worker process
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def check_available(self) -> None:
        _require("chgnet.model", "chgnet", "chgnet")

    def load(self):
        """The CHGNet torch model (loaded once per process)."""
        if self._model is None:
            mod = _require("chgnet.model", "chgnet", "chgnet")
            with warnings.catch_warnings(), contextlib.redirect_stdout(None):
                warnings.simplefilter("ignore")
                self._model = mod.CHGNet.load(model_name=self.model_name,
                                              use_device=torch_device(self.device),
                                              verbose=False)
        return self._model

    def calculator(self):
        return CHGNetEFCalculator(self.load())

    def energy_forces(self, structures) -> tuple[np.ndarray, np.ndarray]:
        """Batched over structures with CHGNet's own graph batching."""
        from pymatgen.core import Lattice, Structure

        model = self.load()
        lattice = Lattice(structures.lattice)
        pmg = [Structure(lattice, list(structures.species), f, coords_are_cartesian=False)
               for f in structures.frac]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            preds = model.predict_structure(
                pmg, task="ef", batch_size=self.graph_batch_size(structures.n_atoms))
        if isinstance(preds, dict):
            preds = [preds]
        n = structures.n_atoms
        factor = n if getattr(model, "is_intensive", True) else 1
        energies = np.array([float(p["e"]) * factor for p in preds])
        forces = np.stack([np.asarray(p["f"], dtype=np.float64) for p in preds])
        return energies, forces


class SevenNetModel(CalculatorModel):
    """Energy model 'sevennet' (default '7net-0', shipped in the sevenn wheel)."""

    name = "sevennet"

    def __init__(self, model_name: str = "7net-0", device: str | None = None,
                 modal: str | None = None):
        self.model_name = model_name
        self.device = device
        self.modal = modal

    def check_available(self) -> None:
        _require("sevenn.calculator", "sevennet", "sevennet")

    def calculator(self):
        mod = _require("sevenn.calculator", "sevennet", "sevennet")
        kwargs = {"device": torch_device(self.device)}
        if self.modal is not None:
            kwargs["modal"] = self.modal
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            return mod.SevenNetCalculator(self.model_name, **kwargs)
