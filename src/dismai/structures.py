"""The one data type every part of dismai passes around.

A Dismai-Bench dataset is M structures that share one cell, one atom count and one
species order in contiguous blocks (e.g. 51 Cr, then 154 Fe, then 51 Ni).  Storing it
as a single (M, N, 3) array of fractional coordinates makes models, metrics and I/O
vectorised and keeps the block layout (which the point-cloud and image models rely on)
explicit instead of implied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dismai.errors import StructureError

__all__ = ["StructureSet", "StructureError", "species_blocks"]


def species_blocks(species: Sequence[str]) -> list[tuple[str, int, int]]:
    """Return [(symbol, start, stop), ...] for a block-ordered species list.

    Raises StructureError if a species appears in more than one block.
    """
    blocks: list[tuple[str, int, int]] = []
    for i, s in enumerate(species):
        if blocks and blocks[-1][0] == s:
            sym, start, _ = blocks[-1]
            blocks[-1] = (sym, start, i + 1)
        else:
            if any(b[0] == s for b in blocks):
                raise StructureError(
                    f"species {s!r} appears in more than one block (atom {i}); "
                    "species must be contiguous"
                )
            blocks.append((s, i, i + 1))
    return blocks


@dataclass(frozen=True, eq=False)
class StructureSet:
    """M structures with one shared cell and one block-ordered species list.

    lattice: (3, 3) cell vectors as rows, in Å.
    species: N chemical symbols, contiguous per species.
    frac:    (M, N, 3) fractional coordinates (not forced into [0, 1)).
    properties: optional per-structure arrays whose first axis has length M
                (e.g. energies); carried through subsetting and extxyz.
    """

    lattice: np.ndarray
    species: tuple[str, ...]
    frac: np.ndarray
    properties: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lattice = np.asarray(self.lattice, dtype=np.float64)
        frac = np.asarray(self.frac, dtype=np.float64)
        species = tuple(str(s) for s in self.species)
        if lattice.shape != (3, 3):
            raise StructureError(f"lattice must be 3x3, got shape {lattice.shape}")
        if not np.all(np.isfinite(lattice)) or abs(np.linalg.det(lattice)) < 1e-8:
            raise StructureError("lattice is singular or not finite")
        if frac.ndim == 2:
            frac = frac[None]
        if frac.ndim != 3 or frac.shape[2] != 3:
            raise StructureError(f"frac must have shape (M, N, 3), got {frac.shape}")
        if frac.shape[1] != len(species):
            raise StructureError(
                f"frac has {frac.shape[1]} atoms per structure but species lists {len(species)}"
            )
        if len(species) < 1:
            raise StructureError("a structure needs at least one atom")
        bad = ~np.isfinite(frac).all(axis=(1, 2))
        if bad.any():
            raise StructureError(f"structure {int(np.argmax(bad))}: coordinates are NaN or inf")
        species_blocks(species)
        props = {}
        for k, v in self.properties.items():
            v = np.asarray(v)
            if v.shape[:1] != (frac.shape[0],):
                raise StructureError(
                    f"property {k!r} has leading length {v.shape[:1]}, expected {frac.shape[0]}"
                )
            props[k] = v
        object.__setattr__(self, "lattice", lattice)
        object.__setattr__(self, "frac", frac)
        object.__setattr__(self, "species", species)
        object.__setattr__(self, "properties", props)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.frac.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.frac.shape[1]

    @property
    def blocks(self) -> list[tuple[str, int, int]]:
        """[(symbol, start, stop)] in block order."""
        return species_blocks(self.species)

    @property
    def composition(self) -> dict[str, int]:
        """Species counts in block order, e.g. {'Cr': 51, 'Fe': 154, 'Ni': 51}."""
        return {s: b - a for s, a, b in self.blocks}

    @property
    def formula(self) -> str:
        return "".join(f"{s}{n}" for s, n in self.composition.items())

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))

    def cart(self) -> np.ndarray:
        """Cartesian coordinates, (M, N, 3) in Å."""
        return self.frac @ self.lattice

    def wrapped(self) -> StructureSet:
        """Copy with fractional coordinates wrapped into [0, 1)."""
        f = self.frac % 1.0
        f[f >= 1.0] = 0.0  # -1e-17 % 1 == 1.0 in floating point
        return self.with_frac(f, self.properties)

    def with_frac(self, frac: np.ndarray, properties: dict | None = None) -> StructureSet:
        """Same cell and species, new coordinates."""
        return StructureSet(self.lattice, self.species, frac, properties or {})

    def __getitem__(self, idx) -> StructureSet:
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        return StructureSet(
            self.lattice,
            self.species,
            self.frac[idx],
            {k: v[idx] for k, v in self.properties.items()},
        )

    def same_template(self, other: StructureSet, atol: float = 1e-4) -> bool:
        return (
            self.species == other.species
            and np.allclose(self.lattice, other.lattice, atol=atol)
        )

    @staticmethod
    def concat(sets: Sequence[StructureSet]) -> StructureSet:
        if not sets:
            raise StructureError("nothing to concatenate")
        first = sets[0]
        for i, s in enumerate(sets[1:], 1):
            if not first.same_template(s):
                raise StructureError(f"set {i} has a different cell or species order")
        keys = set(first.properties)
        props = {}
        if all(set(s.properties) == keys for s in sets):
            props = {k: np.concatenate([s.properties[k] for s in sets]) for k in keys}
        return StructureSet(first.lattice, first.species, np.concatenate([s.frac for s in sets]),
                            props)

    def __repr__(self) -> str:
        a, b, c = np.linalg.norm(self.lattice, axis=1)
        return (
            f"StructureSet({len(self)} x {self.formula}, cell {a:.3f} x {b:.3f} x {c:.3f} Å)"
        )

    # ------------------------------------------------------------------ ASE
    def to_atoms(self) -> list:
        """Lossless conversion to a list of ase.Atoms (positions = frac @ lattice)."""
        from ase import Atoms

        out = []
        cart = self.cart()
        for i in range(len(self)):
            at = Atoms(symbols=list(self.species), positions=cart[i], cell=self.lattice,
                       pbc=True)
            for k, v in self.properties.items():
                val = v[i]
                at.info[k] = val.item() if np.ndim(val) == 0 else np.asarray(val)
            out.append(at)
        return out

    @classmethod
    def from_atoms(
        cls,
        atoms_list: Iterable,
        template: StructureSet | None = None,
        cell_atol: float = 1e-3,
        source: str = "input",
        labels: Sequence[str] | None = None,
    ) -> StructureSet:
        """Build a set from ase.Atoms, validating that they share one template.

        Atoms are stably sorted into species blocks (the template's block order if a
        template is given, otherwise the order of first appearance in the first
        structure).  A cell with the expected lengths and angles in another orientation
        (rotated, as pymatgen's c-along-z convention against ASE's a-along-x, or mirrored)
        is the same lattice: its own fractional coordinates are used.  Every problem is
        reported as one StructureError naming the structure (``labels[i]``, e.g. its file,
        or "source: structure i") and what is wrong.
        """
        atoms_list = list(atoms_list)
        if not atoms_list:
            raise StructureError(f"{source}: contains no structures")
        first = atoms_list[0]
        if template is not None:
            lattice = template.lattice
            comp = template.composition
        else:
            lattice = np.asarray(first.cell.array, dtype=float)
            comp = {}
            for s in first.get_chemical_symbols():
                comp[s] = comp.get(s, 0) + 1
        order = {s: i for i, s in enumerate(comp)}
        species = tuple(s for s, n in comp.items() for _ in range(n))
        n_atoms = len(species)
        frac = np.empty((len(atoms_list), n_atoms, 3))
        inv = np.linalg.inv(lattice)
        for i, at in enumerate(atoms_list):
            where = labels[i] if labels is not None else f"{source}: structure {i}"
            cell = np.asarray(at.cell.array, dtype=float)
            if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-8:
                raise StructureError(f"{where}: has no periodic cell")
            same_matrix = np.allclose(cell, lattice, atol=cell_atol)
            if not same_matrix:
                _check_same_lattice(cell, lattice, cell_atol, where)
            syms = at.get_chemical_symbols()
            if len(syms) != n_atoms:
                raise StructureError(
                    f"{where}: has {len(syms)} atoms, expected {n_atoms} "
                    f"({''.join(f'{s}{n}' for s, n in comp.items())})"
                )
            unknown = sorted(set(syms) - set(order))
            if unknown:
                raise StructureError(
                    f"{where}: unexpected species {unknown}, expected only {list(comp)}"
                )
            counts = {s: syms.count(s) for s in comp}
            if counts != comp:
                raise StructureError(f"{where}: species counts {counts}, expected {comp}")
            pos = np.asarray(at.positions, dtype=float)
            if not np.all(np.isfinite(pos)):
                raise StructureError(f"{where}: coordinates are NaN or inf")
            perm = sorted(range(n_atoms), key=lambda j: order[syms[j]])
            # the same lattice in another orientation: its own fractional coordinates
            frac[i] = pos[perm] @ (inv if same_matrix else np.linalg.inv(cell))
        props = _collect_info(atoms_list)
        return cls(lattice, species, frac, props)


def cell_parameters(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths a, b, c in Å, angles alpha, beta, gamma in degrees) of a (3, 3) cell."""
    cell = np.asarray(cell, dtype=float)
    lengths = np.linalg.norm(cell, axis=1)
    angles = []
    for i, j in ((1, 2), (0, 2), (0, 1)):
        c = np.dot(cell[i], cell[j]) / (lengths[i] * lengths[j])
        angles.append(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
    return lengths, np.array(angles)


def _check_same_lattice(cell: np.ndarray, lattice: np.ndarray, atol: float, where: str):
    """Refuse, in one line, a cell whose lengths or angles differ from the expected lattice's.

    Equal lengths and angles mean the cell is the expected one rotated (or mirrored): every
    interatomic distance, hence every metric, is the same on its fractional coordinates.
    Lengths must agree within `atol` Å, angles within atol / (longest edge) radians, the
    angular change a shift of `atol` at the far end of an edge makes.
    """
    la, aa = cell_parameters(cell)
    lb, ab = cell_parameters(lattice)
    angle_tol = np.degrees(atol / max(lb.max(), 1e-12))
    if not np.allclose(la, lb, atol=atol):
        raise StructureError(
            f"{where}: cell lengths {np.round(la, 4).tolist()} Å differ from the expected "
            f"{np.round(lb, 4).tolist()} Å")
    if not np.allclose(aa, ab, atol=max(angle_tol, 1e-6)):
        raise StructureError(
            f"{where}: cell angles {np.round(aa, 3).tolist()}° differ from the expected "
            f"{np.round(ab, 3).tolist()}°")


def _collect_info(atoms_list: list) -> dict[str, np.ndarray]:
    """Scalar per-structure info keys present in every structure become properties."""
    keys = set(atoms_list[0].info)
    for at in atoms_list[1:]:
        keys &= set(at.info)
    props = {}
    for k in sorted(keys):
        vals = [at.info[k] for at in atoms_list]
        try:
            arr = np.asarray(vals)
        except Exception:
            continue
        if arr.dtype.kind in "biuf" and arr.ndim >= 1:
            props[k] = arr
    return props
