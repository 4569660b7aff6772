"""The dataset registry: names, shipped files, manifests and checksums.

Each built dataset is a few files in a data folder:
  NAME.npy            the structures in the family's compact deterministic format (train
                      rows first);
  NAME.<key>.npy      extra per-structure arrays of the family (e.g. energies), checksummed;
  NAME.json           the manifest: recipe parameters, seed, code version, sha256, split
                      sizes, summary statistics;
  NAME.reference.json training-set reference statistics used by `dismai evaluate`
                      (computed once at build time, never on every run).

Shipped datasets live inside the package; datasets you build go to the user data folder
(``$DISMAI_DATA_DIR``, else ``$XDG_DATA_HOME/dismai``, else ``~/.local/share/dismai``),
which is searched after the package.  Which datasets exist is asked of the families.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from dismai.errors import DatasetError, UnknownNameError
from dismai.families import all_families, get_family
from dismai.families.base import DatasetSpec, check_reference
from dismai.structures import StructureSet

__all__ = ["DATA_DIR", "Dataset", "DatasetSpec", "DatasetError", "dataset_specs",
           "dataset_names", "get_spec", "load", "is_built", "find_data_dir", "shipped_paths",
           "user_data_dir", "user_cache_dir", "sha256_file", "added_specs"]

DATA_DIR = Path(str(resources.files("dismai.datasets") / "data"))
REQUIRED_FILES = ("data", "manifest", "reference")


class UnknownDatasetError(UnknownNameError, DatasetError):
    """A dataset name no family registers."""


def user_data_dir() -> Path:
    """Where `dismai datasets build` writes by default (searched after the package)."""
    if os.environ.get("DISMAI_DATA_DIR"):
        return Path(os.environ["DISMAI_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "dismai"


def user_cache_dir() -> Path:
    """Where long builds keep their resumable work files."""
    if os.environ.get("DISMAI_CACHE_DIR"):
        return Path(os.environ["DISMAI_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dismai"


def dataset_specs() -> dict[str, DatasetSpec]:
    """name -> spec of every dataset of every registered family, then of every dataset
    added to the user data folder (`dismai datasets add`; a shipped name always wins)."""
    specs = {s.name: s for fam in all_families() for s in fam.datasets()}
    for name, spec in added_specs().items():
        specs.setdefault(name, spec)
    return specs


def added_specs() -> dict[str, DatasetSpec]:
    """Specs of the added datasets in the user data folder (manifests with "added")."""
    from dismai.datasets.user import added_spec

    folder = user_data_dir()
    out = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.json")):
        if p.name.endswith(".reference.json"):
            continue
        try:
            manifest = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("added") \
                and manifest.get("name") == p.stem:
            out[p.stem] = added_spec(manifest)
    return out


def dataset_names() -> list[str]:
    return list(dataset_specs())


def get_spec(name: str) -> DatasetSpec:
    specs = dataset_specs()
    if name not in specs:
        import difflib

        close = difflib.get_close_matches(str(name), list(specs), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownDatasetError(f"unknown dataset {name!r}{hint}; known: {', '.join(specs)}")
    return specs[name]


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_paths(name: str, data_dir: Path | None = None) -> dict[str, Path]:
    """The files of dataset `name` in `data_dir` (default: the package data)."""
    d = Path(data_dir) if data_dir else DATA_DIR
    return {"data": d / f"{name}.npy", "manifest": d / f"{name}.json",
            "reference": d / f"{name}.reference.json"}


def array_path(name: str, key: str, data_dir: Path) -> Path:
    return Path(data_dir) / f"{name}.{key}.npy"


def find_data_dir(name: str) -> Path | None:
    """The first of (package data, user data folder) that holds dataset `name`."""
    for d in (DATA_DIR, user_data_dir()):
        paths = shipped_paths(name, d)
        if all(paths[k].is_file() for k in REQUIRED_FILES):
            return d
    return None


def is_built(name: str) -> bool:
    return find_data_dir(name) is not None


class Dataset:
    """A built dataset: train/val StructureSets plus manifest and reference statistics.

    Checksums of every stored array are verified once, when the dataset is opened.
    """

    def __init__(self, name: str, data_dir: Path | None = None, verify: bool = True):
        self.spec = get_spec(name)
        self.name = name
        self.family = get_family(self.spec.family)
        where = Path(data_dir) if data_dir is not None else find_data_dir(name)
        if where is None:
            raise DatasetError(f"dataset {name!r} is not built; run `dismai datasets build "
                               f"{name}`")
        self.data_dir = where
        self.paths = shipped_paths(name, where)
        missing = [str(self.paths[k]) for k in REQUIRED_FILES if not self.paths[k].is_file()]
        if missing:
            raise DatasetError(f"dataset {name!r} is not built: missing {missing[0]}; "
                               f"run `dismai datasets build {name}`")
        try:
            self.manifest = json.loads(self.paths["manifest"].read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.paths['manifest']}: unreadable manifest ({exc})") from None
        self.array_keys = [k[: -len("_sha256")] for k in self.manifest
                           if k.endswith("_sha256") and k != "sha256"]
        for key in self.array_keys:
            self.paths[key] = array_path(name, key, where)
        if verify:
            checks = [("data", self.manifest["sha256"])]
            checks += [(k, self.manifest[f"{k}_sha256"]) for k in self.array_keys]
            for key, want in checks:
                path = self.paths[key]
                if not path.is_file():
                    raise DatasetError(f"dataset {name!r}: missing {path}")
                got = sha256_file(path)
                if got != want:
                    raise DatasetError(f"{path}: checksum {got[:12]}… does not match the "
                                       f"manifest ({want[:12]}…); the file is corrupted")

    @property
    def is_small_variant(self) -> bool:
        return self.spec.parent is not None

    @cached_property
    def raw(self) -> np.ndarray:
        return np.load(self.paths["data"], allow_pickle=False)

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.load(self.paths[k], allow_pickle=False) for k in self.array_keys}

    @property
    def is_added(self) -> bool:
        """Added from user files (`dismai datasets add`), not built by a recipe."""
        return bool(self.manifest.get("added"))

    @cached_property
    def all(self) -> StructureSet:
        if self.is_added:
            from dismai.datasets.user import added_structures

            return added_structures(self.raw, self.arrays, self.manifest)
        return self.family.structures(self.raw, self.arrays, self.manifest)

    @property
    def n_train(self) -> int:
        return int(self.manifest["n_train"])

    @cached_property
    def train(self) -> StructureSet:
        return self.all[np.arange(self.n_train)]

    @cached_property
    def val(self) -> StructureSet:
        return self.all[np.arange(self.n_train, len(self.all))]

    @cached_property
    def reference(self) -> dict:
        try:
            ref = json.loads(self.paths["reference"].read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.paths['reference']}: unreadable ({exc})") from None
        return check_reference(ref, self.spec.family, self.name, str(self.paths["reference"]))

    def near_copy_reference(self) -> dict:
        """Threshold and noise floor of ``pct_near_copy`` (dismai.metrics.memorisation):
        stored in the reference by builds (and `datasets add`); for an older reference,
        computed once from the validation split and cached in the user cache folder, keyed
        by the data checksum."""
        from dismai.fileio import write_json
        from dismai.metrics.memorisation import near_copy_reference

        if isinstance(self.reference.get("near_copy"), dict):
            return self.reference["near_copy"]
        path = user_cache_dir() / "near-copy" / f"{self.name}-{self.manifest['sha256'][:16]}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
        ref = near_copy_reference(self.family.near_copy_kind, self.train, self.val)
        try:
            write_json(path, ref)
        except OSError:  # an unwritable cache only costs the recomputation next time
            pass
        return ref

    @property
    def template(self) -> StructureSet:
        """One structure that fixes the cell and species order of the dataset."""
        return self.train[0]

    def split(self, which: str) -> StructureSet:
        if which == "train":
            return self.train
        if which == "val":
            return self.val
        if which == "all":
            return self.all
        raise DatasetError(f"unknown split {which!r}; use train, val or all")

    def __repr__(self) -> str:
        return f"<Dataset {self.name} ({self.spec.family}, {self.manifest['n_structures']})>"


def load(name: str, verify: bool = True) -> Dataset:
    return Dataset(name, verify=verify)
