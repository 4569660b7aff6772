"""Recipe for the Fe60Ni20Cr20 alloy datasets: cluster-expansion Monte Carlo.

The published datasets (Dismai-Bench, paper §4.1.1) are snapshots of canonical Monte
Carlo runs with the chemical cluster expansion on the 4x4x4 FCC supercell.  This module
holds the lattice <-> StructureSet glue, the numba Monte Carlo engine and the selection
of the wide/narrow sets.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit, prange

from dismai import fcc
from dismai.energy.cluster_expansion import PAIR_ECI, SPECIES
from dismai.errors import ComputationError, InputError
from dismai.fileio import write_bytes
from dismai.progress import reporter
from dismai.structures import StructureSet

COMPOSITION = {"Cr": 51, "Fe": 154, "Ni": 51}


#: Recipe defaults (paper §4.1.1).  Burn-in (justified in docs/datasets.md): each chain
#: starts from a random arrangement and is annealed linearly from 1500 K to its target
#: temperature over 2500 passes, then held; the first 5000 passes are discarded.  Quenched
#: directly, the CE energy of a 300 K chain reaches its long-run mean within ~600 passes,
#: but 1 chain in 10 froze into a metastable ordering, which the anneal removes.
RECIPE_DEFAULTS = {
    "n_chains": 10,
    "n_passes": 50_000,
    "burn_in": 5_000,
    "anneal_from": 1500.0,
    "anneal_passes": 2_500,
    "interval": 10,
    "n_structures": 1500,
    "train_fraction": 0.8,
    "sro_window": 0.1,
    "seed": 0,
}


def default_recipe(temperature: int, sro: str) -> dict:
    if sro not in ("narrow", "wide"):
        raise InputError(f"sro must be 'narrow' or 'wide', got {sro!r}")
    return {"temperature": temperature, "sro": sro, **RECIPE_DEFAULTS}


def alloy_species() -> tuple[str, ...]:
    return tuple(s for s in SPECIES for _ in range(COMPOSITION[s]))


def structures_from_site_species(site_species: np.ndarray) -> StructureSet:
    """(M, 256) species index per site (0 Cr, 1 Fe, 2 Ni) -> block-ordered StructureSet."""
    s = np.asarray(site_species)
    if s.ndim == 1:
        s = s[None]
    order = np.argsort(s, axis=1, kind="stable")
    frac = fcc.site_frac()[order]
    return StructureSet(fcc.lattice_matrix(), alloy_species(), frac)


def random_site_species(n: int, seed: int = 0) -> np.ndarray:
    """n uniformly random arrangements of the 51/154/51 composition on the 256 sites."""
    rng = np.random.default_rng(seed)
    base = np.repeat(np.arange(3, dtype=np.uint8), [COMPOSITION[s] for s in SPECIES])
    return np.stack([rng.permutation(base) for _ in range(n)])


# ---------------------------------------------------------------------------------------
# Monte Carlo engine (numba).  Canonical Metropolis with Kawasaki swaps, as CLAMM does it
# (recipe §1.3): one pass = 256 attempts, looping over every site in order with
# a partner drawn uniformly among sites holding a different species; the swap energy is
# the exact change of the whole-supercell CE energy (pair ECIs in eV per pair), applied as
# two sequential single-site changes; accept with min(1, exp(-dE / kT)).
# Each chain owns a splitmix64 counter, so results do not depend on thread scheduling.

K_B = 8.617333262e-5  # eV/K (CLAMM algo0.h)


@njit(cache=True, inline="always")
def _next_u64(state, c):
    state[c] += np.uint64(0x9E3779B97F4A7C15)
    z = state[c]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(state, c):
    return float(_next_u64(state, c) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _site_change(s, i, old, new, nbr, shell, J):
    """Energy change of setting site i from species old to new (eV)."""
    d = 0.0
    for n in range(nbr.shape[1]):
        t = s[nbr[i, n]]
        k = shell[n]
        d += J[k, new, t] - J[k, old, t]
    return d


@njit(cache=True)
def _tallies(s, nbr, shell, out):
    """Ordered pair tallies per shell and pair code (each unordered pair counted twice)."""
    for i in range(s.shape[0]):
        a = s[i]
        for n in range(nbr.shape[1]):
            b = s[nbr[i, n]]
            lo = min(a, b)
            hi = max(a, b)
            code = lo * 3 - (lo * (lo - 1)) // 2 + (hi - lo)
            out[shell[n], code] += 1


@njit(cache=True)
def _total_energy(s, nbr, shell, J):
    e = 0.0
    for i in range(s.shape[0]):
        for n in range(nbr.shape[1]):
            e += J[shell[n], s[i], s[nbr[i, n]]]
    return 0.5 * e


@njit(cache=True, parallel=True)
def _run_block(config, rng, energy, n_passes, pass0, burn_in, interval, betas,
               nbr, shell, J, snaps, tallies, snap_energy, trace, accepted):
    """Advance every chain by n_passes; write snapshots due in this block."""
    n_chains, n_sites = config.shape
    for c in prange(n_chains):
        s = config[c]
        for p in range(pass0 + 1, pass0 + n_passes + 1):
            beta = betas[p - 1]
            for i in range(n_sites):
                a = s[i]
                while True:
                    j = int(_next_u64(rng, c) % np.uint64(n_sites))
                    if s[j] != a:
                        break
                b = s[j]
                d = _site_change(s, i, a, b, nbr, shell, J)
                s[i] = b
                d += _site_change(s, j, b, a, nbr, shell, J)
                s[j] = a
                if d <= 0.0 or _uniform(rng, c) < np.exp(-beta * d):
                    energy[c] += d
                    accepted[c] += 1
                else:
                    s[i] = a
                    s[j] = b
            trace[c, p - 1] = energy[c]
            if p > burn_in and (p - burn_in) % interval == 0:
                k = (p - burn_in) // interval - 1
                snaps[c, k] = s
                snap_energy[c, k] = energy[c]
                _tallies(s, nbr, shell, tallies[c, k])


def _flat_neighbours():
    tables = fcc.all_neighbour_tables()
    nbr = np.concatenate(tables, axis=1).astype(np.int64)
    shell = np.concatenate([np.full(t.shape[1], k, np.int64) for k, t in enumerate(tables)])
    return nbr, shell


@dataclass
class ChainResult:
    """Output of the Monte Carlo chains at one temperature."""

    snapshots: np.ndarray  # (n_chains, n_snap, 256) uint8 site species
    tallies: np.ndarray  # (n_chains, n_snap, 7, 6) ordered pair tallies
    snap_energy: np.ndarray  # (n_chains, n_snap) supercell pair energy, eV
    trace: np.ndarray  # (n_chains, n_passes) pair energy after each pass, eV
    acceptance: np.ndarray  # (n_chains,) accepted / attempted


def temperature_schedule(temperature: float, n_passes: int, anneal_from: float,
                         anneal_passes: int) -> np.ndarray:
    """Temperature of every pass: a linear ramp from `anneal_from` down to `temperature`
    over the first `anneal_passes` passes (part of the burn-in), then constant.

    Why: a chain quenched straight from a random start to 300 K can freeze into a
    metastable ordering that it never leaves in 50,000 passes (seen here: 1 of 10 chains
    stuck 2.7 meV/atom above the others with a different 1NN Cr-Cr SRO), which both
    biases the pooled SRO mean and is not an equilibrium sample.
    """
    temps = np.full(n_passes, float(temperature))
    if anneal_passes > 0 and anneal_from > temperature:
        temps[:anneal_passes] = np.linspace(anneal_from, temperature, anneal_passes)
    return temps


def run_chains(temperature: float, n_chains: int, n_passes: int, burn_in: int, interval: int,
               seed: int, progress=None, block: int = 500, anneal_from: float = 0.0,
               anneal_passes: int = 0) -> ChainResult:
    """Run independent CE Monte Carlo chains from random starts; deterministic in `seed`."""
    if burn_in % interval or n_passes <= burn_in:
        raise InputError("burn_in must be a multiple of interval and smaller than n_passes")
    if anneal_passes > burn_in:
        raise InputError("the annealing ramp must lie inside the burn-in")
    ss = np.random.SeedSequence([seed, int(temperature)])
    children = ss.spawn(n_chains)
    rng_state = np.array([c.generate_state(1, np.uint64)[0] for c in children], dtype=np.uint64)
    base = np.repeat(np.arange(3, dtype=np.int64), [COMPOSITION[s] for s in SPECIES])
    config = np.stack([np.random.default_rng(c).permutation(base) for c in children])
    nbr, shell = _flat_neighbours()
    J = np.ascontiguousarray(PAIR_ECI)
    energy = np.array([_total_energy(config[c], nbr, shell, J) for c in range(n_chains)])
    n_snap = (n_passes - burn_in) // interval
    snaps = np.zeros((n_chains, n_snap, fcc.N_SITES), np.int64)
    tallies = np.zeros((n_chains, n_snap, fcc.N_SHELLS, 6), np.int64)
    snap_energy = np.zeros((n_chains, n_snap))
    trace = np.zeros((n_chains, n_passes))
    accepted = np.zeros(n_chains, np.int64)
    betas = 1.0 / (K_B * temperature_schedule(temperature, n_passes, anneal_from, anneal_passes))
    done = 0
    with reporter(progress) as report:
        report("Monte Carlo passes", 0, n_passes)
        while done < n_passes:
            n = min(block, n_passes - done)
            _run_block(config, rng_state, energy, n, done, burn_in, interval, betas, nbr,
                       shell, J, snaps, tallies, snap_energy, trace, accepted)
            done += n
            report("Monte Carlo passes", done, n_passes)
    return ChainResult(snaps.astype(np.uint8), tallies, snap_energy, trace,
                       accepted / (n_passes * fcc.N_SITES))


# ---------------------------------------------------------------------------------------
# Selection of the shipped sets


def counts_from_tallies(tallies: np.ndarray) -> np.ndarray:
    """(..., 7, 6) ordered pair tallies -> (..., 45) reference counts (pairs per atom)."""
    lead = tallies.shape[:-2]
    n = float(fcc.N_SITES)
    single = np.broadcast_to(np.array([COMPOSITION[s] for s in SPECIES]) / n, lead + (3,))
    pairs = tallies.reshape(lead + (-1,)) / (2 * n)
    return np.round(np.concatenate([single, pairs], axis=-1), 5)


def equilibration_passes(trace: np.ndarray, burn_in: int, block: int = 100) -> list[int]:
    """Per chain: passes until a `block`-pass mean energy first lies within one standard
    deviation of the post-burn-in mean (a diagnostic recorded in the manifest)."""
    out = []
    for e in trace:
        ref, sd = e[burn_in:].mean(), e[burn_in:].std()
        nb = len(e) // block
        bm = e[: nb * block].reshape(nb, block).mean(axis=1)
        hit = np.flatnonzero(np.abs(bm - ref) <= sd)
        out.append(int((hit[0] + 1) * block) if hit.size else int(len(e)))
    return out


@dataclass
class AlloyBuild:
    site_species: np.ndarray  # (n_structures, 256) uint8, train rows first
    n_train: int
    info: dict  # JSON-able diagnostics for the manifest


def select(chains: ChainResult, sro: str, n_structures: int, train_fraction: float,
           sro_window: float, rng: np.random.Generator) -> AlloyBuild:
    """Draw the wide or narrow set from the pooled snapshots and split it train/val."""
    from dismai.metrics.alloy.sro import SRO_COLUMNS, warren_cowley

    pool = chains.snapshots.reshape(-1, fcc.N_SITES)
    counts = counts_from_tallies(chains.tallies.reshape(-1, fcc.N_SHELLS, 6))
    sro_values = warren_cowley(counts)
    pooled_mean = sro_values.mean(axis=0)
    inside = np.all(np.abs(sro_values - pooled_mean) <= sro_window, axis=1)
    candidates = np.flatnonzero(inside) if sro == "narrow" else np.arange(len(pool))
    if len(candidates) < n_structures:
        raise ComputationError(
            f"only {len(candidates)} snapshots qualify for the {sro} set, need {n_structures}; "
            "run more chains or passes"
        )
    chosen = rng.choice(candidates, size=n_structures, replace=False)
    n_train = int(round(train_fraction * n_structures))
    info = {
        "pool_size": int(len(pool)),
        "pool_mean_sro": dict(zip(SRO_COLUMNS, np.round(pooled_mean, 6).tolist(), strict=True)),
        "narrow_fraction_of_pool": round(float(inside.mean()), 6),
        "chain_of_structure_counts": np.bincount(
            chosen // chains.snapshots.shape[1], minlength=chains.snapshots.shape[0]
        ).tolist(),
    }
    return AlloyBuild(pool[chosen].astype(np.uint8), n_train, info)


def _load_chains(path: Path) -> ChainResult | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return ChainResult(**{k: z[k] for k in ChainResult.__dataclass_fields__})


def _save_chains(path: Path, chains: ChainResult) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: getattr(chains, k) for k in ChainResult.__dataclass_fields__})
    write_bytes(path, buf.getvalue())


def build(temperature: int, sro: str, n_chains: int, n_passes: int, burn_in: int,
          interval: int, n_structures: int, train_fraction: float, sro_window: float,
          seed: int, anneal_from: float = 0.0, anneal_passes: int = 0,
          progress=None, chain_dir=None) -> AlloyBuild:
    """Run the chains for `temperature` and select a set.

    The narrow and wide sets of one temperature share their chains (same seed), as in
    the paper, where both are drawn from the same Monte Carlo runs: with `chain_dir`, the
    finished chains are kept there (keyed by every chain parameter) and the second set
    reuses them.  progress: see dismai.progress (stage "Monte Carlo passes").
    """
    key = (temperature, n_chains, n_passes, burn_in, interval, seed, anneal_from, anneal_passes)
    path = None
    chains = None
    if chain_dir is not None:
        tag = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
        path = Path(chain_dir) / f"chains-{temperature}K-seed{seed}-{tag}.npz"
        chains = _load_chains(path)
    with reporter(progress) as report:
        if chains is None:
            chains = run_chains(temperature, n_chains, n_passes, burn_in, interval, seed,
                                progress=report, anneal_from=anneal_from,
                                anneal_passes=anneal_passes)
            if path is not None:
                _save_chains(path, chains)
        else:
            report("Monte Carlo passes", n_passes, n_passes)
    sro_code = {"narrow": 1, "wide": 2}[sro]
    rng = np.random.default_rng([seed, int(temperature), sro_code])
    result = select(chains, sro, n_structures, train_fraction, sro_window, rng)
    e_pass = chains.trace / fcc.N_SITES
    result.info.update(
        acceptance=np.round(chains.acceptance, 6).tolist(),
        chain_mean_pair_energy_per_atom=np.round(e_pass[:, burn_in:].mean(axis=1), 6).tolist(),
        equilibration_passes=equilibration_passes(chains.trace, burn_in),
    )
    return result
