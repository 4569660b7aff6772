"""The dataset registry: names, recipes, shipped files, manifests and checksums.

Each shipped dataset is three files in `dismai/datasets/data/`:
  NAME.npy            the structures in a compact deterministic format (train rows first);
  NAME.json           the manifest: recipe parameters, seed, code version, sha256, split sizes,
                      summary statistics;
  NAME.reference.json training-set reference statistics used by `dismai evaluate`
                      (computed once at build time, never on every run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from dismai.structures import StructureError, StructureSet

DATA_DIR = Path(str(resources.files("dismai.datasets") / "data"))


class DatasetError(StructureError):
    """Unknown dataset, missing or corrupted shipped files."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    family: str  # "alloy", "a-si", "interface": selects the metric suite
    description: str
    n_atoms: int
    composition: dict
    recipe: dict  # default recipe parameters (the build function's keyword arguments)


def _alloy_spec(temperature: int, sro: str) -> DatasetSpec:
    from dismai.datasets.alloy_recipe import default_recipe

    return DatasetSpec(
        name=f"alloy-{temperature}K-{sro}",
        family="alloy",
        description=(
            f"Fe60Ni20Cr20 FCC, CE Monte Carlo at {temperature} K, "
            + ("all 12 SRO parameters within ±0.1 of the mean" if sro == "narrow"
               else "no SRO restriction")
        ),
        n_atoms=256,
        composition={"Cr": 51, "Fe": 154, "Ni": 51},
        recipe=default_recipe(temperature, sro),
    )


def _asi_spec() -> DatasetSpec:
    from dismai.datasets.asi_recipe import default_recipe

    return DatasetSpec(
        name="a-si",
        family="a-si",
        description="amorphous Si: sw-vink melt-quench parents cut into 256-atom blocks, relaxed",
        n_atoms=256,
        composition={"Si": 256},
        recipe=default_recipe(),
    )


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        _alloy_spec(300, "narrow"),
        _alloy_spec(300, "wide"),
        _alloy_spec(1500, "narrow"),
        _alloy_spec(1500, "wide"),
        _asi_spec(),
    )
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)}"
        ) from None


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_paths(name: str, data_dir: Path | None = None) -> dict[str, Path]:
    d = Path(data_dir) if data_dir else DATA_DIR
    return {
        "data": d / f"{name}.npy",
        "manifest": d / f"{name}.json",
        "reference": d / f"{name}.reference.json",
        "energy": d / f"{name}.energy.npy",  # only for datasets with energies (a-si)
    }


REQUIRED_FILES = ("data", "manifest", "reference")


def is_shipped(name: str) -> bool:
    paths = shipped_paths(name)
    return all(paths[k].is_file() for k in REQUIRED_FILES)


class Dataset:
    """A shipped dataset: train/val StructureSets plus manifest and reference stats."""

    def __init__(self, name: str, data_dir: Path | None = None, verify: bool = True):
        self.spec = get_spec(name)
        self.name = name
        self.paths = shipped_paths(name, data_dir)
        missing = [str(self.paths[k]) for k in REQUIRED_FILES if not self.paths[k].is_file()]
        if missing:
            raise DatasetError(
                f"dataset {name!r} is not built: missing {missing[0]}; "
                f"run `dismai datasets build {name}`"
            )
        self.manifest = json.loads(self.paths["manifest"].read_text())
        if verify:
            checks = [("data", self.manifest["sha256"])]
            if "energy_sha256" in self.manifest:
                checks.append(("energy", self.manifest["energy_sha256"]))
            for key, want in checks:
                path = self.paths[key]
                if not path.is_file():
                    raise DatasetError(f"dataset {name!r}: missing {path}")
                got = sha256_file(path)
                if got != want:
                    raise DatasetError(
                        f"{path}: checksum {got[:12]}… does not match the manifest "
                        f"({want[:12]}…); the file is corrupted"
                    )

    @cached_property
    def raw(self) -> np.ndarray:
        return np.load(self.paths["data"], allow_pickle=False)

    @cached_property
    def all(self) -> StructureSet:
        if self.spec.family == "alloy":
            from dismai.datasets.alloy_recipe import structures_from_site_species

            return structures_from_site_species(self.raw)
        if self.spec.family == "a-si":
            from dismai.datasets.asi_recipe import structures_from_arrays

            energy = np.load(self.paths["energy"], allow_pickle=False)
            return structures_from_arrays(self.raw, self.manifest["build"]["block_edge_A"],
                                          energy)
        raise DatasetError(f"no loader for family {self.spec.family!r}")

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
        return json.loads(self.paths["reference"].read_text())

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


def load(name: str, verify: bool = True) -> Dataset:
    return Dataset(name, verify=verify)
