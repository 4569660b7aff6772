"""The learning gate: does a model beat the `random` baseline on a small dataset?

A relaxed family's usual (relaxed) metrics hardly separate a weak model from random
structures, because relaxation alone makes random structures fairly realistic.  The gate
therefore compares the structures *as generated*: d_motif, d_rdf and d_angle must be
lower than random's with non-overlapping 95 % intervals, and so must the mean number of
relaxation steps to the dataset's fmax (docs/learning.md).  The distances are over the
structures whose fingerprints are defined (no two atoms on top of each other), so at most
MAX_PCT_UNSCORED % may be left out: otherwise a model could pass on its few good structures.
The validation split itself (the noise floor) must pass it clearly, which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GATE_METRICS", "MAX_PCT_UNSCORED", "GateResult", "interval", "learning_gate"]

#: (metric, where it is read): as-generated distances and the relaxed-steps count, for
#: a-Si and the other single-network families; the interface family declares its own
GATE_METRICS = (("d_motif", "as_generated"), ("d_rdf", "as_generated"),
                ("d_angle", "as_generated"), ("mean_relax_steps", "relaxed"))
#: the most structures (%) the as-generated distances may leave out (coincident atoms)
MAX_PCT_UNSCORED = 1.0


def interval(entry: dict) -> tuple[float, float]:
    """The 95 % pivotal interval [value - lower_error, value + upper_error]."""
    v, lo, hi = entry["value"], entry.get("lower_error"), entry.get("upper_error")
    if lo is None or hi is None:
        return float(v), float(v)
    return float(v - lo), float(v + hi)


@dataclass
class GateResult:
    passed: bool
    checks: dict  # metric -> {"model": (lo, hi), "random": (lo, hi), "passed": bool}

    def summary(self) -> str:
        bad = [k for k, c in self.checks.items() if not c["passed"]]
        good = [k for k, c in self.checks.items() if c["passed"] and c["random"] is not None]
        if self.passed:
            return "passed"
        return f"failed on {', '.join(bad)}" + (f" (beats random on {', '.join(good)})"
                                                 if good else "")


def _metrics(ev, where: str) -> dict:
    if where == "as_generated":
        return ev.header.get("metrics_as_generated") or {}
    return ev.metrics


def learning_gate(model, random, metrics=GATE_METRICS) -> GateResult:
    """Compare two Evaluations (evaluated with ``as_generated=True`` and relaxation):
    every gate metric of `model` must lie entirely below `random`'s interval.

    metrics: (name, where) pairs, where is "as_generated" or "relaxed"; a family declares
    its own (``DatasetFamily.gate_metrics``: the a-Si ones above by default)."""
    checks = {}
    for name, where in metrics:
        m, r = _metrics(model, where).get(name), _metrics(random, where).get(name)
        if m is None or r is None:
            checks[name] = {"model": None, "random": None, "passed": False}
            continue
        im, ir = interval(m), interval(r)
        checks[name] = {"model": im, "random": ir, "passed": im[1] < ir[0]}
    unscored = _metrics(model, "as_generated").get("pct_failed")
    if unscored is not None and unscored.get("value") is not None:
        v = float(unscored["value"])
        checks["unscored_as_generated"] = {"model": (v, v), "random": None,
                                           "passed": v <= MAX_PCT_UNSCORED}
    return GateResult(all(c["passed"] for c in checks.values()), checks)
