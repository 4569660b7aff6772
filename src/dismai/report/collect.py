"""Find evaluation outputs, check them, and group repeats.

A *result* is one metrics.json (dismai.evaluation, schema version 2).  Results of the same
model, preset and configuration on the same dataset are *repeats* of one *group*: the
paper's "3 separately trained models".  Nothing is merged silently: a folder without
results, an older schema, two versions of one dataset, or two results that claim the same
seed but differ are one-line errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dismai.errors import InputError
from dismai.provenance import METRICS_SCHEMA_VERSION

__all__ = ["Result", "Group", "find_results", "group_results", "NOISE_FLOOR"]

METRICS_JSON = "metrics.json"
#: the label of the validation-vs-training row of every table
NOISE_FLOOR = "noise floor (val vs train)"


@dataclass
class Result:
    """One metrics.json with what the report needs from it."""

    path: Path
    data: dict

    @property
    def provenance(self) -> dict:
        return self.data.get("provenance") or {}

    @property
    def model(self) -> dict:
        return self.provenance.get("model") or {}

    @property
    def dataset(self) -> str:
        return self.data["dataset"]

    @property
    def family(self) -> str | None:
        return (self.provenance.get("dataset") or {}).get("family")

    @property
    def dataset_sha256(self) -> str | None:
        return (self.provenance.get("dataset") or {}).get("sha256")

    @property
    def name(self) -> str:
        """The model's name, else the label (a scored file's name)."""
        return self.model.get("name") or self.data.get("label") or self.path.parent.name

    @property
    def baseline(self) -> bool:
        return bool(self.model.get("baseline"))

    @property
    def preset(self) -> str | None:
        return self.model.get("preset")

    @property
    def seed(self):
        return self.model.get("seed")

    @property
    def key(self) -> tuple:
        """Results with equal keys are repeats of one group."""
        return (self.dataset, self.name, self.preset, self.model.get("config_hash"),
                self.baseline)

    def scores(self) -> dict:
        """Every metric of the result: metrics, then metrics_as_generated as 'NAME@raw'."""
        out = dict(self.data.get("metrics") or {})
        for k, v in (self.data.get("metrics_as_generated") or {}).items():
            out[f"{k}@raw"] = v
        return out


@dataclass
class Group:
    """Repeats of one model configuration on one dataset (or one baseline)."""

    dataset: str
    name: str
    preset: str | None
    config_hash: str | None
    baseline: bool
    results: list[Result] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name + (f" ({self.preset})" if self.preset else "")

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.results]

    @property
    def family(self) -> str | None:
        return self.results[0].family


def _load(path: Path) -> Result:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable metrics.json ({exc})") from None
    if not isinstance(data, dict) or "metrics" not in data or "dataset" not in data:
        raise InputError(f"{path}: not a dismai metrics.json (no dataset/metrics keys)")
    version = data.get("schema_version", 1)
    if version != METRICS_SCHEMA_VERSION:
        raise InputError(f"{path}: metrics.json schema version {version}, this dismai reads "
                         f"version {METRICS_SCHEMA_VERSION}; re-run `dismai evaluate` on it")
    return Result(path, data)


def find_results(paths) -> list[Result]:
    """Every metrics.json under the given files and folders (each folder must hold one)."""
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_file():
            found[p.resolve()] = None
        elif p.is_dir():
            hits = sorted(p.rglob(METRICS_JSON))
            if not hits:
                raise InputError(f"{p}: no {METRICS_JSON} under it (not an evaluation or "
                                 "bench output)")
            found.update(dict.fromkeys(h.resolve() for h in hits))
        else:
            raise InputError(f"{p}: no such file or folder")
    return [_load(p) for p in found]


def _same_numbers(a: Result, b: Result) -> bool:
    return a.scores() == b.scores()


def group_results(results: list[Result]) -> list[Group]:
    """Repeats grouped by (dataset, model, preset, config hash); identical duplicates (a
    baseline every bench run of one seed recomputes) are kept once."""
    by_dataset: dict[str, str | None] = {}
    for r in results:
        sha = r.dataset_sha256
        if r.dataset in by_dataset and by_dataset[r.dataset] != sha:
            raise InputError(f"two versions of dataset {r.dataset!r} (sha256 "
                             f"{str(by_dataset[r.dataset])[:12]} and {str(sha)[:12]}): "
                             "report them separately")
        by_dataset[r.dataset] = sha
    groups: dict[tuple, Group] = {}
    for r in results:
        g = groups.setdefault(r.key, Group(r.dataset, r.name, r.preset, r.key[3], r.baseline))
        twin = next((o for o in g.results if o.seed is not None and o.seed == r.seed), None)
        if twin is None:
            g.results.append(r)
        elif not _same_numbers(twin, r):
            raise InputError(f"{twin.path} and {r.path} both claim {g.label} on {g.dataset} "
                             f"with seed {r.seed} but their results differ")
    return sorted(groups.values(), key=lambda g: (g.dataset, g.baseline, g.name,
                                                  str(g.preset)))
