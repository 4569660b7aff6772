"""Energies and forces of a teacher potential along relaxations: the training data of a
distilled potential.

One job = one structure: relax it with the teacher (ASE FIRE, the interface recipe's
settings) recording every frame the optimiser evaluates, then evaluate `rattles` copies
of the minimum displaced by Gaussian noise of each sigma.  Each job is written atomically
to its own ``.npz``, so a killed run loses at most the job in flight and a rerun continues.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dismai.fileio import write_bytes
from dismai.structures import StructureSet

__all__ = ["Frames", "teacher_job", "job_path", "run_teacher_jobs", "load_frames",
           "job_minimum", "closest_pairs"]


@dataclass
class Frames:
    """Stacked frames of one template: positions (T, N, 3) Å, energy (T,) eV total,
    forces (T, N, 3) eV/Å, and per frame the job it came from and its kind
    (0 = relaxation step, 1 = rattled minimum)."""

    lattice: np.ndarray
    species: tuple
    positions: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    job: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.energy)

    def subset(self, mask) -> Frames:
        return Frames(self.lattice, self.species, self.positions[mask], self.energy[mask],
                      self.forces[mask], self.job[mask], self.kind[mask])


def teacher_job(atoms, calc, *, fmax: float = 0.05, max_steps: int = 1000,
                rattle_sigmas=(), rattle_seed: int = 0) -> dict:
    """Relax `atoms` in place with FIRE under `calc`, recording every evaluated frame, then
    evaluate rattled copies of the minimum.  Returns arrays ready for np.savez."""
    from ase.optimize import FIRE

    pos, ene, frc = [], [], []
    atoms.calc = calc

    def record():
        pos.append(atoms.positions.copy())
        ene.append(atoms.get_potential_energy())  # cached: no extra teacher call
        frc.append(atoms.get_forces().copy())

    t0 = time.process_time()
    opt = FIRE(atoms, logfile=None)
    opt.attach(record)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    n_relax = len(ene)
    minimum = atoms.positions.copy()
    rng = np.random.default_rng(int(rattle_seed))
    for sigma in rattle_sigmas:
        atoms.positions = minimum + rng.normal(0.0, float(sigma), minimum.shape)
        record()
    atoms.positions = minimum
    atoms.calc = None
    kind = np.r_[np.zeros(n_relax, np.int8), np.ones(len(rattle_sigmas), np.int8)]
    return {"positions": np.asarray(pos), "energy": np.asarray(ene),
            "forces": np.asarray(frc), "kind": kind, "minimum": minimum,
            "converged": np.asarray(converged), "steps": np.asarray(opt.nsteps),
            "cpu_seconds": np.asarray(time.process_time() - t0)}


def job_path(out_dir, tag: str, index: int) -> Path:
    """Where the job of structure `index` of set `tag` is stored."""
    return Path(out_dir) / f"{tag}-{index:05d}.npz"


def run_teacher_jobs(structures: StructureSet, teacher, out_dir, tag: str, *,
                     rattle_sigmas=(), seed: int = 0, fmax: float = 0.05,
                     max_steps: int = 1000, progress=None) -> list[Path]:
    """Run `teacher_job` on every structure not yet done; return every job file.

    The job of structure k is ``out_dir/{tag}-{k:05d}.npz``; its rattles use the seed
    ``(seed, k)``.  Existing files are kept, so the call resumes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    calc = None
    atoms_list = structures.to_atoms()
    paths = []
    for k, atoms in enumerate(atoms_list):
        path = job_path(out_dir, tag, k)
        paths.append(path)
        if path.exists():
            continue
        if calc is None:
            calc = teacher.calculator()
        res = teacher_job(atoms, calc, fmax=fmax, max_steps=max_steps,
                          rattle_sigmas=rattle_sigmas,
                          rattle_seed=int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
        buf = io.BytesIO()
        np.savez(buf, **res)
        write_bytes(path, buf.getvalue())
        if progress is not None:
            progress(tag, k + 1, len(atoms_list))
    return paths


def load_frames(paths, lattice, species) -> Frames:
    """Stack the frames of job files (job index = position in `paths`)."""
    pos, ene, frc, job, kind = [], [], [], [], []
    for j, path in enumerate(paths):
        with np.load(path) as z:
            pos.append(z["positions"])
            ene.append(z["energy"])
            frc.append(z["forces"])
            kind.append(z["kind"])
            job.append(np.full(len(z["energy"]), j, dtype=np.int32))
    return Frames(np.asarray(lattice, dtype=np.float64), tuple(species),
                  np.concatenate(pos), np.concatenate(ene), np.concatenate(frc),
                  np.concatenate(job), np.concatenate(kind))


def job_minimum(path) -> tuple[bool, np.ndarray, float, int]:
    """(converged, Cartesian minimum (N, 3), its energy per atom in eV, FIRE steps) of one
    job: the teacher's own relaxation result."""
    with np.load(path) as z:
        relax = z["kind"] == 0
        n = z["positions"].shape[1]
        return (bool(z["converged"]), z["minimum"], float(z["energy"][relax][-1]) / n,
                int(z["steps"]))


def closest_pairs(frames: Frames, cutoff: float = 4.0, batch: int = 16) -> dict[str, float]:
    """The closest distance (Å) of each species pair ('A-B', A <= B) over all frames, for
    pairs seen within `cutoff`: where the training data end (a distilled potential's
    `pair_floor`)."""
    import torch

    from dismai.energy.distilled import radius_edges

    species = sorted(set(frames.species))
    code = torch.tensor([species.index(s) for s in frames.species])
    n_sp = len(species)
    lattice = torch.as_tensor(frames.lattice, dtype=torch.float64)
    best = torch.full((n_sp * n_sp,), float("inf"), dtype=torch.float64)
    for k in range(0, len(frames), batch):
        cart = torch.as_tensor(frames.positions[k:k + batch], dtype=torch.float64)
        src, tgt, img = radius_edges(cart, lattice, cutoff)
        flat = cart.reshape(-1, 3)
        r = (flat[tgt] - flat[src] - img @ lattice).norm(dim=-1)
        n = cart.shape[1]
        a, b = code[src % n], code[tgt % n]
        pair = torch.minimum(a, b) * n_sp + torch.maximum(a, b)
        best.scatter_reduce_(0, pair, r, reduce="amin")
    return {f"{species[i]}-{species[j]}": float(best[i * n_sp + j])
            for i in range(n_sp) for j in range(i, n_sp) if np.isfinite(float(best[i * n_sp + j]))}
