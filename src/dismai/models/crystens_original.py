"""The original CrysTens image (Alverson et al. 2024): a general crystal of at most 52 atoms
as a (4, 64, 64) tensor, and the paper's reconstruction with its statistics.

Layout (spec models.md §2.1): lines 0-10 are the header (atomic number, fractional x, y, z,
a, b, c, alpha, beta, gamma, space group), line 11 is empty, lines 12-63 are atom slots.
Atom s's header values sit in its column of the header rows and its row of the header
columns, in all four channels (8 copies).  The block of atom lines holds the fractional
distance (channel 0) and the raw differences x_s - x_t, y_s - y_t, z_s - z_t (channels 1-3).

What we chose where the published code is inconsistent (docs/crystens.md lists each):
* one normalisation on both sides, the "avg_std" scheme, which the published statistics
  script undoes (the stacking script used "divide_near_max", whose pairwise loop only
  touched the last slot row);
* the intended channel-first tensor (channel c = layer c), not the published reshape;
* statistics computed before the in-place averaging (the published ones come out ~0), and
  the coordinate variance over x, y and z (the published loop skips z);
* a crystal that fills all 52 slots keeps its last atom (the published scan drops it);
* the diagonal of the pairwise block is normalised like the rest (the published code leaves
  it at 0, which un-normalises to a difference of -1 and biases every coordinate).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dismai.crystals import Crystal
from dismai.errors import ConfigError, InputError, StructureError

__all__ = ["MAX_ATOMS", "SIDE", "Reconstruction", "ReconstructionKeys", "encode", "normalise",
           "encode_all", "reconstruct", "reconstruct_images", "space_group", "unnormalise"]

SIDE = 64
FIRST_SLOT = 12
MAX_ATOMS = SIDE - FIRST_SLOT  # 52
#: (mean, std, shift, range) per quantity, spec §2.2: n = ((v - mean) / std + shift) /
#: (shift + range), which maps the published training data roughly into [0, 1]
AVG_STD = {
    "atom": (27.5035, 22.4170, 1.18229, 3.18938),
    "x": (0.42520, 0.29346, 1.44891, 1.95865),
    "y": (0.43639, 0.29191, 1.49495, 1.93078),
    "z": (0.44429, 0.29308, 1.51593, 1.89603),
    "a": (7.57640, 2.97694, 1.95301, 11.78648),
    "b": (7.90142, 3.55955, 1.72466, 10.47367),
    "c": (9.93085, 6.74999, 1.15005, 15.74286),
    "alpha": (89.9627, 3.13733, 9.62465, 9.57416),
    "beta": (93.7869, 9.61828, 3.54376, 4.64076),
    "gamma": (95.6598, 12.2375, 3.00230, 1.98898),
    "sg": (99.5019, 76.6564, 1.28498, 1.70238),
    "dir": (0.0, 0.40994, 2.43939, 2.43939),
    "length": (0.66935, 0.23689, 2.73534, 4.15948),
}
HEADER_KEYS = ("atom", "x", "y", "z", "a", "b", "c", "alpha", "beta", "gamma", "sg")
#: published atom count: a line whose alpha differs from the first atom's by this much
ALPHA_BREAK = 0.2


def normalise(v, key: str):
    mean, std, shift, rng = AVG_STD[key]
    return ((np.asarray(v, dtype=np.float64) - mean) / std + shift) / (shift + rng)


def unnormalise(n, key: str):
    mean, std, shift, rng = AVG_STD[key]
    return (np.asarray(n, dtype=np.float64) * (shift + rng) - shift) * std + mean


def space_group(crystal: Crystal, symprec: float = 0.01) -> int:
    """International number from spglib (through pymatgen), 1 where it cannot tell."""
    import warnings

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's error-mode notice
            return int(SpacegroupAnalyzer(crystal.to_pymatgen(), symprec=symprec)
                       .get_space_group_number())
    except Exception:  # spglib gives up on some distorted cells: no symmetry found
        return 1


def encode(crystal: Crystal, sg: int | None = None) -> np.ndarray:
    """One crystal -> (4, 64, 64) float32, normalised; `sg` defaults to spglib's."""
    n = crystal.n_atoms
    if n > MAX_ATOMS:
        raise StructureError(f"the original CrysTens holds at most {MAX_ATOMS} atoms, "
                             f"this crystal has {n}")
    lengths, angles = crystal.lengths_angles
    sg = space_group(crystal) if sg is None else int(sg)
    frac = crystal.frac
    values = [crystal.numbers.astype(np.float64), frac[:, 0], frac[:, 1], frac[:, 2],
              *(np.full(n, v) for v in (*lengths, *angles, sg))]
    header = np.stack([normalise(v, k) for v, k in zip(values, HEADER_KEYS, strict=True)])
    img = np.zeros((4, SIDE, SIDE), dtype=np.float64)
    atoms = slice(FIRST_SLOT, FIRST_SLOT + n)
    img[:, : len(HEADER_KEYS), atoms] = header[None]
    img[:, atoms, : len(HEADER_KEYS)] = header.T[None]
    d = frac[:, None, :] - frac[None, :, :]  # d[s, t] = x_s - x_t
    # the diagonal too: the published code skips s = t, so its 0 un-normalises to a
    # difference of -1.0, which the reconstruction (it includes i = j) then averages in
    img[:, atoms, atoms] = np.concatenate([normalise(np.linalg.norm(d, axis=-1), "length")[None],
                                           normalise(d.transpose(2, 0, 1), "dir")])
    return img.astype(np.float32)


