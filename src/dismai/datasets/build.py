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

RECIPE_VERSION = {"alloy": 1, "a-si": 1}


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


def asi_statistics(structures) -> dict:
    """Density, 4-fold fraction (2.85 Å), bond angles, RDF peaks, energy per atom."""
    from ase.neighborlist import neighbor_list

    from dismai.metrics.asi.rdf import rdf

    four, angles = [], []
    for at in structures.to_atoms():
        i, j, d = neighbor_list("ijD", at, 2.85)
        cn = np.bincount(i, minlength=len(at))
        four.append(np.mean(cn == 4))
        for c in range(len(at)):
            v = d[i == c]
            if len(v) < 2:
                continue
            u = v / np.linalg.norm(v, axis=1)[:, None]
            cos = np.clip(u @ u.T, -1, 1)[np.triu_indices(len(u), 1)]
            angles.append(np.degrees(np.arccos(cos)))
    angles = np.concatenate(angles)
    sample = structures.frac[: min(len(structures), 300)]
    g = np.mean([rdf(structures.lattice, f) for f in sample], axis=0)
    r = (np.arange(len(g)) + 0.5) * (10.0 / len(g))  # bin centres, 0-10 Å
    first = int(np.argmax(g * (r < 3.0)))
    second = int(np.argmax(g * ((r > 3.2) & (r < 4.4))))
    mass = 28.0855 * structures.n_atoms / 6.02214076e23
    e = structures.properties.get("energy_per_atom")
    return {
        "n": int(len(structures)),
        "density_g_cm3": round(mass / (structures.volume * 1e-24), 4),
        "fourfold_fraction_2.85A": round(float(np.mean(four)), 4),
        "bond_angle_mean_deg": round(float(angles.mean()), 3),
        "bond_angle_rms_width_deg": round(float(angles.std()), 3),
        "rdf_first_peak_A": round(float(r[first]), 3),
        "rdf_second_peak_A": round(float(r[second]), 3),
        "energy_mean_eV_per_atom": None if e is None else round(float(np.mean(e)), 5),
        "energy_std_eV_per_atom": None if e is None else round(float(np.std(e)), 5),
    }


def build_dataset(name: str, seed: int | None = None, out_dir=None, progress=None,
                  work_dir=None, n_workers: int | None = None,
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
        extra = {}
    elif spec.family == "a-si":
        from dismai.datasets import asi_recipe
        from dismai.metrics.asi.reference import build_reference

        work = Path(work_dir or Path.cwd() / "dismai-work" / f"{name}-seed{recipe['seed']}")
        result = asi_recipe.build(recipe, work, n_workers=n_workers, progress=progress)
        data = result.frac
        n_train = result.n_train
        structures = asi_recipe.structures_from_arrays(result.frac, result.block_edge,
                                                       result.energy)
        idx = np.arange(len(data))
        reference = build_reference(structures[idx[:n_train]], structures[idx[n_train:]],
                                    n_workers=n_workers or 1)
        stats = {"train": asi_statistics(structures[idx[:n_train]]),
                 "val": asi_statistics(structures[idx[n_train:]])}
        storage = ("fractional coordinates, float32, shape (M, 256, 3); NAME.energy.npy: "
                   "sw-vink energy per atom after relaxation, float64")
        info = {**result.info, "relax_steps_mean": round(float(result.relax_steps.mean()), 2),
                "energy_model": "sw-vink (Vink et al. 2001 modified Stillinger-Weber, LAMMPS)"}
        extra = {"energy": npy_bytes(result.energy)}
    else:  # pragma: no cover - other families register their own builders
        raise ValueError(f"no builder for family {spec.family!r}")
    payload = npy_bytes(data)
    write_bytes(paths["data"], payload)
    for key, blob in extra.items():
        write_bytes(paths[key], blob)
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
        **{f"{k}_sha256": sha256_file(paths[k]) for k in extra},
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
