"""leaderboard.json: one record per model x dataset (repeats aggregated), with every metric,
its per-repeat values and intervals, the noise floor, and each repeat's provenance.

The layout is versioned (``schema_version``) and described by
``dismai/report/data/leaderboard.schema.json`` (JSON Schema draft 2020-12) and
docs/results-schema.md; tests validate every written file against it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from dismai.report.collect import Group
from dismai.report.tables import cell_of

__all__ = ["LEADERBOARD_SCHEMA_VERSION", "leaderboard", "leaderboard_schema"]

LEADERBOARD_SCHEMA_VERSION = 1


@cache
def leaderboard_schema() -> dict:
    path = resources.files("dismai.report").joinpath("data/leaderboard.schema.json")
    return json.loads(path.read_text())


def _interval(entry) -> list | None:
    if not isinstance(entry, dict) or entry.get("lower_error") is None \
            or entry.get("upper_error") is None or entry.get("value") is None:
        return None
    v = entry["value"]
    return [v - entry["lower_error"], v + entry["upper_error"]]


def _metric(group: Group, name: str) -> dict:
    c = cell_of(group, name)
    entries = [r.scores().get(name) for r in group.results]
    return {"mean": c.mean, "min": c.min, "max": c.max,
            "values": [None if not isinstance(e, dict) else e.get("value") for e in entries],
            "intervals": [_interval(e) for e in entries]}


def _provenance(result) -> dict:
    prov = dict(result.provenance)
    model = dict(prov.get("model") or {})
    model.pop("config", None)  # the hash identifies it; the full config is in metrics.json
    prov["model"] = model
    prov["metrics_json"] = str(result.path)
    return prov


def leaderboard(groups: list[Group], environment: dict) -> dict:
    """The leaderboard document (see the module docstring)."""
    records = []
    for g in groups:
        names = list(dict.fromkeys(m for r in g.results for m in r.scores()))
        floor = g.results[0].data.get("noise_floor") or {}
        records.append({
            "model": g.name, "preset": g.preset, "config_hash": g.config_hash,
            "baseline": g.baseline, "dataset": g.dataset, "family": g.family,
            "dataset_sha256": g.results[0].dataset_sha256,
            "repeats": len(g.results), "seeds": g.seeds,
            "n_generated": [r.data.get("n_generated") for r in g.results],
            "metrics": {m: _metric(g, m) for m in names},
            "noise_floor": {m: {"value": e.get("value"), "interval": _interval(e)}
                            for m, e in floor.items() if isinstance(e, dict)},
            "provenance": [_provenance(r) for r in g.results],
        })
    return {"schema": "dismai-leaderboard", "schema_version": LEADERBOARD_SCHEMA_VERSION,
            "created": environment.get("created"), "dismai": environment.get("dismai"),
            "records": records}
