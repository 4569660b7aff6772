"""Datasets you bring: `dismai datasets add` / `remove` (docs/own-data.md).

An added dataset lives in the user data folder (never the installed package) as the same
files as a built one: NAME.npy (float64 fractional coordinates, train rows first),
NAME.energy.npy when energies are known, NAME.reference.json (reference statistics and the
noise floor, computed once here) and NAME.json, a manifest with ``"added": true``, the cell,
the species, checksums and the relaxation settings.  The manifest is written last and is
what registers the dataset, so a failed add leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

import dismai
from dismai.errors import DatasetError, InputError
from dismai.families import get_family
from dismai.families.base import reference_header
from dismai.fileio import write_bytes, write_json
from dismai.structures import StructureSet

__all__ = ["add_dataset", "remove_dataset", "added_structures", "added_spec", "ADDED_STORAGE"]

ADDED_STORAGE = ("fractional coordinates, float64, shape (M, N, 3); cell and species in the "
                 "manifest; NAME.energy.npy (when known): energy per atom, float64")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RELAX_DEFAULTS = {"fmax": 0.05, "max_steps": 1000}


def added_structures(data: np.ndarray, arrays: dict, manifest: dict) -> StructureSet:
    """Decode an added dataset's stored arrays (train rows first)."""
    props = {}
    if "energy" in arrays:
        props["energy_per_atom"] = np.asarray(arrays["energy"], dtype=np.float64)
    return StructureSet(np.asarray(manifest["lattice"], dtype=np.float64),
                        list(manifest["species"]), np.asarray(data, dtype=np.float64), props)


def added_spec(manifest: dict):
    """The DatasetSpec of an added dataset, from its manifest."""
    from dismai.families.base import DatasetSpec

    return DatasetSpec(name=manifest["name"], family=manifest["family"],
                       description=manifest.get("description", "added dataset"),
                       n_atoms=int(manifest["n_atoms"]),
                       composition=dict(manifest["composition"]), recipe={})


def _energies(structures: StructureSet, model: str | None, progress) -> np.ndarray | None:
    """Energy per atom from the files (energy / energy_per_atom), else single points with
    `model` (the potential generated structures will be relaxed with), else None."""
    from dismai.metrics.accounting import energies_per_atom

    given = energies_per_atom(structures)
    if given is not None or model is None:
        return given
    from dismai.energy.base import get_energy_model

    em = get_energy_model(model)
    out = np.empty(len(structures))
    for start in range(0, len(structures), 50):
        chunk = structures[np.arange(start, min(start + 50, len(structures)))]
        out[start:start + len(chunk)] = em.energy_forces(chunk)[0] / structures.n_atoms
        if progress:
            progress("single-point energies", start + len(chunk), len(structures))
    return out


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"user data folder {folder} cannot be created ({exc.strerror}); "
                           "set DISMAI_DATA_DIR to a writable folder") from None
    if not os.access(folder, os.W_OK):
        raise DatasetError(f"user data folder {folder} is not writable; set DISMAI_DATA_DIR "
                           "to a writable folder")


