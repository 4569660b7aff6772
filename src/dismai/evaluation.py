"""Benchmark evaluation entry points: pick the metric suite of a dataset's family.

``evaluate_structures`` is what ``dismai evaluate`` calls; it returns (and optionally
writes) ``metrics.json``:

    {"dataset": NAME, "n_input": M, "n_generated": N, "lattice_match": VARIANT,
     "metrics": {METRIC: {"value", "lower_error", "upper_error"}},
     "noise_floor": {... same shape: the validation split scored against train ...}}
"""

from __future__ import annotations

from pathlib import Path

from dismai.fileio import write_json
from dismai.structures import StructureError, StructureSet

__all__ = ["evaluate_structures", "evaluate_file"]


def _check_n_generated(n_generated: int | None, n_input: int) -> int:
    if n_generated is None:
        return n_input
    if isinstance(n_generated, bool) or int(n_generated) != n_generated:
        raise ValueError(f"n_generated must be an integer, got {n_generated!r}")
    n_generated = int(n_generated)
    if n_generated < n_input:
        raise ValueError(
            f"n_generated ({n_generated}) must be at least the number of structures "
            f"in the input ({n_input})"
        )
    return n_generated


def evaluate_structures(gen: StructureSet, dataset, n_generated: int | None = None,
                        out_dir=None, progress: bool = True, **options) -> dict:
    """Score generated structures with the metric suite of ``dataset.spec.family``.

    gen: structures validated against ``dataset.template`` (same cell and species order).
    dataset: a :class:`dismai.datasets.Dataset` (uses .name, .spec.family, .reference,
    .template).  n_generated: structures originally generated (failures included);
    default len(gen).  out_dir: if given, write metrics.json, per_structure.csv, plots and
    metrics.txt there.  progress: show a bar for long steps (the a-Si relaxation).
    options: passed to the family's evaluate (alloy: lattice_match, self_exclusion, workers).
    """
    n_gen = _check_n_generated(n_generated, len(gen))
    family = dataset.spec.family
    if not gen.same_template(dataset.template, atol=1e-3):
        raise StructureError(
            f"structures do not match the {dataset.name} template "
            f"({dataset.template.formula}, cell {dataset.template.lattice.diagonal().tolist()})"
        )
    if family == "alloy":
        from dismai.metrics.alloy.evaluate import evaluate
        from dismai.metrics.alloy.report import write_outputs

        reference = dataset.reference
        ev = evaluate(gen, reference, n_generated=n_gen, **options)
        result = {
            "dataset": dataset.name,
            "n_input": len(gen),
            "n_generated": n_gen,
            "lattice_match": ev.lattice_match,
            "metrics": ev.metrics,
            "noise_floor": reference.get("noise_floor", {}),
        }
        if out_dir is not None:
            out = Path(out_dir)
            write_outputs(ev, reference, out)
            write_json(out / "metrics.json", result)
        return result
    if family == "a-si":
        return _evaluate_asi(gen, dataset, n_gen, out_dir, progress=progress, **options)
    raise NotImplementedError(f"no evaluation suite for dataset family {family!r} yet")


def _evaluate_asi(gen: StructureSet, dataset, n_gen: int, out_dir=None, *, relax: bool = True,
                  n_workers: int | None = None, reference_compatible: bool = False,
                  relax_dir=None, progress: bool = True) -> dict:
    """a-Si pipeline (spec §6): move atoms apart, relax with the dataset's potential
    (sw-vink, LAMMPS CG, exactly as the training set was relaxed), then the metrics.

    Relaxation results go to `relax_dir` (default OUT/relax) as an append-only store, so
    an interrupted evaluation resumes without redoing finished structures.
    """
    from dismai.metrics.asi.evaluate import evaluate
    from dismai.metrics.asi.report import write_outputs
    from dismai.postprocess import move_atoms_apart

    reference = dataset.reference
    moved = move_atoms_apart(gen, reference_compatible=reference_compatible)
    n_lost_moving = int((~moved.ok).sum())
    survivors = moved.structures
    run = None
    if relax and len(survivors):
        from dismai.relax import relax_structures

        recipe = dataset.manifest["recipe"]
        where = relax_dir or (Path(out_dir) / "relax" if out_dir is not None else None)
        run = relax_structures(survivors, "sw-vink", out_dir=where,
                               fmax=recipe["relax_fmax"], max_steps=recipe["relax_steps"],
                               optimizer="lammps-cg", n_workers=n_workers, progress=progress)
        survivors = run.structures
    if len(survivors) == 0:
        raise ValueError("no structure survived post-processing and relaxation")
    ev = evaluate(survivors, reference, n_generated=n_gen, n_failed_postprocess=n_lost_moving,
                  relax_results=run, n_workers=n_workers or 1)
    result = {
        "dataset": dataset.name,
        "n_input": len(gen),
        "n_generated": n_gen,
        "relaxed": bool(relax),
        "n_failed_move_apart": n_lost_moving,
        "n_failed_relaxation": 0 if run is None else len(run.failed),
        "metrics": ev.metrics,
        "noise_floor": reference.get("noise_floor", {}),
    }
    if out_dir is not None:
        out = Path(out_dir)
        write_outputs(ev, reference, out)
        if run is not None:
            run.write_table_csv(out / "relax_results.csv")
        write_json(out / "metrics.json", result)
    return result


def evaluate_file(path, dataset_name: str, n_generated: int | None = None, out_dir=None,
                  **options) -> dict:
    """Read an extxyz of generated structures and evaluate it against a shipped dataset.

    Bad input raises StructureError with a one-line message (from dismai.extxyz).
    """
    from dismai.datasets import load
    from dismai.extxyz import read_extxyz

    dataset = load(dataset_name)
    gen = read_extxyz(path, template=dataset.template)
    return evaluate_structures(gen, dataset, n_generated=n_generated, out_dir=out_dir, **options)