def encode_all(crystals) -> np.ndarray:
    """(M, 4, 64, 64) images of a CrystalSet (or any iterable of crystals)."""
    return np.stack([encode(c) for c in crystals])


@dataclass
class Reconstruction:
    """A reconstructed crystal (None when it failed) and the paper's statistics of the
    image it came from (Table 1 variances, Table 2 agreements)."""

    crystal: Crystal | None
    stats: dict
    reason: str = ""


def _kmeans_1d(values: np.ndarray, k: int, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means on scalars, started at evenly spaced quantiles (deterministic; the
    published code uses scikit-learn's randomised k-means++): returns each value's centre."""
    v = np.asarray(values, dtype=np.float64)
    if k >= len(np.unique(v)):
        return v.copy()
    centres = np.quantile(v, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        lab = np.abs(v[:, None] - centres[None]).argmin(1)
        new = np.array([v[lab == c].mean() if (lab == c).any() else centres[c]
                        for c in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return centres[np.abs(v[:, None] - centres[None]).argmin(1)]


def _n_atoms(img: np.ndarray, rule: str = "lattice") -> int:
    """The number of atom lines before the first empty one.

    ``rule="alpha"``, as published (spec §2.7 step 1): the first line whose alpha differs
    by >= 20 % from the first atom's.  An empty line un-normalises to alpha = 59.8 degrees,
    so a cell with alpha near 60 (many Carbon-24 cells) never breaks and takes empty slots
    for atoms.  The default, ``"lattice"``: the first line whose cell and space-group values
    (lines 4-10, mean of the 8 copies, normalised units) lie closer to an empty line's
    (all 0) than to the first atom's; it does not depend on the cell's values."""
    if rule not in ("alpha", "lattice"):
        raise InputError(f"atom-count rule must be 'alpha' or 'lattice', got {rule!r}")
    if rule == "alpha":
        alpha = unnormalise(img[0, FIRST_SLOT:, 7], "alpha")
        is_atom = np.abs(alpha - alpha[0]) < ALPHA_BREAK * abs(alpha[0])  # NaN: False
    else:
        slots = slice(FIRST_SLOT, SIDE)
        h = np.concatenate([img[:, 4:11, slots], img[:, slots, 4:11].transpose(0, 2, 1)])
        h = h.mean(0)  # (7, 52)
        is_atom = np.linalg.norm(h - h[:, :1], axis=0) < np.linalg.norm(h, axis=0)
    is_atom[0] = True
    return int(np.argmin(is_atom)) if not is_atom.all() else MAX_ATOMS


def reconstruct(img, coord_clusters: int | None = None, element_clusters: int | None = 3,
                count_rule: str = "lattice") -> Reconstruction:
    """A (4, 64, 64) normalised image -> crystal, as the paper's `get_cif` does it: the
    atom count (`count_rule`; "alpha" as published), header averaging (8 copies), cell and
    space group averaged over atoms, pairwise symmetrisation, each coordinate blended from
    its own header value and the estimates of every atom, rounded atomic numbers clustered
    into at most `element_clusters` values (None: not clustered), duplicate atoms removed.
    The statistics are measured on the image before any averaging."""
    img = np.asarray(img, dtype=np.float64)
    if img.shape != (4, SIDE, SIDE):
        raise InputError(f"an original CrysTens image has shape (4, {SIDE}, {SIDE}), "
                         f"got {img.shape}")
    if not np.isfinite(img).all():
        return Reconstruction(None, {}, "NaN or inf in the image")
    n = _n_atoms(img, count_rule)
    num = FIRST_SLOT + n
    atoms = slice(FIRST_SLOT, num)
    # the 8 copies of every header value, un-normalised: (11, 8, n)
    copies = np.stack([unnormalise(np.concatenate([img[:, r, atoms], img[:, atoms, r]]), k)
                       for r, k in enumerate(HEADER_KEYS)])
    head = copies.mean(1)  # (11, n)
    length = unnormalise(img[0, atoms, atoms], "length")
    length = (length + length.T) / 2
    d = unnormalise(img[1:4, atoms, atoms], "dir")  # (3, i, j)
    mag = (np.abs(d) + np.abs(d.transpose(0, 2, 1))) / 2
    d = np.where(d < 0, -mag, mag)  # magnitude symmetrised, sign of [i, j]
    own = head[1:4]  # (3, n)
    r = 1.0 - 1.0 / num
    final = (1 - r) * own + r * (own[:, :, None] - d).mean(1)  # estimates x_i - d[i, j]
    if coord_clusters is not None:
        final = _kmeans_1d(final.ravel(), coord_clusters).reshape(final.shape)
    pair_final = np.linalg.norm(final.T[:, None] - final.T[None], axis=-1)
    stats = {
        "n_atoms": n,
        "lattice_param_variance": float(copies[4:7].reshape(3, -1).var(1).mean()),
        "lattice_angle_variance": float(copies[7:10].reshape(3, -1).var(1).mean()),
        "space_group_variance": float(copies[10].var()),
        "frac_coord_variance": float(copies[1:4].var(1).mean()),
        "pairwise_distance_difference": float(np.abs(length - pair_final).sum() / n),
        "relative_coord_difference": float(np.abs(own - final).mean()),
    }
    z = np.rint(head[0])
    if element_clusters is not None:  # published: 3, so at most 3 elements survive
        z = np.rint(_kmeans_1d(z, min(element_clusters, n)))
    lengths, angles = head[4:7].mean(1), head[7:10].mean(1)
    stats["space_group"] = int(np.rint(head[10].mean()))
    if z.min() < 1 or z.max() > 118:
        return Reconstruction(None, stats, "atomic number outside 1..118")
    frac = final.T % 1.0
    _, keep = np.unique(np.round(np.column_stack([z, frac]), 10), axis=0, return_index=True)
    keep = np.sort(keep)
    try:
        from pymatgen.core import Lattice

        lat = Lattice.from_parameters(*lengths, *angles).matrix
        crystal = Crystal(lat, frac[keep], z[keep].astype(np.int64))
        Crystal.from_cif(crystal.to_cif())  # valid = readable back, as the paper counts
    except (StructureError, ValueError) as exc:
        return Reconstruction(None, stats, str(exc).splitlines()[0])
    return Reconstruction(crystal, stats)


@dataclasses.dataclass
class ReconstructionKeys:
    """Config keys of the models that generate original images: how samples are rebuilt."""

    count_rule: str = "lattice"  # "alpha": the published atom count
    element_clusters: int = 3  # 0: atomic numbers only rounded
    coord_clusters: int = 0  # 0: no coordinate k-means

    RECONSTRUCTION_KEYS = frozenset({"count_rule", "element_clusters", "coord_clusters"})

    def validate_reconstruction(self) -> None:
        if self.count_rule not in ("lattice", "alpha"):
            raise ConfigError(f"count_rule must be lattice or alpha, got {self.count_rule!r}")
        for k in ("element_clusters", "coord_clusters"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k} must be >= 0, got {getattr(self, k)!r}")


def reconstruct_images(images, keys: ReconstructionKeys) -> list[tuple[Crystal | None, str]]:
    """Each (4, 64, 64) image as (crystal carrying the image's statistics, "") or (None,
    why it failed), with the reconstruction settings of a model's config."""
    out = []
    for img in images:
        r = reconstruct(img, coord_clusters=keys.coord_clusters or None,
                        element_clusters=keys.element_clusters or None,
                        count_rule=keys.count_rule)
        if r.crystal is None:
            out.append((None, r.reason))
        else:
            c = r.crystal
            out.append((Crystal(c.lattice, c.frac, c.numbers, dict(r.stats)), ""))
    return out
