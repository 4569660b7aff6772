"""extxyz reading and writing through ASE, with validation and atomic writes."""

from __future__ import annotations

from pathlib import Path

from dismai.fileio import atomic_path
from dismai.structures import StructureError, StructureSet


def read_atoms(path) -> list:
    """Read every frame of an extxyz file; one-line StructureError on any problem."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise StructureError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise StructureError(f"{path}: file is empty")
    try:
        frames = read(path, index=":", format="extxyz")
    except Exception as exc:  # ASE raises many types for malformed input
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StructureError(f"{path}: not a readable extxyz file ({msg})") from None
    if not frames:
        raise StructureError(f"{path}: contains no structures")
    # ASE silently drops an incomplete last frame; a truncated file must be an error.
    with open(path, "rb") as fh:
        n_lines = sum(1 for line in fh if line.strip())
    expected = sum(len(a) + 2 for a in frames)
    if n_lines != expected:
        raise StructureError(
            f"{path}: truncated or malformed after structure {len(frames) - 1} "
            f"({n_lines} non-empty lines, {len(frames)} complete frames need {expected})"
        )
    return frames


def read_extxyz(path, template: StructureSet | None = None) -> StructureSet:
    """Read an extxyz file into a StructureSet, checked against `template` if given."""
    return StructureSet.from_atoms(read_atoms(path), template=template, source=str(path))


def write_extxyz(structures: StructureSet, path) -> None:
    """Write all structures as extxyz frames (atomically)."""
    from ase.io import write

    path = Path(path)
    with atomic_path(path, suffix=".extxyz") as tmp:
        write(tmp, structures.to_atoms(), format="extxyz")
