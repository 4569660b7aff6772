"""Where a result came from: written into every metrics.json so that a report can group
repeats, refuse a silent merge, and say which code, data and machine produced a number.

A provenance block is a flat-ish JSON mapping::

    {"created": ISO time (UTC), "dismai": version, "python", "numpy", "torch",
     "platform", "cpu", "n_cpus", "gpu",
     "dataset": {"name", "family", "sha256", "recipe_version", "parent"},
     "input": {"path", "sha256"}              # dismai evaluate
     "model": {"name", "preset", "config_hash", "config", "seed", "sample_seed",
               "train_seconds", "train_cpu_seconds", "sample_seconds",
               "sample_cpu_seconds", "n_train"}}    # dismai bench
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

__all__ = ["METRICS_SCHEMA_VERSION", "environment", "dataset_provenance", "config_hash",
           "file_sha256"]

#: version of the metrics.json layout (dismai.evaluation).  1: no schema_version key and no
#: provenance (before the report existed); 2: schema_version, label and provenance.
METRICS_SCHEMA_VERSION = 2


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = __import__(module)
        except ImportError:
            return None
    return getattr(mod, "__version__", None)


def environment() -> dict:
    """Package versions and the machine (no network, no subprocess)."""
    from dismai import __version__

    gpu = None
    torch = sys.modules.get("torch")  # only ask CUDA if torch is already in use
    if torch is not None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {"created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
            "dismai": __version__, "python": platform.python_version(),
            "numpy": _version("numpy"), "torch": _version("torch") if torch else None,
            "platform": platform.platform(), "cpu": _cpu_name(),
            "n_cpus": os.cpu_count(), "gpu": gpu}


def dataset_provenance(dataset) -> dict:
    """Name, family, checksum and recipe version of a dataset (anything with .name,
    .manifest, .spec)."""
    manifest = getattr(dataset, "manifest", None) or {}
    spec = getattr(dataset, "spec", None)
    return {"name": dataset.name,
            "family": manifest.get("family", getattr(spec, "family", None)),
            "sha256": manifest.get("sha256"),
            "recipe_version": manifest.get("recipe_version"),
            "parent": manifest.get("parent")}


def config_hash(config: dict) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of a config mapping."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path) -> str | None:
    """SHA-256 of a file (None for a folder or a missing path)."""
    path = Path(path)
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
