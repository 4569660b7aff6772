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
                        out_dir=None, **options) -> dict:
    """Score generated structures with the metric suite of ``dataset.spec.family``.

    gen: structures validated against ``dataset.template`` (same cell and species order).
    dataset: a :class:`dismai.datasets.Dataset` (uses .name, .spec.family, .reference,
    .template).  n_generated: structures originally generated (failures included);
    default len(gen).  out_dir: if given, write metrics.json, per_structure.csv, plots and
    metrics.txt there.  options: passed to the family's evaluate (alloy: lattice_match,
    self_exclusion, workers).
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
    raise NotImplementedError(f"no evaluation suite for dataset family {family!r} yet")


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
