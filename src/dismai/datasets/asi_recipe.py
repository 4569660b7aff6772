"""Recipe for the amorphous-silicon dataset: melt-quench parents, cut blocks, fix counts, relax.

The paper (§2.1.2, §4.1.2) cut 1500 cubic blocks out of one 100,000-atom GAP-18 melt-quench
and relaxed them with SOAP-GAP.  Neither that parent nor the potential is available here,
so we follow the same recipe shape with the Vink et al. modified Stillinger-Weber potential
(`sw-vink`, LAMMPS): several smaller periodic parents quenched at fixed density, 256-atom
blocks whose edge is the parent edge scaled by (256/N_parent)^(1/3), cut at random
(overlapping) positions, atom counts fixed to 256 at the block boundaries using 2x2
density regions per face, then relaxed with the same potential.

Every stage is resumable: finished parents are saved in the work folder as they complete,
and the block relaxation uses the append-only relaxation store.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dismai.errors import ComputationError
from dismai.fileio import atomic_path
from dismai.progress import reporter, silent
from dismai.structures import StructureSet

RECIPE_DEFAULTS = {
    "n_parents": 8,
    "parent_atoms": 2048,
    "density": 2.28,  # g/cm^3, experimental a-Si (Custer et al. 1994)
    "t_melt": 3000.0,
    "t_end": 300.0,
    "melt_ps": 5.0,
    "quench_rate": 1e13,  # K/s (1e14 until recipe version 2: docs/datasets.md)
    "timestep_fs": 1.0,
    "n_structures": 1500,
    "n_candidates": 1600,  # blocks cut; the first n_structures that relax are kept
    "block_atoms": 256,
    "boundary_thickness": 2.5,  # Å, depth of the face regions used for density counting
    "min_insert_distance": 2.2,  # Å, no inserted atom closer than this to any atom
    "relax_fmax": 0.05,
    "relax_steps": 1000,
    "train_fraction": 0.8,
    "seed": 0,
}


def default_recipe() -> dict:
    return dict(RECIPE_DEFAULTS)


# --------------------------------------------------------------------------- parents
def _quench_parent(args) -> tuple[int, np.ndarray, float]:
    index, recipe, seed = args
    from dismai.energy.stillinger_weber import (
        cubic_cell_for_density,
        melt_quench,
        melt_quench_stages,
        random_positions,
    )

    n = recipe["parent_atoms"]
    cell = cubic_cell_for_density(n, recipe["density"])
    pos = random_positions(n, cell, seed=seed, min_dist=2.0)
    stages = melt_quench_stages(recipe["t_melt"], recipe["t_end"], recipe["quench_rate"],
                                melt_ps=recipe["melt_ps"])
    pos, energy, _ = melt_quench(cell, pos, stages, timestep_fs=recipe["timestep_fs"],
                                 seed=seed % 900_000_000 + 1, minimize_fmax=0.05)
    return index, pos @ np.linalg.inv(cell), energy / n


def make_parents(recipe: dict, work: Path, n_workers: int, progress=None) -> np.ndarray:
    """(n_parents, parent_atoms, 3) fractional coordinates; cached per parent in `work`.

    progress: see dismai.progress (stage "parent melt-quenches")."""
    work.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence([recipe["seed"], 256]).generate_state(recipe["n_parents"])
    paths = [work / f"parent_{i:03d}.npy" for i in range(recipe["n_parents"])]
    todo = [(i, recipe, int(seeds[i])) for i, p in enumerate(paths) if not p.is_file()]
    total = recipe["n_parents"]
    done = [total - len(todo)]
    report = progress or silent
    report("parent melt-quenches", done[0], total)

    def save(i, frac):
        with atomic_path(paths[i], suffix=".npy") as tmp:
            np.save(tmp, frac)
        done[0] += 1
        report("parent melt-quenches", done[0], total)

    if len(todo) == 1 or n_workers == 1:
        for args in todo:
            i, frac, _ = _quench_parent(args)
            save(i, frac)
    elif todo:
        # spawned, not forked: forking a process that holds MPI/LAMMPS or torch state hangs
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(n_workers, len(todo)), mp_context=ctx) as pool:
            for i, frac, _ in pool.map(_quench_parent, todo):
                save(i, frac)
    return np.stack([np.load(p) for p in paths])


# --------------------------------------------------------------------------- blocks
def _face_regions(frac: np.ndarray, depth: float) -> np.ndarray:
    """(N, 24) membership of each atom in the 2x2 regions of the six face slabs.

    `depth` is the slab thickness as a fraction of the block edge; region index is
    face (axis*2 + low/high) * 4 + quadrant in the two in-plane axes.
    """
    n = len(frac)
    member = np.zeros((n, 24), dtype=bool)
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        quadrant = (frac[:, others[0]] >= 0.5).astype(int) * 2 + (frac[:, others[1]] >= 0.5)
        for side, in_slab in enumerate((frac[:, axis] < depth, frac[:, axis] >= 1 - depth)):
            face = axis * 2 + side
            member[np.arange(n), face * 4 + quadrant] |= in_slab
    return member


def _region_point(region: int, depth: float, rng: np.random.Generator) -> np.ndarray:
    face, quadrant = divmod(region, 4)
    axis, side = divmod(face, 2)
    others = [a for a in range(3) if a != axis]
    p = np.empty(3)
    p[axis] = rng.uniform(0, depth) if side == 0 else rng.uniform(1 - depth, 1)
    p[others[0]] = rng.uniform(0.5, 1.0) if quadrant // 2 else rng.uniform(0.0, 0.5)
    p[others[1]] = rng.uniform(0.5, 1.0) if quadrant % 2 else rng.uniform(0.0, 0.5)
    return p


def _min_distance(frac: np.ndarray, point: np.ndarray, edge: float) -> float:
    d = frac - point
    d -= np.round(d)
    return float(np.sqrt(((d * edge) ** 2).sum(axis=1)).min()) if len(d) else np.inf


def fix_count(frac: np.ndarray, edge: float, target: int, depth_A: float, min_dist: float,
              rng: np.random.Generator, max_tries: int = 2000) -> np.ndarray:
    """Add atoms to the emptiest / remove atoms from the fullest boundary region until
    exactly `target` atoms remain (paper §4.1.2: 2x2 regions per face; re-counted after
    every change; ties broken at random)."""
    depth = depth_A / edge
    frac = frac.copy()
    while len(frac) != target:
        counts = _face_regions(frac, depth).sum(axis=0)
        if len(frac) < target:
            order = rng.permutation(24)
            order = order[np.argsort(counts[order], kind="stable")]
            for region in order:
                for _ in range(max_tries // 24 + 1):
                    p = _region_point(int(region), depth, rng)
                    if _min_distance(frac, p, edge) >= min_dist:
                        break
                else:
                    continue
                frac = np.vstack([frac, p])
                break
            else:
                raise ComputationError("no room to insert an atom at the block boundary")
        else:
            member = _face_regions(frac, depth)
            top = np.flatnonzero(counts == counts.max())
            region = int(rng.choice(top))
            victims = np.flatnonzero(member[:, region])
            frac = np.delete(frac, int(rng.choice(victims)), axis=0)
    return frac


def cut_block(parent_frac: np.ndarray, parent_edge: float, block_edge: float,
              origin: np.ndarray) -> np.ndarray:
    """Fractional (block) coordinates of the parent atoms inside the cube at `origin`
    (parent fractional coordinates; the parent is periodic, so blocks may wrap)."""
    rel = (parent_frac - origin) % 1.0 * parent_edge
    inside = np.all(rel < block_edge, axis=1)
    return rel[inside] / block_edge


@dataclass
class ASiBuild:
    frac: np.ndarray  # (n_structures, block_atoms, 3) float32, train rows first
    energy: np.ndarray  # (n_structures,) eV/atom after relaxation
    relax_steps: np.ndarray  # (n_structures,)
    block_edge: float
    n_train: int
    info: dict


PARENT_KEYS = ("n_parents", "parent_atoms", "density", "t_melt", "t_end", "melt_ps",
               "quench_rate", "timestep_fs", "seed")


def parent_key(recipe: dict) -> str:
    """A name for the parents a recipe needs: datasets cut from the same parents (a-si and
    its small variant a-si-64) share one folder of finished melt-quenches."""
    import hashlib

    values = repr(tuple(float(recipe[k]) for k in PARENT_KEYS)).encode()
    return f"a-si-parents-seed{recipe['seed']}-{hashlib.sha256(values).hexdigest()[:12]}"


def build(recipe: dict, work_dir, n_workers: int | None = None, progress=None,
          parent_dir=None) -> ASiBuild:
    """Run the whole recipe (resumable through `work_dir`; finished parents are kept in
    `parent_dir`, default work_dir/parents); progress: see dismai.progress (stages "parent
    melt-quenches" and "relaxation")."""
    n_workers = n_workers or os.cpu_count() or 1
    work = Path(work_dir)
    parents_at = Path(parent_dir) if parent_dir is not None else work / "parents"
    with reporter(progress) as report:
        return _build(recipe, work, parents_at, n_workers, report)


def _build(recipe: dict, work: Path, parent_dir: Path, n_workers: int, report) -> ASiBuild:
    from dismai.energy.stillinger_weber import cubic_cell_for_density
    from dismai.relax import relax_structures

    parents = make_parents(recipe, parent_dir, n_workers, progress=report)
    parent_edge = float(cubic_cell_for_density(recipe["parent_atoms"], recipe["density"])[0, 0])
    block_edge = parent_edge * (recipe["block_atoms"] / recipe["parent_atoms"]) ** (1 / 3)
    rng = np.random.default_rng([recipe["seed"], 257])
    blocks, n_raw, which = [], [], []
    for k in range(recipe["n_candidates"]):
        p = k % recipe["n_parents"]
        raw = cut_block(parents[p], parent_edge, block_edge, rng.random(3))
        n_raw.append(len(raw))
        blocks.append(fix_count(raw, block_edge, recipe["block_atoms"],
                                recipe["boundary_thickness"], recipe["min_insert_distance"], rng))
        which.append(p)
    lattice = np.eye(3) * block_edge
    candidates = StructureSet(lattice, ("Si",) * recipe["block_atoms"], np.stack(blocks))
    run = relax_structures(candidates, "sw-vink", out_dir=work / "relax",
                           fmax=recipe["relax_fmax"], max_steps=recipe["relax_steps"],
                           optimizer="lammps-cg", n_workers=n_workers, progress=report)
    table = {int(r["index"]): r for r in run.table}
    ok = [i for i in range(len(candidates)) if table[i]["status"] == "converged"]
    if len(ok) < recipe["n_structures"]:
        raise ComputationError(f"only {len(ok)} blocks relaxed, need {recipe['n_structures']}; "
                           "raise n_candidates")
    keep = ok[: recipe["n_structures"]]
    relaxed = run.structures
    pos_of = {int(i): j for j, i in enumerate(relaxed.properties["input_index"])}
    frac = np.stack([relaxed.frac[pos_of[i]] for i in keep]) % 1.0
    energy = np.array([table[i]["e_final"] for i in keep], dtype=np.float64)
    steps = np.array([table[i]["steps"] for i in keep], dtype=np.int64)
    n_raw = np.array(n_raw)
    info = {
        "parent_edge_A": round(parent_edge, 6),
        "block_edge_A": round(block_edge, 6),
        "raw_block_atoms_mean": round(float(n_raw.mean()), 3),
        "raw_block_atoms_range": [int(n_raw.min()), int(n_raw.max())],
        "candidates_failed_relaxation": int(len(candidates) - len(ok)),
        "blocks_per_parent": np.bincount(np.array(which)[keep],
                                         minlength=recipe["n_parents"]).tolist(),
    }
    n_train = int(round(recipe["train_fraction"] * recipe["n_structures"]))
    return ASiBuild(frac.astype(np.float32), energy, steps, block_edge, n_train, info)


def structures_from_arrays(frac: np.ndarray, block_edge: float,
                           energy: np.ndarray | None = None) -> StructureSet:
    props = {} if energy is None else {"energy_per_atom": np.asarray(energy, dtype=np.float64)}
    return StructureSet(np.eye(3) * block_edge, ("Si",) * frac.shape[1],
                        frac.astype(np.float64), props)
