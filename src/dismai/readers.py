"""One reader layer for every structure format users bring: extxyz, CIF (a file, a folder
or a zip of them), POSCAR/VASP (a file or a folder), an ASE database and pymatgen JSON.

Each format turns a path into a list of (label, ase.Atoms); :func:`read_structures` then
builds one validated :class:`StructureSet` through ``StructureSet.from_atoms``, so every
format gets the same checks, the same species-block normalisation and the same one-line
errors, each naming the file (and the structure within it) that is wrong.

Files of a folder or zip are read in sorted name order, so the structure index is
reproducible.  CIF files go through ASE, which keeps every site as written (pymatgen's
parser merges sites closer than its tolerance, which would hide a generated structure's
worst defect).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from dismai.errors import InputError, StructureError
from dismai.structures import StructureSet

__all__ = ["FORMATS", "detect_format", "read_structures"]

_POSCAR_NAMES = ("POSCAR", "CONTCAR")
_POSCAR_SUFFIXES = (".vasp", ".poscar")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_poscar(path: Path) -> bool:
    return path.name.upper().startswith(_POSCAR_NAMES) or path.suffix.lower() in _POSCAR_SUFFIXES


def _ase_read_one(label: str, source, fmt: str, what: str):
    from ase.io import read

    try:
        frames = read(source, index=":", format=fmt)
    except Exception as exc:  # ASE raises many types for malformed input
        raise StructureError(f"{label}: not a readable {what} file ({_first_line(exc)})") \
            from None
    if not frames:
        raise StructureError(f"{label}: contains no structures")
    if len(frames) == 1:
        return [(label, frames[0])]
    return [(f"{label}: structure {i}", at) for i, at in enumerate(frames)]


def _folder_files(path: Path, keep: Callable[[Path], bool], what: str) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.is_file() and keep(p))
    if not files:
        raise StructureError(f"{path}: folder holds no {what} files")
    return files


# ---------------------------------------------------------------------------- formats
def _read_extxyz(path: Path):
    from dismai.extxyz import read_atoms

    return [(f"{path}: structure {i}", at) for i, at in enumerate(read_atoms(path))]


def _read_cif(path: Path):
    if path.is_dir():
        files = _folder_files(path, lambda p: p.suffix.lower() == ".cif", "CIF (.cif)")
        return [item for f in files for item in _ase_read_one(str(f), str(f), "cif", "CIF")]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist()
                           if n.lower().endswith(".cif") and not n.endswith("/"))
            if not names:
                raise StructureError(f"{path}: zip holds no .cif files")
            out = []
            for n in names:
                text = zf.read(n).decode("utf-8", errors="replace")
                out += _ase_read_one(f"{path}:{n}", io.StringIO(text), "cif", "CIF")
            return out
    _nonempty(path)
    return _ase_read_one(str(path), str(path), "cif", "CIF")


def _read_poscar(path: Path):
    if path.is_dir():
        files = _folder_files(path, _is_poscar, "POSCAR/CONTCAR/.vasp")
        return [item for f in files for item in _ase_read_one(str(f), str(f), "vasp", "POSCAR")]
    _nonempty(path)
    return _ase_read_one(str(path), str(path), "vasp", "POSCAR")


def _read_ase_db(path: Path):
    import ase.db

    _nonempty(path)
    try:
        db = ase.db.connect(str(path), type="db")
        rows = [(f"{path}: row id {row.id}", row.toatoms()) for row in db.select()]
    except Exception as exc:
        raise StructureError(f"{path}: not a readable ASE database ({_first_line(exc)})") \
            from None
    if not rows:
        raise StructureError(f"{path}: database holds no structures")
    return rows


def _read_pymatgen_json(path: Path):
    """A pymatgen ``Structure.as_dict()``, a list of them, or {name: dict}."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    _nonempty(path)
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StructureError(f"{path}: not valid JSON ({_first_line(exc)})") from None
    if isinstance(data, dict) and "lattice" in data and "sites" in data:
        items = [(str(path), data)]
    elif isinstance(data, dict):
        items = [(f"{path}: {k}", v) for k, v in data.items()]
    elif isinstance(data, list):
        items = [(f"{path}: structure {i}", v) for i, v in enumerate(data)]
    else:
        raise StructureError(f"{path}: expected a pymatgen Structure dict or a list of them")
    if not items:
        raise StructureError(f"{path}: contains no structures")
    out = []
    for label, d in items:
        try:
            out.append((label, AseAtomsAdaptor.get_atoms(Structure.from_dict(d))))
        except Exception as exc:
            raise StructureError(f"{label}: not a pymatgen Structure ({_first_line(exc)})") \
                from None
    return out


def _nonempty(path: Path) -> None:
    if not path.exists():
        raise StructureError(f"{path}: no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise StructureError(f"{path}: file is empty")


FORMATS: dict[str, Callable[[Path], list]] = {
    "extxyz": _read_extxyz,
    "cif": _read_cif,
    "poscar": _read_poscar,
    "ase-db": _read_ase_db,
    "pymatgen-json": _read_pymatgen_json,
}


def detect_format(path) -> str:
    """The format name for a path, from its suffix or, for a folder, its files."""
    path = Path(path)
    if not path.exists():
        raise StructureError(f"{path}: no such file or folder")
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file()]
        has_cif = any(p.suffix.lower() == ".cif" for p in files)
        has_poscar = any(_is_poscar(p) for p in files)
        if has_cif and has_poscar:
            raise InputError(f"{path}: folder holds both CIF and POSCAR files; "
                             "pass --format cif or --format poscar")
        if has_cif:
            return "cif"
        if has_poscar:
            return "poscar"
        raise StructureError(f"{path}: folder holds no .cif or POSCAR/CONTCAR/.vasp files")
    suffix = path.suffix.lower()
    by_suffix = {".extxyz": "extxyz", ".xyz": "extxyz", ".cif": "cif", ".zip": "cif",
                 ".db": "ase-db", ".json": "pymatgen-json"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    if _is_poscar(path):
        return "poscar"
    raise InputError(f"{path}: cannot tell the format from the name; pass --format, one of "
                     f"{', '.join(FORMATS)}")


def read_structures(path, template: StructureSet | None = None, format: str | None = None
                    ) -> StructureSet:
    """Read any supported format into one StructureSet, checked against `template` if given.

    `format`: one of :data:`FORMATS`; detected from the path when None.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise StructureError(f"{path}: no such file or folder")
    items = FORMATS[fmt](path)
    labels = [label for label, _ in items]
    return StructureSet.from_atoms([at for _, at in items], template=template,
                                   source=str(path), labels=labels)
