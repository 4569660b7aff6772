"""The Fe-Ni-Cr chemical cluster expansion used by Dismai-Bench.

Correlations are the reference's "counts": unordered pairs of each species combination
per atom, for the singlet and pair shells 1-7 on the FCC lattice, rounded to 5 decimals
(§3.3-3.4).  The formation energy is the ECI vector dotted
with those counts (§4.2).  The ECIs are copied from Dismai-Bench
`benchmark/alloy/cluster_counts/analyze_cluster_count.py` (via §4.2); in Monte
Carlo each pair ECI is an energy per pair of the supercell (recipe §1.3).
"""

from __future__ import annotations

import numpy as np

from dismai import fcc
from dismai.errors import InputError

SPECIES = ("Cr", "Fe", "Ni")  # block order; alphabetical = pymatgen's electronegativity sort
PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # Cr-Cr, Cr-Fe, Cr-Ni, Fe-Fe, ...
PAIR_INDEX = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]], dtype=np.int64)

#: The 45 count columns in reference order.
COLUMNS = tuple(
    [f"0NN_{s}" for s in SPECIES]
    + [
        f"{k}NN_{SPECIES[a]}-{SPECIES[b]}"
        for k in range(1, fcc.N_SHELLS + 1)
        for a, b in PAIRS
    ]
)

#: 46 ECIs (eV): index 0 is the constant, then one per column of COLUMNS.
ECI = np.array([
    -0.00932958469464057,
    -0.0, -0.0, -0.0,
    0.0003376140261270978, -0.006093130106866821, -0.017503750379865866,
    0.0, -0.0, 0.0022227714241077777,
    -0.03477817417403486, 0.0, 0.005939741713420254,
    -0.0006455514901675906, 0.016358092689283846, -0.0,
    0.0015984460745564193, -0.005292076441853677, -0.003021082122451338,
    0.0, -0.0, 0.0,
    -0.0, 0.0018668024945124595, -0.0038807821841662124,
    -0.0, -0.0036085744161752594, 0.0012250045279512465,
    -0.0007252972937068049, 0.0005925701791865664, 0.0028510208730949406,
    -0.0005707393430416303, 0.0018947957869953978, -0.001669283899958865,
    0.0, -0.005562649078917254, 0.00172340842194012,
    0.0, 0.00015073769660058886, -0.003134770684447135,
    0.001983244154690138, -0.0018490697130025958, -0.002680779582402635,
    0.0003351340012252481, -0.0021377444095509075, 0.0010601861757962314,
])

#: Pair ECIs as symmetric (7, 3, 3) matrices, eV per pair, for Monte Carlo.
PAIR_ECI = np.zeros((fcc.N_SHELLS, 3, 3))
for _k in range(fcc.N_SHELLS):
    for _p, (_a, _b) in enumerate(PAIRS):
        PAIR_ECI[_k, _a, _b] = PAIR_ECI[_k, _b, _a] = ECI[4 + 6 * _k + _p]


def raw_pair_tallies(site_species: np.ndarray, chunk: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Ordered-pair tallies on the perfect lattice.

    site_species: (M, 256) int, species index per site (0 Cr, 1 Fe, 2 Ni), -1 = empty.
    Returns (singlets (M, 3) atom counts, pairs (M, 7, 6) tallies, where every unordered
    pair between two present atoms is seen twice, as in the reference's loop over atoms
    and both orientations of every star vector).
    """
    s = np.asarray(site_species, dtype=np.int64)
    if s.ndim == 1:
        s = s[None]
    m = s.shape[0]
    singles = np.stack([(s == i).sum(axis=1) for i in range(3)], axis=1)
    pairs = np.zeros((m, fcc.N_SHELLS, 6), dtype=np.int64)
    for k, table in enumerate(fcc.all_neighbour_tables()):
        for lo in range(0, m, chunk):
            blk = s[lo:lo + chunk]
            a = blk[:, :, None]
            b = blk[:, table]
            ok = (a >= 0) & (b >= 0)
            code = PAIR_INDEX[np.where(ok, a, 0), np.where(ok, b, 0)]
            rows = np.broadcast_to(np.arange(blk.shape[0])[:, None, None], code.shape)
            flat = np.bincount((rows * 6 + code)[ok], minlength=blk.shape[0] * 6)
            pairs[lo:lo + chunk, k] = flat.reshape(-1, 6)
    return singles, pairs


def count_vector(site_species: np.ndarray) -> np.ndarray:
    """(M, 45) reference counts (pairs per atom, rounded to 5 decimals) for lattice configs."""
    singles, pairs = raw_pair_tallies(site_species)
    n = singles.sum(axis=1).astype(float)
    if (n == 0).any():
        raise InputError("a structure with no atoms has no cluster counts")
    out = np.concatenate([singles / n[:, None], (pairs / (2 * n)[:, None, None]).reshape(-1, 42)],
                         axis=1)
    return np.round(out, 5)


def probability_vector(counts: np.ndarray) -> np.ndarray:
    """The 45-column cluster-probability fingerprint: pair counts divided by m_k (§4.1)."""
    counts = np.asarray(counts, dtype=float)
    div = np.concatenate([np.ones(3), np.repeat(np.array(fcc.MULTIPLICITY, float), 6)])
    return counts / div


def formation_energy(counts: np.ndarray) -> np.ndarray:
    """CE formation energy in eV/atom from (M, 45) counts (§4.2)."""
    counts = np.asarray(counts, dtype=float)
    return ECI[0] + counts @ ECI[1:]
