"""Build a registered dataset from its family's recipe and write its files atomically."""

from __future__ import annotations

import io
import platform
import time
from pathlib import Path

import numpy as np

import dismai
from dismai.datasets.registry import (
    added_specs,
    array_path,
    get_spec,
    sha256_file,
    shipped_paths,
    user_cache_dir,
    user_data_dir,
)
from dismai.errors import DatasetError, InputError
from dismai.families import get_family
from dismai.families.base import reference_header
from dismai.fileio import write_bytes, write_json

__all__ = ["build_dataset", "npy_bytes", "work_dir_of"]


def npy_bytes(array: np.ndarray) -> bytes:
    """Deterministic .npy serialisation (no timestamps), so checksums are reproducible."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _near_copy(family, structures, n_train: int) -> dict:
    """The pct_near_copy threshold and noise floor (dismai.metrics.memorisation)."""
    from dismai.metrics.memorisation import near_copy_reference

    idx = np.arange(len(structures))
    return near_copy_reference(family.near_copy_kind, structures[idx[:n_train]],
                               structures[idx[n_train:]])


def work_dir_of(name: str, recipe: dict, root=None) -> Path:
    """The resumable work folder of a build: ROOT/<key>, ROOT default the user cache
    folder's work/.  Families may share work between datasets through ROOT (the alloy
    chains of one temperature, the a-Si parents)."""
    spec = get_spec(name)
    family = get_family(spec.family)
    key_of = getattr(family, "work_key", None)
    key = key_of(spec, recipe) if key_of else f"{name}-seed{recipe.get('seed', 0)}"
    return (Path(root) if root is not None else user_cache_dir() / "work") / key


def build_dataset(name: str, seed: int | None = None, out_dir=None, progress=None,
                  work_dir=None, n_workers: int | None = None,
                  **overrides) -> dict[str, Path]:
    """Regenerate dataset `name` and write NAME.npy (+ arrays), NAME.json, NAME.reference.json.

    out_dir: default the user data folder (``dismai.datasets.registry.user_data_dir``),
    never the installed package.  work_dir: the root of the resumable work files (default:
    the user cache folder's work/; see :func:`work_dir_of`).  `overrides` replace recipe
    parameters (e.g. fewer passes for a quick test build); the manifest records the
    parameters actually used.  progress: see dismai.progress.  Returns the written paths
    (and "work": the work folder).
    """
    spec = get_spec(name)
    if name in added_specs():
        raise DatasetError(f"{name!r} was added from files (`dismai datasets add`), not built "
                           "by a recipe; there is nothing to rebuild")
    family = get_family(spec.family)
    recipe = dict(spec.recipe)
    unknown = set(overrides) - set(recipe)
    if unknown:
        raise InputError(f"unknown recipe parameter(s) for {name}: {sorted(unknown)}")
    recipe.update(overrides)
    if seed is not None:
        recipe["seed"] = int(seed)
    out = Path(out_dir) if out_dir is not None else user_data_dir()
    work = work_dir_of(name, recipe, work_dir)
    paths = shipped_paths(name, out)
    t0 = time.time()
    result = family.build(spec, recipe, work_dir=work, n_workers=n_workers, progress=progress)
    data = result.data
    n_train = int(result.n_train)
    n_val = int(len(data) - n_train)
    write_bytes(paths["data"], npy_bytes(data))
    for key, arr in result.arrays.items():
        paths[key] = array_path(name, key, out)
        write_bytes(paths[key], npy_bytes(arr))
    manifest = {
        "name": name,
        "family": spec.family,
        "description": spec.description,
        "n_structures": int(len(data)),
        "n_train": n_train,
        "n_val": n_val,
        "n_atoms": spec.n_atoms,
        "composition": spec.composition,
        "storage": family.storage,
        "recipe": recipe,
        "recipe_version": family.recipe_version,
        "code_version": dismai.__version__,
        "sha256": sha256_file(paths["data"]),
        **{f"{k}_sha256": sha256_file(paths[k]) for k in result.arrays},
        "preview": bool(recipe.get("preview", False)),
        "statistics": result.statistics,
        "build": {
            "seconds": round(time.time() - t0, 1),
            "python": platform.python_version(),
            "numpy": np.__version__,
            **result.info,
        },
    }
    if spec.parent is not None:
        manifest["parent"] = spec.parent
    reference = {**reference_header(spec.family, name, spec.n_atoms, n_train, n_val),
                 **result.reference, "near_copy": _near_copy(family, result.structures, n_train)}
    write_json(paths["reference"], reference)
    write_json(paths["manifest"], manifest)
    return {**paths, "work": work}
