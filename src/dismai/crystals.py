"""General crystals: one cell, one atom count and one composition *per structure*.

`StructureSet` is the Dismai-Bench type (one shared cell and species layout, stored as one
array).  Models that work on general crystals (the original CrysTens form, Perov-5 and
Carbon-24) need structures that differ in all three, so they pass a `CrystalSet`: a list of
`Crystal` records.  Conversions to and from ASE, pymatgen and CIF keep the cell matrix (ASE,
pymatgen) or its lengths and angles (CIF stores no orientation), the atomic numbers and the
fractional coordinates; the tests check each round trip.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dismai.errors import DatasetError, StructureError

__all__ = ["Crystal", "CrystalSet"]

#: significant figures of the numbers a CIF written by `Crystal.to_cif` carries
CIF_DIGITS = 12


@dataclass(frozen=True, eq=False)
class Crystal:
    """One periodic crystal: lattice rows in Å, fractional coordinates, atomic numbers.

    Coordinates are kept as given (not wrapped), so a conversion never moves an atom."""

    lattice: np.ndarray  # (3, 3), rows a, b, c
    frac: np.ndarray  # (n, 3)
    numbers: np.ndarray  # (n,) atomic numbers
    properties: dict = field(default_factory=dict)

    def __post_init__(self):
        lat = np.array(self.lattice, dtype=np.float64)
        frac = np.array(self.frac, dtype=np.float64).reshape(-1, 3)
        num = np.array(self.numbers).reshape(-1)
        if lat.shape != (3, 3) or not np.isfinite(lat).all():
            raise StructureError(f"lattice must be a finite 3x3 matrix, got shape {lat.shape}")
        if abs(np.linalg.det(lat)) < 1e-8:
            raise StructureError("lattice is singular (zero cell volume)")
        if len(frac) == 0:
            raise StructureError("a crystal needs at least one atom")
        if len(num) != len(frac):
            raise StructureError(f"{len(num)} atomic numbers for {len(frac)} positions")
        if not np.isfinite(frac).all():
            raise StructureError("fractional coordinates contain NaN or inf")
        if not np.issubdtype(num.dtype, np.integer) or num.min() < 1 or num.max() > 118:
            raise StructureError("atomic numbers must be integers in 1..118")
        for name, value in (("lattice", lat), ("frac", frac), ("numbers", num.astype(np.int64))):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @property
    def cart(self) -> np.ndarray:
        return self.frac @ self.lattice

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def lengths_angles(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b, c) in Å and (alpha, beta, gamma) in degrees."""
        from ase.geometry import cell_to_cellpar

        par = cell_to_cellpar(self.lattice)
        return par[:3], par[3:]

    @property
    def symbols(self) -> list[str]:
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.numbers]

    # --- conversions -----------------------------------------------------------------------
    @classmethod
    def from_ase(cls, atoms, properties: dict | None = None) -> Crystal:
        return cls(np.asarray(atoms.cell[:]), atoms.get_scaled_positions(wrap=False),
                   atoms.numbers, dict(properties or {}))

    def to_ase(self):
        from ase import Atoms

        return Atoms(numbers=self.numbers, cell=self.lattice, scaled_positions=self.frac,
                     pbc=True)

    @classmethod
    def from_pymatgen(cls, structure, properties: dict | None = None) -> Crystal:
        if not structure.is_ordered:
            raise StructureError("a structure with partial occupancies is not a crystal here")
        return cls(structure.lattice.matrix, structure.frac_coords,
                   [site.specie.Z for site in structure], dict(properties or {}))

    def to_pymatgen(self):
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), [int(z) for z in self.numbers], self.frac,
                         coords_are_cartesian=False)

    @classmethod
    def from_cif(cls, text: str, properties: dict | None = None) -> Crystal:
        """The first structure of a CIF string, its atoms in the file's order (read with
        ASE: pymatgen's CifParser regroups them by species); coordinates wrapped into
        [0, 1) by the reader."""
        import io
        import warnings

        from ase.io import read

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                atoms = read(io.StringIO(text), format="cif", index=0)
        except Exception as exc:  # the CIF reader raises many kinds on bad text
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StructureError(f"unreadable CIF: {first}") from None
        return cls.from_ase(atoms, properties)

    def to_cif(self, name: str = "dismai") -> str:
        """CIF text in P1, atoms in this crystal's order, 12 significant figures: reading it
        back gives the same lengths, angles, numbers, order and fractional coordinates (CIF
        stores no cell orientation).  pymatgen's CifWriter regroups atoms by species, which
        would lose the order, so this writes the few lines itself."""
        lengths, angles = self.lengths_angles
        g = f"{{:.{CIF_DIGITS}g}}"
        lines = [f"data_{name}", "_symmetry_space_group_name_H-M   'P 1'",
                 "_symmetry_Int_Tables_number   1"]
        for key, v in zip(("a", "b", "c"), lengths, strict=True):
            lines.append(f"_cell_length_{key}   {g.format(v)}")
        for key, v in zip(("alpha", "beta", "gamma"), angles, strict=True):
            lines.append(f"_cell_angle_{key}   {g.format(v)}")
        lines += ["loop_", " _symmetry_equiv_pos_site_id", " _symmetry_equiv_pos_as_xyz",
                  "  1  'x, y, z'", "loop_", " _atom_site_type_symbol", " _atom_site_label",
                  " _atom_site_fract_x", " _atom_site_fract_y", " _atom_site_fract_z",
                  " _atom_site_occupancy"]
        for i, (sym, f) in enumerate(zip(self.symbols, self.frac, strict=True)):
            lines.append(f"  {sym}  {sym}{i}  " + "  ".join(g.format(x) for x in f) + "  1")
        return "\n".join(lines) + "\n"


