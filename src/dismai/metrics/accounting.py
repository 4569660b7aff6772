"""Counting what survived: % failed and the relaxation bookkeeping, for every family.

``pct_failed`` is the one definition of "% failed" (100 - 100 n_final / n_generated, no
interval; docs/alloy-benchmark.md and docs/asi-benchmark.md).  The relaxed-structure
families (a-Si, interface) share the rest: step counts and convergence from relaxation
results, the default n_generated, and mean_relax_steps with its interval.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dismai.errors import InputError
from dismai.metrics.bootstrap import no_ci, pivotal_bootstrap_of_mean
from dismai.structures import StructureSet

__all__ = ["pct_failed", "pct_failed_metric", "relax_steps", "relax_accounting",
           "mean_relax_steps_metric", "checked_features", "energies_per_atom",
           "survivor_metrics", "delta_energy_mev"]


def pct_failed(n_final: int, n_generated: int) -> float:
    """100 - 100 n_final / n_generated (NaN when nothing was generated)."""
    return 100.0 - 100.0 * n_final / n_generated if n_generated else float("nan")


def pct_failed_metric(n_final: int, n_generated: int) -> dict:
    return no_ci(pct_failed(n_final, n_generated)).as_dict()


def energies_per_atom(structures: StructureSet) -> np.ndarray | None:
    """eV/atom from ``properties['energy_per_atom']``, else ``properties['energy'] / N``."""
    p = structures.properties
    if "energy_per_atom" in p:
        return np.asarray(p["energy_per_atom"], dtype=np.float64).reshape(len(structures))
    if "energy" in p:
        return (np.asarray(p["energy"], dtype=np.float64).reshape(len(structures))
                / structures.n_atoms)
    return None


def relax_steps(relax_results) -> tuple[np.ndarray, np.ndarray]:
    """(n_steps, converged) per relaxed structure from relaxation results.

    Accepts a :class:`dismai.relax.RelaxRun` (its ``table``: ``steps``, ``status``), a
    mapping of arrays (``n_steps`` or ``steps``; optional ``converged`` or ``status``), or a
    sequence of such mappings / objects.  Converged: True, or the strings 'converged',
    'yes', 'soft' (the reference's relax_results.csv); a missing flag means converged.
    """
    if hasattr(relax_results, "table") and not isinstance(relax_results, Mapping):
        relax_results = list(relax_results.table)
    if isinstance(relax_results, Mapping):
        steps = relax_results.get("n_steps", relax_results.get("steps"))
        steps = np.asarray(steps, dtype=np.float64).ravel()
        conv = relax_results.get("converged", relax_results.get("status"))
    else:
        rows = list(relax_results)

        def get(r, *keys):
            for k in keys:
                v = r.get(k) if isinstance(r, Mapping) else getattr(r, k, None)
                if v is not None:
                    return v
            return None

        steps = np.array([get(r, "n_steps", "steps") for r in rows], dtype=np.float64)
        conv = [get(r, "converged", "status") for r in rows]
        conv = None if all(c is None for c in conv) else [True if c is None else c
                                                           for c in conv]
    if conv is None:
        ok = np.ones(len(steps), dtype=bool)
    else:
        ok = np.array([_truthy(c) for c in np.asarray(conv, dtype=object).ravel()], dtype=bool)
    if len(ok) != len(steps):
        raise InputError("relax results: steps and converged flags differ in length")
    return steps, ok


def _truthy(c) -> bool:
    if isinstance(c, str):
        return c.strip().lower() in ("converged", "yes", "soft", "true", "1")
    return bool(c)


def checked_features(gen: StructureSet, features, compute, n_workers):
    """``features`` if given (one row per structure of gen, else InputError), otherwise
    ``compute(gen, n_workers)``."""
    feats = compute(gen, n_workers) if features is None else features
    if len(feats) != len(gen):
        raise InputError(f"features have {len(feats)} rows for {len(gen)} structures")
    return feats


def relax_accounting(gen: StructureSet, relax_results, n_generated: int | None,
                     n_failed_postprocess: int):
    """(steps, converged, n_relax_failed, n_generated) for the relaxed-structure families.

    steps/converged come from relax_results (see :func:`relax_steps`) or, without it, from a
    ``relax_steps`` property of gen (dismai.relax output); both None when neither exists.
    n_generated defaults to len(gen) + n_failed_postprocess + non-converged relaxations.
    """
    m = len(gen)
    steps = conv = None
    if relax_results is not None:
        steps, conv = relax_steps(relax_results)
    elif "relax_steps" in gen.properties:  # dismai.relax output carries its step counts
        steps = np.asarray(gen.properties["relax_steps"], dtype=np.float64).ravel()
        conv = np.ones(len(steps), dtype=bool)
    n_relax_failed = 0 if conv is None or relax_results is None else int((~conv).sum())
    n_gen = (m + int(n_failed_postprocess) + n_relax_failed) if n_generated is None \
        else int(n_generated)
    if n_gen < m:
        raise InputError(f"n_generated ({n_gen}) is smaller than the number of structures "
                         f"({m})")
    return steps, conv, n_relax_failed, n_gen


def mean_relax_steps_metric(steps, conv, **boot) -> dict:
    """Mean relaxation steps of the converged structures with its pivotal interval."""
    ok = steps[conv & np.isfinite(steps)]
    return pivotal_bootstrap_of_mean(ok[:, None], lambda mean: mean[..., 0], **boot).as_dict()


def survivor_metrics(gen: StructureSet, relax_results, n_generated: int | None,
                     n_failed_postprocess: int, **boot) -> tuple[dict, object, int, int]:
    """({"pct_failed", and "mean_relax_steps" when relaxed}, relax steps or None, number of
    failed relaxations, n_generated) for the relaxed-structure families."""
    steps, conv, n_relax_failed, n_gen = relax_accounting(gen, relax_results, n_generated,
                                                          n_failed_postprocess)
    metrics = {"pct_failed": pct_failed_metric(len(gen), n_gen)}
    if steps is not None:
        metrics["mean_relax_steps"] = mean_relax_steps_metric(steps, conv, **boot)
    return metrics, steps, n_relax_failed, n_gen


def delta_energy_mev(energy: np.ndarray | None, reference: dict) -> np.ndarray | None:
    """E - mean(E_train) in meV/atom (a-Si §6.3), None without energies."""
    if energy is None or reference.get("train_mean_energy_per_atom") is None:
        return None
    return (energy - float(reference["train_mean_energy_per_atom"])) * 1000.0
