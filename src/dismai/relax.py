"""Relax many structures (positions only, fixed cell), resumably and in parallel.

This is the benchmark's relaxation step (§6.2 / 7.1): every
structure is relaxed until the largest per-atom force is below `fmax` (0.05 eV/Å) or
`max_steps` (1000) optimiser iterations are done.  A structure **fails** if its final
max force exceeds `fail_fmax` (0.051 eV/Å, the reference's 0.05 + 0.001), if the run
blew up (NaN/inf energies or forces, an atom displaced more than `max_displacement`),
or if the backend raised.  Failures are recorded and skipped; the run continues.

Default optimiser: 'cg', ASE's SciPy Polak-Ribière conjugate gradient with the
reference's settings (alpha = 70, precision-loss warnings ignored), so step counts are
comparable with the paper.  'fire', 'lbfgs' and 'bfgs' (ASE) and, for sw-vink only,
'lammps-cg' / 'lammps-fire' (LAMMPS `minimize` with `min_modify norm max`, fastest)
are alternatives.  'fire-batch' is the same FIRE run on batches of structures in this
process, one energy-model call per step for the whole batch (`dismai.relax_batch`; the same
trajectories, tested): for models whose cost per call dominates, and for GPUs.
'surrogate' relaxes on a cheap `surrogate` energy model first, then finishes with FIRE on
the model (`dismai.relax_surrogate`): a minimum of the model, in fewer of its calls, though
not always the one FIRE alone finds.

Persistence (when `out_dir` is given), designed so a `kill -9` loses nothing finished:
- `relax_meta.json`: settings and an input fingerprint (written atomically); a resume
  with different input or settings is refused instead of silently mixing runs;
- `coords/NNNNNN.npy`: relaxed Cartesian positions of each converged structure, written
  atomically *before* its log line;
- `results.jsonl`: one JSON object per finished structure (converged or failed), appended
  and fsync'ed per structure.  On restart, indices already logged are skipped; an
  unparsable (truncated) last line is ignored and terminated before new lines.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dismai.errors import ComputationError, InputError
from dismai.fileio import atomic_path, write_json
from dismai.progress import reporter
from dismai.structures import StructureSet

__all__ = ["relax_structures", "relax_atoms", "RelaxRun", "RESULT_COLUMNS", "OPTIMIZERS"]

RESULT_COLUMNS = ("index", "status", "steps", "e_initial", "e_final", "fmax_final",
                  "seconds", "message")
OPTIMIZERS = ("cg", "fire", "fire-batch", "lbfgs", "bfgs", "surrogate", "lammps-cg",
              "lammps-fire")
#: structures per energy-model call with optimizer "fire-batch" (dismai.relax_batch)
BATCH_SIZE = 32
CONVERGED = "converged"
_META_VERSION = 1


class _BlowUp(RuntimeError):
    """The relaxation produced non-finite numbers or atoms ran away."""


# --------------------------------------------------------------------------- one structure


def _max_force(forces: np.ndarray) -> float:
    return float(np.sqrt((np.asarray(forces) ** 2).sum(axis=1).max()))


def _guarded(inner):
    """Wrap a calculator so NaN/inf positions, energies or forces raise _BlowUp at once.

    Checking at every evaluation (including inside line searches) keeps NaNs from being
    fed back into the backend, where they can hang neighbour-list code.
    """
    from ase.calculators.calculator import Calculator, all_changes

    class _Guard(Calculator):
        implemented_properties = ["energy", "free_energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            at = self.atoms
            if not np.all(np.isfinite(at.positions)):
                raise _BlowUp("non-finite positions")
            e = inner.get_potential_energy(at)
            f = np.asarray(inner.get_forces(at), dtype=np.float64)
            if not (np.isfinite(e) and np.all(np.isfinite(f))):
                raise _BlowUp("non-finite energy or forces")
            self.results = {"energy": float(e), "free_energy": float(e), "forces": f}

    return _Guard()


def _make_optimizer(name: str, atoms, surrogate_calc=None):
    from ase.optimize import BFGS, FIRE, LBFGS
    from ase.optimize.sciopt import SciPyFminCG

    if name == "cg":
        return SciPyFminCG(atoms, logfile=None, alpha=70.0)
    if name in ("fire", "fire-batch"):  # fire-batch: the same FIRE, batched
        return FIRE(atoms, logfile=None)
    if name == "lbfgs":
        return LBFGS(atoms, logfile=None)
    if name == "bfgs":
        return BFGS(atoms, logfile=None)
    if name == "surrogate":
        from dismai.relax_surrogate import SurrogateOptimizer

        if surrogate_calc is None:
            raise InputError("optimizer 'surrogate' needs a surrogate energy model")
        return SurrogateOptimizer(atoms, surrogate_calc)
    raise InputError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def relax_atoms(atoms, calc, *, model=None, fmax: float = 0.05, fail_fmax: float = 0.051,
                max_steps: int = 1000, optimizer: str = "cg",
                max_displacement: float | None = 10.0,
                surrogate_calc=None) -> tuple[dict, np.ndarray | None]:
    """Relax one ase.Atoms in place (positions only). Never raises for backend problems.

    surrogate_calc: the ASE calculator optimizer 'surrogate' steps on.

    Returns (record, final positions or None).  `record` has RESULT_COLUMNS except
    'index'; energies are per atom.
    """
    t0 = time.perf_counter()
    n = len(atoms)
    x0 = atoms.positions.copy()
    rec = {"status": "error", "steps": 0, "e_initial": None, "e_final": None,
           "fmax_final": None, "message": ""}
    try:
        atoms.calc = _guarded(calc)
        rec["e_initial"] = atoms.get_potential_energy() / n
        msg = ""
        if optimizer.startswith("lammps-"):
            if model is None or not hasattr(model, "minimize"):
                raise InputError(f"optimizer {optimizer!r} needs the sw-vink model")
            pos, _, _, steps = model.minimize(atoms.cell.array, x0, fmax=fmax,
                                              max_steps=max_steps,
                                              style=optimizer.split("-", 1)[1])
            atoms.positions = pos
        else:
            from ase.optimize.sciopt import OptimizerConvergenceError

            opt = _make_optimizer(optimizer, atoms, surrogate_calc)

            def watch():
                if max_displacement is not None:
                    d = np.sqrt(((atoms.positions - x0) ** 2).sum(axis=1)).max()
                    if d > max_displacement:
                        raise _BlowUp(f"an atom moved {d:.1f} Å (> {max_displacement} Å)")

            opt.attach(watch)
            try:
                opt.run(fmax=fmax, steps=max_steps)
            except OptimizerConvergenceError:
                msg = "CG stopped on precision loss"  # reference: printed and ignored
            steps = opt.nsteps
        rec["steps"] = int(steps)
        if not np.all(np.isfinite(atoms.positions)):
            raise _BlowUp("non-finite positions")
        if max_displacement is not None:
            d = np.sqrt(((atoms.positions - x0) ** 2).sum(axis=1)).max()
            if d > max_displacement:
                raise _BlowUp(f"an atom moved {d:.1f} Å (> {max_displacement} Å)")
        e = atoms.get_potential_energy()
        fm = _max_force(atoms.get_forces())
        rec["e_final"] = e / n
        rec["fmax_final"] = fm
        if fm > fail_fmax:
            rec["status"] = "not_converged"
            rec["message"] = msg or f"max force {fm:.4g} eV/Å after {steps} steps"
        else:
            rec["status"] = CONVERGED
            rec["message"] = msg
        positions = atoms.positions.copy() if rec["status"] == CONVERGED else None
    except _BlowUp as exc:
        rec["status"] = "blowup"
        rec["message"] = str(exc)
        positions = None
    except Exception as exc:  # backend failures must not stop the run
        rec["status"] = "error"
        rec["message"] = _one_line(exc)
        positions = None
    finally:
        atoms.calc = None
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec, positions


# --------------------------------------------------------------------------- workers

class _Worker:
    """One relaxation worker: the model, the shared cell and a calculator built on first use.

    The in-process path owns its own instance, so two relaxations in one process never
    share state; pool workers keep theirs in ``_POOL_WORKER``, which is private to each
    spawned process.
    """

    def __init__(self, model, lattice, species, settings, threads: int | None = None,
                 surrogate=None):
        if threads:
            # read by torch/OpenMP when they are first imported (by the model, later on)
            os.environ["OMP_NUM_THREADS"] = str(threads)
            torch = sys.modules.get("torch")
            if torch is not None:
                torch.set_num_threads(threads)
        self.model, self.lattice, self.species = model, lattice, species
        self.settings, self.calc = settings, None
        self.surrogate, self.surrogate_calc = surrogate, None

    def work(self, index: int, positions: np.ndarray):
        from ase import Atoms

        if self.calc is None:
            try:
                self.calc = self.model.calculator()
                if self.surrogate is not None:
                    self.surrogate_calc = self.surrogate.calculator()
            except Exception as exc:
                rec = {"status": "error", "steps": 0, "e_initial": None, "e_final": None,
                       "fmax_final": None, "seconds": 0.0,
                       "message": f"could not build calculator: {_one_line(exc)}"}
                return index, rec, None
        atoms = Atoms(symbols=list(self.species), positions=positions, cell=self.lattice,
                      pbc=True)
        rec, pos = relax_atoms(atoms, self.calc, model=self.model,
                               surrogate_calc=self.surrogate_calc, **self.settings)
        return index, rec, pos

    def close(self) -> None:
        session = getattr(self.calc, "session", None)
        if session is not None:
            session.close()
        self.calc = None


_POOL_WORKER: list = []  # the worker of a spawned pool process (never used in-process)


def _init_worker(model, lattice, species, settings, threads: int | None,
                 surrogate=None) -> None:
    _POOL_WORKER[:] = [_Worker(model, lattice, species, settings, threads, surrogate)]


def _work(index: int, positions: np.ndarray):
    return _POOL_WORKER[0].work(index, positions)


# --------------------------------------------------------------------------- persistence


def _fingerprint(structures: StructureSet) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(structures.lattice).tobytes())
    h.update("|".join(structures.species).encode())
    h.update(np.ascontiguousarray(structures.frac).tobytes())
    return h.hexdigest()


def _clean(v):
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


class _Store:
    """Append-only results log plus per-structure coordinate files."""

    def __init__(self, out_dir: Path, meta: dict, n_atoms: int):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.coords = self.dir / "coords"
        self.coords.mkdir(exist_ok=True)
        self.log = self.dir / "results.jsonl"
        self.n_atoms = n_atoms
        meta_path = self.dir / "relax_meta.json"
        if meta_path.is_file():
            old = json.loads(meta_path.read_text())
            diff = [k for k in meta if old.get(k) != meta[k]]
            if diff:
                raise InputError(
                    f"{self.dir}: holds a relaxation with different {', '.join(diff)}; "
                    "use a new output folder"
                )
        else:
            write_json(meta_path, meta)

    def coord_path(self, index: int) -> Path:
        return self.coords / f"{index:06d}.npy"

    def load(self) -> dict[int, tuple[dict, np.ndarray | None]]:
        """Finished records by index (last one wins); converged ones need their coords."""
        done: dict[int, tuple[dict, np.ndarray | None]] = {}
        if not self.log.is_file():
            return done
        for line in self.log.read_text(errors="replace").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                idx = int(rec["index"])
                status = str(rec["status"])
            except (ValueError, KeyError, TypeError):
                continue  # a truncated line from a killed run
            pos = None
            if status == CONVERGED:
                try:
                    pos = np.load(self.coord_path(idx))
                except (OSError, ValueError):
                    continue
                if pos.shape != (self.n_atoms, 3):
                    continue
            done[idx] = (rec, pos)
        return done

    def append(self, rec: dict, positions: np.ndarray | None) -> None:
        if positions is not None:
            with atomic_path(self.coord_path(rec["index"]), suffix=".npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(positions, dtype=np.float64))
        line = json.dumps({k: _clean(rec.get(k)) for k in RESULT_COLUMNS}) + "\n"
        with open(self.log, "ab+") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # terminate a truncated line first
                    fh.write(b"\n")
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())


# --------------------------------------------------------------------------- driver


@dataclass
class RelaxRun:
    """Outcome of relax_structures.

    structures: converged structures in input order, properties `input_index`,
        `energy_per_atom`, `energy_initial_per_atom`, `relax_steps`, `fmax` (plus the
        input's own properties).
    table: one record per input structure (RESULT_COLUMNS), sorted by index.
    """

    structures: StructureSet
    table: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[int]:
        return [r["index"] for r in self.table if r["status"] != CONVERGED]

    @property
    def percent_failed(self) -> float:
        return 100.0 * len(self.failed) / max(len(self.table), 1)

    def write_table_csv(self, path) -> None:
        """The per-structure table as CSV (atomic)."""
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(RESULT_COLUMNS))
        w.writeheader()
        for r in self.table:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in RESULT_COLUMNS})
        with atomic_path(path, suffix=".csv") as tmp:
            tmp.write_text(buf.getvalue())


def relax_structures(
    structures: StructureSet,
    model,
    out_dir=None,
    *,
    fmax: float = 0.05,
    fail_fmax: float | None = None,
    max_steps: int = 1000,
    optimizer: str = "cg",
    max_displacement: float | None = 10.0,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    model_kwargs: dict | None = None,
    surrogate=None,
    progress=True,
    on_result: Callable[[dict], None] | None = None,
) -> RelaxRun:
    """Relax every structure; resumable when `out_dir` is given.

    model: an EnergyModel or a registered name ('sw-vink', 'chgnet', 'sevennet').
    fail_fmax: failure threshold on the final max force (default fmax + 0.001).
    surrogate: the EnergyModel (or registered name) optimizer 'surrogate' steps on; the
        minima are still `model`'s.
    n_workers: processes (default: CPU count); 1 runs in this process.  Workers are
        spawned (not forked: torch and MPI dislike fork) and each builds its calculator
        once.  Results do not depend on n_workers.
    progress: see :mod:`dismai.progress` (stage "relaxation", field failed).
    on_result: called with each new record after it is safely on disk.
    """
    from dismai.energy.base import get_energy_model

    if optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if isinstance(model, str):
        model = get_energy_model(model, **(model_kwargs or {}))
    if (optimizer == "surrogate") != (surrogate is not None):
        raise InputError("a surrogate energy model goes with optimizer 'surrogate', and only "
                         "with it")
    if isinstance(surrogate, str):
        surrogate = get_energy_model(surrogate)
    if optimizer.startswith("lammps-"):
        check = getattr(model, "check_minimize", None)
        if check is None:
            raise InputError(f"optimizer {optimizer!r} is only available for sw-vink")
        check()
    fail_fmax = fmax + 0.001 if fail_fmax is None else float(fail_fmax)
    settings = dict(fmax=float(fmax), fail_fmax=fail_fmax, max_steps=int(max_steps),
                    optimizer=optimizer, max_displacement=max_displacement)
    m, n = len(structures), structures.n_atoms
    cart = structures.cart()

    store = None
    done: dict[int, tuple[dict, np.ndarray | None]] = {}
    if out_dir is not None:
        meta = {"version": _META_VERSION, "n_structures": m, "n_atoms": n,
                "model": getattr(model, "name", type(model).__name__),
                "model_variant": str(getattr(model, "model_name", "")),
                "input_sha256": _fingerprint(structures), **settings}
        if surrogate is not None:  # other surrogate weights take other steps
            meta["surrogate"] = getattr(surrogate, "name", type(surrogate).__name__)
            meta["surrogate_variant"] = str(getattr(surrogate, "model_name", ""))
        store = _Store(Path(out_dir), meta, n)
        done = {i: v for i, v in store.load().items() if 0 <= i < m}

    def record(index: int, rec: dict, pos: np.ndarray | None) -> None:
        rec = {"index": int(index), **rec}
        if store is not None:
            store.append(rec, pos)
        done[index] = (rec, pos)
        if on_result is not None:
            on_result(rec)

    pending = [i for i in range(m) if i not in done]
    if n_workers is None:
        n_workers = os.cpu_count() or 1
    n_workers = max(1, int(n_workers))
    n_workers = min(n_workers, max(len(pending), 1))
    if threads_per_worker is None and n_workers > 1:
        threads_per_worker = max(1, (os.cpu_count() or 1) // n_workers)

    n_failed = sum(1 for r, _ in done.values() if r["status"] != CONVERGED)

    with reporter(progress) as report:
        report("relaxation", m - len(pending), m, failed=n_failed)
        n_done = m - len(pending)

        def advance(rec: dict) -> None:
            nonlocal n_failed, n_done
            n_failed += rec["status"] != CONVERGED
            n_done += 1
            report("relaxation", n_done, m, failed=n_failed)

        if optimizer == "fire-batch":  # in this process, a batch per model call
            from dismai.relax_batch import fire_relax_batch

            for start in range(0, len(pending), BATCH_SIZE):
                chunk = pending[start:start + BATCH_SIZE]
                recs, pos = fire_relax_batch(
                    structures[np.asarray(chunk)], model, fmax=fmax, fail_fmax=fail_fmax,
                    max_steps=max_steps, max_displacement=max_displacement)
                for k, (i, rec) in enumerate(zip(chunk, recs, strict=True)):
                    rec = {key: v for key, v in rec.items() if key != "index"}
                    record(i, rec, pos[k] if rec["status"] == CONVERGED else None)
                    advance(rec)
        elif n_workers == 1:
            worker = _Worker(model, structures.lattice, structures.species, settings,
                             surrogate=surrogate)
            try:
                for i in pending:
                    _, rec, pos = worker.work(i, cart[i])
                    record(i, rec, pos)
                    advance(rec)
            finally:
                worker.close()
        else:
            _run_pool(pending, cart, structures, model, settings, n_workers,
                      threads_per_worker, record, advance, surrogate)

    return _collect(structures, done)


def _run_pool(pending: Sequence[int], cart, structures, model, settings, n_workers,
              threads, record, advance, surrogate=None) -> None:
    """Process pool with crash isolation: a worker that dies takes no innocent with it.

    When the pool breaks (a worker segfaulted or was OOM-killed), every structure that
    was in flight is retried alone in a fresh pool; one that breaks the pool while
    running alone is recorded as an error and the run goes on.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = list(pending)
    suspects: list[int] = []

    def new_pool():
        return ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx,
                                   initializer=_init_worker,
                                   initargs=(model, structures.lattice, structures.species,
                                             settings, threads, surrogate))

    pool = new_pool()
    inflight: dict = {}
    isolated = False
    succeeded, lone_deaths = False, 0  # workers that always die are not a structure's fault
    try:
        while queue or suspects or inflight:
            if suspects:
                if not inflight:
                    i = suspects.pop(0)
                    inflight[pool.submit(_work, i, cart[i])] = i
                    isolated = True
            else:
                isolated = False
                while queue and len(inflight) < 2 * n_workers:
                    i = queue.pop(0)
                    inflight[pool.submit(_work, i, cart[i])] = i
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            lost: list[int] = []
            for fut in finished:
                i = inflight.pop(fut)
                try:
                    _, rec, pos = fut.result()
                except BrokenProcessPool:
                    lost.append(i)
                    continue
                record(i, rec, pos)
                advance(rec)
                succeeded = True
            if not lost:
                continue
            lost += list(inflight.values())  # everything still in flight died too
            inflight.clear()
            pool.shutdown(wait=False, cancel_futures=True)
            if isolated and not succeeded:
                lone_deaths += 1
                if lone_deaths >= 3:
                    raise ComputationError(
                        "relaxation worker processes die before finishing any structure: if "
                        "you call dismai from a script, put the call under `if __name__ == "
                        "'__main__':` (workers are spawned and re-import the script); "
                        "otherwise run with workers=1 or --debug to see why")
            for i in sorted(set(lost)):
                if isolated:
                    rec = {"status": "error", "steps": 0, "e_initial": None,
                           "e_final": None, "fmax_final": None, "seconds": 0.0,
                           "message": "worker process died (crash or out of memory)"}
                    record(i, rec, None)
                    advance(rec)
                else:
                    suspects.append(i)
            pool = new_pool()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _collect(structures: StructureSet, done: dict) -> RelaxRun:
    table = []
    ok_idx, ok_pos = [], []
    for i in sorted(done):
        rec, pos = done[i]
        table.append({k: rec.get(k) for k in RESULT_COLUMNS})
        if rec["status"] == CONVERGED and pos is not None:
            ok_idx.append(i)
            ok_pos.append(pos)
    inv = np.linalg.inv(structures.lattice)
    n = structures.n_atoms
    frac = (np.stack(ok_pos) @ inv) if ok_pos else np.zeros((0, n, 3))
    idx = np.asarray(ok_idx, dtype=np.int64)
    rows = {i: done[i][0] for i in ok_idx}

    def col(key, dtype=np.float64):
        return np.asarray([np.nan if rows[i][key] is None else rows[i][key] for i in ok_idx],
                          dtype=dtype)

    props = {k: v[idx] for k, v in structures.properties.items()}
    props.update(
        input_index=idx,
        energy_per_atom=col("e_final"),
        energy_initial_per_atom=col("e_initial"),
        relax_steps=col("steps", np.int64),
        fmax=col("fmax_final"),
    )
    out = StructureSet(structures.lattice, structures.species, frac, props)
    return RelaxRun(out, table)
