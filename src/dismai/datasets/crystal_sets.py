"""The general-crystal datasets: Perov-5 and Carbon-24, shipped, with checksums.

Models of general crystals (dismai.models.crystal_model) learn from `CrystalSet`s, not
from the fixed-template Dismai-Bench sets, so these have a registry of their own.  Only
the validation and test splits of the CDVAE benchmark split are available here
(../shared/data/general-crystals/README.md): we **train on the published validation split
and hold out the published test split**, so numbers are not comparable with results
trained on the full training split.  The files are the published CSVs, gzip-compressed;
the sha256 of each uncompressed CSV is checked on every load.

Source: the benchmark folder of the CDVAE repository (Xie, Fu et al., ICLR 2022; MIT
licence), curated from Castelli et al., Energy Environ. Sci. 5, 9034 and 5814 (2012)
(Perov-5) and Pickard, Materials Cloud 2020.0026/v1 (Carbon-24).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dismai.errors import DatasetError, UnknownNameError

__all__ = ["CrystalDatasetSpec", "CRYSTAL_DATASETS", "crystal_dataset_names",
           "load_crystals", "crystals_path"]

FOLDER = Path(str(resources.files("dismai.datasets") / "data" / "crystals"))


@dataclass(frozen=True)
class CrystalDatasetSpec:
    name: str
    description: str
    atoms: str  # atoms per crystal, for the table
    sizes: dict  # split -> crystals
    sha256: dict  # split -> sha256 of the uncompressed CSV
    source_split: dict  # our split -> the published split it is


CRYSTAL_DATASETS = {
    "perov-5": CrystalDatasetSpec(
        "perov-5", "ABX3 perovskites, DFT-relaxed (Castelli et al. 2012)", "5",
        {"train": 3787, "test": 3785},
        {"train": "326f401219901270374b71e2faff63df3a29a99fd26f469993b9f476b693daf2",
         "test": "a85878c685037f0a578257f6d4fcdde00e968dbab73c5f1e90ecef65218513f6"},
        {"train": "val", "test": "test"}),
    "carbon-24": CrystalDatasetSpec(
        "carbon-24", "carbon polymorphs, AIRSS at 10 GPa (Pickard 2020)", "6-24",
        {"train": 2032, "test": 2030},
        {"train": "36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e",
         "test": "386b17c08816f434818d51e46687bf72ff3f92348f3ba24823e4758f1fe8a969"},
        {"train": "val", "test": "test"}),
}


class UnknownCrystalDatasetError(UnknownNameError, DatasetError):
    """A general-crystal dataset name that is not registered."""


def crystal_dataset_names() -> list[str]:
    return sorted(CRYSTAL_DATASETS)


def _spec(name: str) -> CrystalDatasetSpec:
    if name not in CRYSTAL_DATASETS:
        raise UnknownCrystalDatasetError(
            f"unknown general-crystal dataset {name!r}; available: "
            f"{', '.join(crystal_dataset_names())}")
    return CRYSTAL_DATASETS[name]


def crystals_path(name: str, split: str) -> Path:
    spec = _spec(name)
    if split not in spec.sizes:
        raise DatasetError(f"{name} has splits {', '.join(spec.sizes)}, not {split!r}")
    return FOLDER / f"{name}.{spec.source_split[split]}.csv.gz"


def load_crystals(name: str, split: str = "train", limit: int | None = None):
    """The CrystalSet of one split ("train" = the published validation split, "test" = the
    published test split), after checking the file's checksum."""
    from dismai.crystals import CrystalSet

    path = crystals_path(name, split)
    if not path.is_file():
        raise DatasetError(f"{path}: missing from the installed package")
    text = gzip.decompress(path.read_bytes())
    if hashlib.sha256(text).hexdigest() != _spec(name).sha256[split]:
        raise DatasetError(f"{path}: checksum mismatch (corrupted or edited file)")
    out = CrystalSet.from_csv_text(text.decode(), limit=limit, source=str(path))
    out.name = f"{name}-{split}"
    return out
