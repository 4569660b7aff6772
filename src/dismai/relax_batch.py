"""Batched relaxation: many structures of one template relaxed together, one energy-model
call per step for all of them (converged ones drop out).

Why: a universal potential pays a large fixed cost per call (graph building, kernel
launches); batching many structures into one call amortises it, on a CPU and even more on a
GPU.  The optimiser is ASE's FIRE (the same update rule and default parameters, written
for a stack of structures: every scalar of FIRE - time step, mixing coefficient, step
counter - is per structure), and the accounting is `dismai.relax.relax_atoms`'s: a
structure converges when its largest per-atom force is below `fmax`, stops after
`max_steps` optimiser steps, and counts as failed above `fail_fmax`, on non-finite values
or when an atom moved more than `max_displacement` Å.  `tests/test_relax_batch.py` checks
it against the per-structure engine.
"""

from __future__ import annotations

import time

import numpy as np

from dismai.relax import CONVERGED, _one_line
from dismai.structures import StructureSet

__all__ = ["fire_relax_batch", "FIRE_DEFAULTS"]

#: ASE's FIRE defaults
FIRE_DEFAULTS = {"dt": 0.1, "maxstep": 0.2, "dtmax": 1.0, "Nmin": 5, "finc": 1.1,
                 "fdec": 0.5, "astart": 0.1, "fa": 0.99}


def _fmax(forces: np.ndarray) -> np.ndarray:
    """(B,) largest per-atom force norm."""
    return np.sqrt((forces ** 2).sum(-1).max(-1))


def fire_relax_batch(structures: StructureSet, model, *, fmax: float = 0.05,
                     fail_fmax: float = 0.051, max_steps: int = 1000,
                     max_displacement: float | None = 10.0,
                     ) -> tuple[list[dict], np.ndarray]:
    """Relax every structure (positions only) with FIRE, all in one `model.energy_forces`
    call per step.  Returns (one record per structure with `dismai.relax.RESULT_COLUMNS`,
    energies per atom; (B, N, 3) final Cartesian positions, NaN where not converged)."""
    p = FIRE_DEFAULTS
    t0 = time.perf_counter()
    b, n = len(structures), structures.n_atoms
    x0 = np.asarray(structures.cart(), dtype=np.float64)
    x = x0.copy()
    vel = np.zeros_like(x)
    dt = np.full(b, p["dt"])
    a = np.full(b, p["astart"])
    nsteps_fire = np.zeros(b, dtype=np.int64)  # FIRE's own counter (steps downhill)
    steps = np.zeros(b, dtype=np.int64)
    started = np.zeros(b, dtype=bool)  # FIRE's first step has no velocity yet
    records: list[dict | None] = [None] * b
    out = np.full_like(x, np.nan)
    e_initial = np.full(b, np.nan)
    inv = np.linalg.inv(structures.lattice)
    active = np.arange(b)
    while len(active):
        frac = x[active] @ inv
        try:
            e, f = model.energy_forces(structures[active].with_frac(frac))
        except Exception as exc:  # the backend failed for the whole call: all of them
            msg = _one_line(exc)
            for i in active:
                records[i] = _record("error", steps[i], e_initial[i], None, None, msg)
            break
        e = np.asarray(e, dtype=np.float64) / n
        f = np.asarray(f, dtype=np.float64)
        first = np.isnan(e_initial[active])
        e_initial[active[first]] = e[first]
        fm = _fmax(f)
        moved = np.sqrt(((x[active] - x0[active]) ** 2).sum(-1)).max(-1)
        bad = ~np.isfinite(e) | ~np.isfinite(fm) | ~np.isfinite(x[active]).all((1, 2))
        blown = np.zeros(len(active), dtype=bool) if max_displacement is None else \
            moved > max_displacement
        done = (fm < fmax) | (steps[active] >= max_steps) | bad | blown
        for k in np.flatnonzero(done):
            i = active[k]
            if bad[k]:
                records[i] = _record("blowup", steps[i], e_initial[i], None, None,
                                     "non-finite energy, forces or positions")
            elif blown[k]:
                records[i] = _record("blowup", steps[i], e_initial[i], None, None,
                                     f"an atom moved {moved[k]:.1f} Å (> {max_displacement} Å)")
            elif fm[k] > fail_fmax:
                records[i] = _record("not_converged", steps[i], e_initial[i], e[k], fm[k],
                                     f"max force {fm[k]:.4g} eV/Å after {steps[i]} steps")
            else:
                records[i] = _record(CONVERGED, steps[i], e_initial[i], e[k], fm[k], "")
                out[i] = x[i]
        keep = ~done
        active, f = active[keep], f[keep]
        if not len(active):
            break
        _fire_step(x, vel, dt, a, nsteps_fire, started, active, f, p)
        steps[active] += 1
    seconds = round((time.perf_counter() - t0) / max(b, 1), 4)
    for r in records:
        r["seconds"] = seconds  # the batch's wall time, shared equally
    return [{"index": i, **r} for i, r in enumerate(records)], out


def _fire_step(x, vel, dt, a, nsteps, started, active, f, p) -> None:
    """One ASE FIRE step for the structures `active`, in place (f: their forces)."""
    v = vel[active]
    vf = (f * v).sum((1, 2))
    f2 = (f * f).sum((1, 2))
    v2 = (v * v).sum((1, 2))
    was = started[active]
    up = was & (vf > 0.0)
    down = was & ~(vf > 0.0)
    scale = np.where(up, a[active] * np.sqrt(v2) / np.sqrt(np.where(f2 > 0, f2, 1.0)), 0.0)
    mix = np.where(up, 1.0 - a[active], 1.0)
    v = mix[:, None, None] * v + scale[:, None, None] * f
    grow = up & (nsteps[active] > p["Nmin"])
    dt[active] = np.where(grow, np.minimum(dt[active] * p["finc"], p["dtmax"]), dt[active])
    a[active] = np.where(grow, a[active] * p["fa"], a[active])
    nsteps[active] = np.where(up, nsteps[active] + 1, nsteps[active])
    v[down] = 0.0
    a[active] = np.where(down, p["astart"], a[active])
    dt[active] = np.where(down, dt[active] * p["fdec"], dt[active])
    nsteps[active] = np.where(down, 0, nsteps[active])
    started[active] = True
    v = v + dt[active][:, None, None] * f
    dr = dt[active][:, None, None] * v
    norm = np.sqrt((dr * dr).sum((1, 2)))
    dr = np.where((norm > p["maxstep"])[:, None, None],
                  p["maxstep"] * dr / np.where(norm > 0, norm, 1.0)[:, None, None], dr)
    vel[active] = v
    x[active] = x[active] + dr


def _record(status, steps, e_initial, e_final, fmax_final, message) -> dict:
    def num(v):
        return None if v is None or not np.isfinite(v) else float(v)

    return {"status": status, "steps": int(steps), "e_initial": num(e_initial),
            "e_final": num(e_final), "fmax_final": num(fmax_final), "message": message}
