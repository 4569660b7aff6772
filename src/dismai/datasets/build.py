"""Build a registered dataset from its recipe and write the shipped files atomically."""

from __future__ import annotations

import io
import json
import platform
import time
from pathlib import Path

import numpy as np

import dismai
from dismai.datasets.registry import DATA_DIR, get_spec, sha256_file, shipped_paths
from dismai.fileio import write_bytes, write_json

RECIPE_VERSION = {"alloy": 1}


def npy_bytes(array: np.ndarray) -> bytes:
    """Deterministic .npy serialisation (no timestamps), so checksums are reproducible."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def alloy_statistics(site_species: np.ndarray) -> dict:
    """Mean CE formation energy and mean 1NN/2NN Warren-Cowley SRO per pair."""
    from dismai.energy.cluster_expansion import count_vector, formation_energy
    from dismai.metrics.alloy.sro import SRO_COLUMNS, warren_cowley

    counts = count_vector(site_species)
    e = formation_energy(counts)
    sro = warren_cowley(counts)
    return {
        "n": int(len(site_species)),
        "ce_energy_mean_eV_per_atom": round(float(e.mean()), 6),
        "ce_energy_std_eV_per_atom": round(float(e.std()), 6),
        "sro_mean": dict(zip(SRO_COLUMNS, np.round(sro.mean(axis=0), 4).tolist(), strict=True)),
        "sro_std": dict(zip(SRO_COLUMNS, np.round(sro.std(axis=0), 4).tolist(), strict=True)),
    }


def build_dataset(name: str, seed: int | None = None, out_dir=None, progress=None,
                  **overrides) -> dict[str, Path]:
    """Regenerate dataset `name` and write NAME.npy, NAME.json, NAME.reference.json.

    `overrides` replace recipe parameters (e.g. fewer passes for a quick test build); the
    manifest records the parameters actually used.  Returns the written paths.
    """
    spec = get_spec(name)
    recipe = dict(spec.recipe)
    unknown = set(overrides) - set(recipe)
    if unknown:
        raise ValueError(f"unknown recipe parameter(s) for {name}: {sorted(unknown)}")
    recipe.update(overrides)
    if seed is not None:
        recipe["seed"] = int(seed)
    paths = shipped_paths(name, Path(out_dir) if out_dir else DATA_DIR)
    t0 = time.time()
    if spec.family == "alloy":
        from dismai.datasets import alloy_recipe
        from dismai.metrics.alloy.reference import build_reference

        result = alloy_recipe.build(progress=progress, **recipe)
        data = result.site_species
        n_train = result.n_train
        structures = alloy_recipe.structures_from_site_species(data)
        idx = np.arange(len(data))
        reference = build_reference(structures[idx[:n_train]], structures[idx[n_train:]])
        stats = {
            "train": alloy_statistics(data[:n_train]),
            "val": alloy_statistics(data[n_train:]),
            "all": alloy_statistics(data),
        }
        storage = "site species per FCC site, uint8 (0 Cr, 1 Fe, 2 Ni), shape (M, 256)"
        info = result.info
    else:  # pragma: no cover - other families register their own builders
        raise ValueError(f"no builder for family {spec.family!r}")
    payload = npy_bytes(data)
    write_bytes(paths["data"], payload)
    manifest = {
        "name": name,
        "family": spec.family,
        "description": spec.description,
        "n_structures": int(len(data)),
        "n_train": int(n_train),
        "n_val": int(len(data) - n_train),
        "n_atoms": spec.n_atoms,
        "composition": spec.composition,
        "storage": storage,
        "recipe": recipe,
        "recipe_version": RECIPE_VERSION[spec.family],
        "code_version": dismai.__version__,
        "sha256": sha256_file(paths["data"]),
        "preview": False,
        "statistics": stats,
        "build": {
            "seconds": round(time.time() - t0, 1),
            "python": platform.python_version(),
            "numpy": np.__version__,
            **info,
        },
    }
    write_json(paths["reference"], reference)
    write_json(paths["manifest"], manifest)
    return paths


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2)
