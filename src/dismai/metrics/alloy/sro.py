"""Warren-Cowley short-range order exactly as Dismai-Bench computes it (§4.3).

Note the reference's like-pair form 1 - p(i|i)/c_i (sign inverted relative to the
textbook (p_ii - c_i)/(1 - c_i)); unlike pairs average both directions.  Negative
values mean attraction for unlike pairs.
"""

from __future__ import annotations

import numpy as np

from dismai.energy.cluster_expansion import SPECIES

#: Output order used by the reference for each shell.
SRO_PAIRS = ("Fe-Ni", "Cr-Fe", "Cr-Ni", "Fe-Fe", "Cr-Cr", "Ni-Ni")
SRO_COLUMNS = tuple(f"{k}NN_{p}" for k in (1, 2) for p in SRO_PAIRS)


def warren_cowley(counts: np.ndarray) -> np.ndarray:
    """(M, 12) SRO for shells 1 and 2 from (M, 45) counts, in SRO_COLUMNS order."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    c = counts[:, :3]
    out = []
    idx = {s: i for i, s in enumerate(SPECIES)}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in (1, 2):
            base = 3 + 6 * (k - 1)
            n = np.zeros((counts.shape[0], 3, 3))
            for p, (a, b) in enumerate(((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))):
                n[:, a, b] = n[:, b, a] = counts[:, base + p]
            diag = np.einsum("mii->mi", n)
            d = n.sum(axis=2) + diag  # D_X = 2 n_XX + sum_{Y != X} n_XY

            def cond(x, y, n=n, d=d):  # p(y | x)
                num = 2 * n[:, x, x] if x == y else n[:, x, y]
                return num / d[:, x]

            for pair in SRO_PAIRS:
                a, b = (idx[s] for s in pair.split("-"))
                if a == b:
                    out.append(1 - cond(a, a) / c[:, a])
                else:
                    out.append(1 - 0.5 * (cond(a, b) / c[:, b] + cond(b, a) / c[:, a]))
    return np.stack(out, axis=1)