def add_dataset(name: str, train, val, *, family: str = "disordered",
                energy_model: str | None = None, format: str | None = None,
                fingerprint: dict | None = None, relax: dict | None = None,
                description: str | None = None, n_workers: int | None = None,
                progress=None) -> dict[str, Path]:
    """Validate `train` and `val` (paths in any reader format, or StructureSets), compute
    the reference and noise floor with the family's metrics, and register dataset `name`.

    family: "disordered" (any system) or a specialised family whose definitions the files
    fit.  energy_model: a registered potential for move-apart + relaxation of generated
    structures (and single-point train energies when the files carry none); without it,
    generated structures are scored as given.  fingerprint: disordered-family settings
    (centres, nn_species, oxidation_states).  relax: fmax / max_steps / optimizer.
    """
    from dismai.datasets.build import npy_bytes
    from dismai.datasets.registry import (
        array_path,
        dataset_specs,
        sha256_file,
        shipped_paths,
        user_data_dir,
    )
    from dismai.readers import read_structures

    if not _NAME.match(name or ""):
        raise InputError(f"dataset name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    specs = dataset_specs()
    if name in specs:
        what = "an added dataset; remove it first" if _is_added(name) else "a shipped dataset"
        raise DatasetError(f"dataset name {name!r} is taken by {what}")
    fam = get_family(family)
    if not fam.accepts_added:
        raise DatasetError(f"the {family} family does not take added datasets; use "
                           "--family disordered")
    tr = train if isinstance(train, StructureSet) else read_structures(train, format=format)
    va = val if isinstance(val, StructureSet) else read_structures(val, template=tr,
                                                                   format=format)
    if not va.same_template(tr):
        raise InputError("train and val differ in cell or species")
    if len(tr) < 2 or len(va) < 2:
        raise InputError(f"need at least 2 train and 2 val structures, got {len(tr)} and "
                         f"{len(va)}")
    tr = fam.fit(tr)
    energy_model = energy_model or fam.default_energy_model
    va = StructureSet(tr.lattice, va.species, va.frac, va.properties)  # same cell as train
    relax_cfg = None
    if energy_model is not None:
        from dismai.energy.base import get_energy_model
        from dismai.relax import OPTIMIZERS

        get_energy_model(energy_model)  # unknown name or missing backend: one line, now
        relax_cfg = {"model": energy_model, **_RELAX_DEFAULTS,
                     "optimizer": "lammps-cg" if energy_model == "sw-vink" else "fire",
                     **(relax or {})}
        if relax_cfg["optimizer"] not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {relax_cfg['optimizer']!r}; choose from "
                             f"{', '.join(OPTIMIZERS)}")
    elif relax:
        raise InputError("relaxation settings need --energy-model")
    out = user_data_dir()
    _check_writable(out)
    t0 = time.time()
    both = StructureSet.concat([tr, va])
    energy = _energies(both, energy_model, progress)
    if energy is not None:
        both = both.with_frac(both.frac, {"energy_per_atom": energy})
        tr, va = both[np.arange(len(tr))], both[np.arange(len(tr), len(both))]
    options = {"fingerprint": fingerprint or {}}
    reference = fam.added_reference(tr, va, options=options, n_workers=n_workers)
    from dismai.metrics.memorisation import near_copy_reference

    reference["near_copy"] = near_copy_reference(fam.near_copy_kind, tr, va)
    paths = shipped_paths(name, out)
    arrays = {"energy": energy} if energy is not None else {}
    written: list[Path] = []
    try:
        write_bytes(paths["data"], npy_bytes(both.frac.astype(np.float64)))
        written.append(paths["data"])
        for key, arr in arrays.items():
            paths[key] = array_path(name, key, out)
            write_bytes(paths[key], npy_bytes(np.asarray(arr, dtype=np.float64)))
            written.append(paths[key])
        write_json(paths["reference"], {**reference_header(family, name, tr.n_atoms, len(tr),
                                                           len(va)), **reference})
        written.append(paths["reference"])
        manifest = {
            "name": name, "family": family, "added": True,
            "description": description or f"added dataset ({tr.formula}, {len(both)} "
                                           "structures)",
            "n_structures": len(both), "n_train": len(tr), "n_val": len(va),
            "n_atoms": tr.n_atoms, "composition": tr.composition,
            "lattice": tr.lattice.tolist(), "species": list(tr.species),
            "storage": ADDED_STORAGE, "recipe": {}, "relax": relax_cfg,
            "fingerprint": options["fingerprint"],
            "sources": {"train": str(train) if not isinstance(train, StructureSet) else None,
                        "val": str(val) if not isinstance(val, StructureSet) else None},
            "code_version": dismai.__version__,
            "sha256": sha256_file(paths["data"]),
            **{f"{k}_sha256": sha256_file(paths[k]) for k in arrays},
            "build": {"seconds": round(time.time() - t0, 1)},
        }
        write_json(paths["manifest"], manifest)  # last: this registers the dataset
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return paths


def _is_added(name: str) -> bool:
    import json

    from dismai.datasets.registry import shipped_paths, user_data_dir

    p = shipped_paths(name, user_data_dir())["manifest"]
    try:
        return bool(p.is_file() and json.loads(p.read_text()).get("added"))
    except (OSError, ValueError):
        return False


def remove_dataset(name: str) -> list[Path]:
    """Delete an added dataset's files (manifest first, so it is never half-registered)."""
    import json

    from dismai.datasets.registry import array_path, shipped_paths, user_data_dir

    if not _is_added(name):
        from dismai.datasets.registry import dataset_specs

        if name in dataset_specs():
            raise DatasetError(f"{name!r} is a shipped dataset; only added datasets can be "
                               "removed")
        raise DatasetError(f"no added dataset {name!r}")
    paths = shipped_paths(name, user_data_dir())
    manifest = json.loads(paths["manifest"].read_text())
    files = [paths["manifest"], paths["data"], paths["reference"]]
    files += [array_path(name, k[: -len("_sha256")], user_data_dir()) for k in manifest
              if k.endswith("_sha256") and k != "sha256"]
    for p in files:
        p.unlink(missing_ok=True)
    return files