class CrystalSet(Sequence):
    """An ordered collection of `Crystal` with a name for messages."""

    def __init__(self, crystals: Iterable[Crystal], name: str = "crystals"):
        self._items = list(crystals)
        self.name = name
        for i, c in enumerate(self._items):
            if not isinstance(c, Crystal):
                raise StructureError(f"{name}[{i}] is a {type(c).__name__}, not a Crystal")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return CrystalSet(self._items[i], self.name)
        return self._items[i]

    def __iter__(self) -> Iterator[Crystal]:
        return iter(self._items)

    def __repr__(self) -> str:
        if not self._items:
            return f"CrystalSet({self.name!r}, empty)"
        n = [c.n_atoms for c in self._items]
        return f"CrystalSet({self.name!r}, {len(self)} crystals, {min(n)}-{max(n)} atoms)"

    @property
    def n_atoms(self) -> np.ndarray:
        return np.array([c.n_atoms for c in self._items])

    @classmethod
    def from_csv(cls, path, cif_column: str = "cif", limit: int | None = None) -> CrystalSet:
        """A CDVAE-style table (one CIF per row; the other columns become properties,
        numeric where they parse).  Perov-5 and Carbon-24 come in this form."""
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such file")
        out = cls.from_csv_text(path.read_text(), cif_column, limit, source=str(path))
        out.name = path.parent.name or path.stem
        return out

    @classmethod
    def from_csv_text(cls, text: str, cif_column: str = "cif", limit: int | None = None,
                      source: str = "table") -> CrystalSet:
        """from_csv on the text of a table (`source` names it in errors)."""
        import io

        csv.field_size_limit(sys.maxsize)
        out = []
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if cif_column not in (reader.fieldnames or []):
            raise DatasetError(f"{source}: no {cif_column!r} column (columns: "
                               f"{', '.join(reader.fieldnames or [])})")
        for row_no, row in enumerate(reader, start=1):
            if limit is not None and len(out) >= limit:
                break
            props = {k: _number(v) for k, v in row.items() if k != cif_column and k}
            try:
                out.append(Crystal.from_cif(row[cif_column], props))
            except StructureError as exc:
                raise DatasetError(f"{source}, row {row_no}: {exc}") from None
        return cls(out, Path(source).stem)

    def to_csv(self, path, cif_column: str = "cif") -> None:
        """The table from_csv reads: one CIF per row (atom order kept, see Crystal.to_cif)
        and one column per scalar property; written atomically."""
        import io

        from dismai.fileio import write_text

        keys: list[str] = []
        for c in self._items:
            keys += [k for k, v in c.properties.items()
                     if k not in keys and k != cif_column and np.ndim(v) == 0]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(keys + [cif_column])
        for i, c in enumerate(self._items):
            w.writerow([c.properties.get(k, "") for k in keys] + [c.to_cif(f"{self.name}_{i}")])
        write_text(path, buf.getvalue())


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text
