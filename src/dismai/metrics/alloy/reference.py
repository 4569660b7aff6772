"""Training-set reference statistics for the alloy benchmark, computed once per dataset.

The reference benchmark reads precomputed train CSVs and never recomputes them (§0
notation, §5); likewise a dataset ships ``NAME.reference.json`` built here at dataset build
time, and :func:`dismai.metrics.alloy.evaluate.evaluate` only reads it.

Training structures are perfect-lattice configurations, so their counts are the exact
integer site-arithmetic counts (§3.3 "reimplementation for perfect lattices").
"""

from __future__ import annotations

import numpy as np

from dismai.energy.cluster_expansion import (
    COLUMNS,
    count_vector,
    formation_energy,
    probability_vector,
)
from dismai.errors import InputError
from dismai.metrics.alloy.lattice_match import match_as_is
from dismai.metrics.alloy.sro import SRO_COLUMNS, warren_cowley
from dismai.metrics.bootstrap import CONF_LEVEL, N_REPS, SEED
from dismai.structures import StructureSet

__all__ = ["train_statistics", "build_reference"]
#: decimals kept for per-structure values (plots only); means are stored at full precision
_ENERGY_DECIMALS = 9  # eV/atom (1e-6 meV/atom)
_SRO_DECIMALS = 6


def _site_species(structures: StructureSet, what: str) -> np.ndarray:
    match = match_as_is(structures)
    bad = np.flatnonzero(match.vac_count > 0)
    if len(bad):
        raise InputError(
            f"{what} structure {int(bad[0])} has {int(match.vac_count[bad[0]])} empty sites; "
            "reference structures must occupy every FCC site"
        )
    return match.site_species


def train_statistics(train: StructureSet) -> dict:
    """Counts, probabilities, formation energies and SRO of perfect-lattice structures."""
    counts = count_vector(_site_species(train, "training"))
    return {
        "counts": counts,
        "probabilities": probability_vector(counts),
        "formation_energy": formation_energy(counts),
        "sro": warren_cowley(counts),
    }


def build_reference(train: StructureSet, val: StructureSet) -> dict:
    """JSON-serialisable alloy reference: train means/distributions and the val noise floor.

    noise_floor: the benchmark metrics of the validation split evaluated against the
    training split (as-is lattice matching; both are perfect lattices), i.e. the values a
    perfect generator would get with this many structures.
    """
    from dismai.metrics.alloy.evaluate import evaluate

    stats = train_statistics(train)
    energies = stats["formation_energy"]
    ref = {
        "n_train": len(train),
        "n_val": len(val),
        "columns": list(COLUMNS),
        "sro_columns": list(SRO_COLUMNS),
        "train_mean_probability": [float(x) for x in stats["probabilities"].mean(axis=0)],
        "train_formation_energy_mean": float(energies.mean()),
        "train_formation_energy": [float(x) for x in np.round(energies, _ENERGY_DECIMALS)],
        "train_sro": np.round(stats["sro"], _SRO_DECIMALS).tolist(),
        "bootstrap": {"n_reps": N_REPS, "conf_level": CONF_LEVEL, "seed": SEED},
    }
    _site_species(val, "validation")
    floor = evaluate(val, ref, lattice_match="as-is")
    ref["noise_floor"] = floor.metrics
    ref["noise_floor_lattice_match"] = floor.lattice_match
    return ref
