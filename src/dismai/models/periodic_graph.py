"""Periodic edge lists and triplets in plain torch, for the message-passing models (CDVAE,
the masked-atom model).

Two graphs as flat edge lists over a batch of crystals on one cell:

* :func:`radius_graph` - GemNet-dT's decoder graph, rebuilt from the (noisy) coordinates at
  every call: the <= ``max_neighbours`` nearest periodic images within ``cutoff`` of every
  atom (spec graph-models §2.4.1), made exactly symmetric by the reference rule, with
  ``id_swap`` mapping every edge to its reverse.
* :func:`crystalnn_graph` - CDVAE's encoder graph: pymatgen ``CrystalNN`` bonds of the clean
  structure (§2.1), from the shared tessellation of :mod:`dismai.metrics.crystalnn` rather than
  a per-site pymatgen loop, cached on disk per dataset (:func:`cached_crystalnn_graphs`).

and :func:`crystal_radius_graph`, the masked-atom model's radius graph of crystals that each
have their own cell and atom count (as many periodic images as a thin cell needs).

An edge e is s -> t (source, target) with integer image o applied to the source: the vector
from source image to target is R_t - (R_s + o L).  Triplets come from one stable sort of the
edges by target (a CSR layout), never from torch_sparse: :func:`gemnet_triplets` (edges b->a
and c->a sharing their target, §2.4.1 step 6) and :func:`dimenet_triplets` (k->j->i, §2.2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dismai.models.periodic_knn import periodic_knn

__all__ = ["SYMMETRISATIONS", "Edges", "radius_graph", "crystal_radius_graph", "gemnet_triplets",
           "dimenet_triplets", "edge_vectors", "crystalnn_bonds", "crystalnn_graph",
           "cached_crystalnn_graphs", "EncoderGraphs", "CDVAE_CRYSTALNN"]


@dataclass
class Edges:
    """A batch of directed periodic edges.

    source, target: (E,) atom indices into the flattened batch (crystal b, atom i -> b N + i);
    image: (E, 3) integer image of the source (float tensor, for matmuls);
    id_swap: (E,) index of each edge's reverse, or None for graphs that do not record it.
    """

    source: torch.Tensor
    target: torch.Tensor
    image: torch.Tensor
    id_swap: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.source.shape[0])


def edge_vectors(cart: torch.Tensor, lattice: torch.Tensor, e: Edges) -> torch.Tensor:
    """(E, 3) vectors from the source image to the target: R_t - (R_s + o L).

    cart: (B N, 3) Cartesian positions; lattice (3, 3), rows = cell vectors."""
    # index_select: its backward is deterministic on the CPU (plain indexing's is not)
    return cart.index_select(0, e.target) - cart.index_select(0, e.source) - e.image @ lattice


# ---------------------------------------------------------------------------- decoder graph
def _earlier(o: torch.Tensor) -> torch.Tensor:
    """o_x < 0, or o_x = 0 and o_y < 0, or o_x = o_y = 0 and o_z < 0 (§2.4.1 step 4)."""
    x, y, z = o.unbind(-1)
    return (x < 0) | ((x == 0) & (y < 0)) | ((x == 0) & (y == 0) & (z < 0))


SYMMETRISATIONS = ("union", "reference")


@torch.no_grad()
def radius_graph(frac: torch.Tensor, lattice: torch.Tensor, cutoff: float = 7.0,
                 max_neighbours: int = 20, symmetrise: str = "union") -> Edges:
    """GemNet-dT's symmetric periodic radius graph (§2.4.1 steps 1-5).

    frac: (B, N, 3) in [0, 1); lattice (3, 3).  Every atom lists its ``max_neighbours``
    nearest images with 1e-4 < d^2 <= cutoff^2 (the reference returns all of them when no
    atom has more, which is the same set).  The lists are not mutual, so they are made
    symmetric:

    * ``"reference"`` (AS-CODED, §2.4.1 step 4): a listed edge (s -> t, o) survives if s < t,
      or s = t and o is "earlier", and every survivor's reverse is added.  Which pairs survive
      then depends on the atom numbering: renumbering the atoms changes the graph, and so the
      prediction, whenever the neighbour cap binds (always, for a-Si at 7 Å);
    * ``"union"`` (default): a pair is an edge both ways if either atom lists the other, which
      is the same for any numbering.  Identical to the reference when the cap does not bind.

    Edges come as K "forward" edges then their K reverses: ``id_swap`` = (arange(2K) + K) mod 2K.
    """
    if symmetrise not in SYMMETRISATIONS:
        raise ValueError(f"symmetrise must be one of {SYMMETRISATIONS}, got {symmetrise!r}")
    b, n, _ = frac.shape
    k = min(max_neighbours, 27 * n - 1)
    dist, idx, shift = periodic_knn(frac, lattice, k)
    keep = (dist * dist > 1e-4) & (dist <= cutoff)
    centre = torch.arange(n, device=frac.device).expand(b, n)[..., None].expand(b, n, k)
    offset = (torch.arange(b, device=frac.device) * n)[:, None, None]
    t = (centre + offset)[keep]  # the centre is the target
    s = (idx + offset)[keep]
    o = shift[keep].round().long()  # neighbour position = frac[s] + o: image of the source
    if symmetrise == "union":  # every listed edge and its reverse, each once
        s, t, o = _unique_edges(torch.cat([s, t]), torch.cat([t, s]), torch.cat([o, -o]), b * n)
    first = (s < t) | ((s == t) & _earlier(o))
    s, t, o = s[first], t[first], o[first]
    kept = s.shape[0]
    src = torch.cat([s, t])
    tgt = torch.cat([t, s])
    img = torch.cat([o, -o]).to(frac.dtype)
    swap = (torch.arange(2 * kept, device=frac.device) + kept) % max(2 * kept, 1)
    return Edges(src, tgt, img, swap)


@torch.no_grad()
def crystal_radius_graph(pos: torch.Tensor, cell: torch.Tensor, natoms: torch.Tensor,
                         cutoff: float = 5.0, max_neighbours: int = 500) -> Edges:
    """Periodic radius graph of crystals with their own cells and atom counts (the
    masked-atom model's on-the-fly graph, spec models.md §7.1).

    pos: (T, 3) Cartesian positions of all crystals one after the other; cell (B, 3, 3),
    rows = cell vectors; natoms (B,).  Every atom t receives an edge from every periodic
    image of every atom s (itself included, not its own zero image) within `cutoff`, the
    nearest `max_neighbours` of them if there are more.  A cell thinner than the cutoff
    gets as many images as it needs (a 4 Å perovskite at 5 Å: up to +-2 along each axis).
    Edge vectors (use edge_vectors per crystal, or ``pos[t] - pos[s] - image @ cell``)
    depend only on the geometry, so the graph is the same for a rotated crystal."""
    srcs, tgts, imgs = [], [], []
    start = 0
    for b, n in enumerate(natoms.tolist()):
        lat = cell[b]
        p = pos[start:start + n]
        vol = torch.abs(torch.det(lat))
        widths = vol / torch.linalg.norm(torch.cross(lat[[1, 2, 0]], lat[[2, 0, 1]], dim=-1),
                                         dim=-1)
        reach = [int(torch.ceil(cutoff / w)) for w in widths]
        grids = torch.meshgrid(*[torch.arange(-r, r + 1, device=pos.device) for r in reach],
                               indexing="ij")
        images = torch.stack([g.reshape(-1) for g in grids], 1).to(pos.dtype)  # (I, 3)
        # vec[i, s, t] = p_t - (p_s + image_i @ lat)
        vec = p[None, None, :, :] - p[None, :, None, :] - (images @ lat)[:, None, None, :]
        d = torch.linalg.norm(vec, dim=-1)  # (I, s, t)
        ok = (d <= cutoff) & (d > 1e-8)
        i, s_, t_ = torch.nonzero(ok, as_tuple=True)
        dist = d[i, s_, t_]
        if max_neighbours and len(dist):
            order = torch.argsort(dist, stable=True)  # nearest first, then stably by target
            i, s_, t_, dist = i[order], s_[order], t_[order], dist[order]
            order = torch.argsort(t_, stable=True)
            i, s_, t_ = i[order], s_[order], t_[order]
            rank = torch.arange(len(t_), device=pos.device) - torch.searchsorted(t_, t_)
            keep = rank < max_neighbours
            i, s_, t_ = i[keep], s_[keep], t_[keep]
        srcs.append(s_ + start)
        tgts.append(t_ + start)
        imgs.append(images[i])
        start += n
    return Edges(torch.cat(srcs), torch.cat(tgts), torch.cat(imgs))


def _unique_edges(s, t, o, n_nodes: int):
    """Distinct (s, t, o) rows, o in {-1, 0, 1}^3, through one int64 key (a 1-d unique is
    ~100x faster than ``torch.unique(dim=0)``)."""
    code = ((o[:, 0] + 1) * 9 + (o[:, 1] + 1) * 3 + (o[:, 2] + 1))
    key = torch.unique((s * n_nodes + t) * 27 + code)
    code, st = key % 27, key // 27
    o = torch.stack([code // 9, (code // 3) % 3, code % 3], 1) - 1
    return st // n_nodes, st % n_nodes, o


def _csr_by(key: torch.Tensor, n_nodes: int):
    """Stable order of the edges by `key` and the row pointer of that order."""
    perm = torch.sort(key, stable=True).indices
    deg = torch.bincount(key, minlength=n_nodes)
    ptr = torch.zeros(n_nodes + 1, dtype=torch.long, device=key.device)
    ptr[1:] = torch.cumsum(deg, 0)
    return perm, deg, ptr


def _ragged_arange(counts: torch.Tensor) -> torch.Tensor:
    """concat(arange(c) for c in counts), without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return counts.new_zeros(0)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(total, device=counts.device) - torch.repeat_interleave(starts, counts)


@torch.no_grad()
def gemnet_triplets(e: Edges, n_nodes: int):
    """GemNet triplets: for every edge c->a, every other edge b->a with the same target
    (by edge id, so b = c through another image counts).  Returns (id3_ba, id3_ca, ragged)
    with id3_ca sorted and ``ragged`` the position of each triplet within its c->a group."""
    perm, deg, ptr = _csr_by(e.target, n_nodes)
    n_edges = len(e)
    counts = deg[e.target]
    id3_ca = torch.repeat_interleave(torch.arange(n_edges, device=deg.device), counts)
    offs = _ragged_arange(counts)
    id3_ba = perm[ptr[e.target[id3_ca]] + offs]
    keep = id3_ba != id3_ca
    id3_ba, id3_ca = id3_ba[keep], id3_ca[keep]
    ragged = _ragged_arange(torch.bincount(id3_ca, minlength=n_edges))
    return id3_ba, id3_ca, ragged


@torch.no_grad()
def dimenet_triplets(e: Edges, n_nodes: int):
    """DimeNet++ triplets k->j->i: for edge j->i (idx_ji), every edge k->j whose source k is
    not atom i (AS-CODED: by atom index, so k = an image of i is dropped too).
    Returns (idx_kj, idx_ji)."""
    perm, deg, ptr = _csr_by(e.target, n_nodes)
    n_edges = len(e)
    counts = deg[e.source]  # edges into j = the source of j->i
    idx_ji = torch.repeat_interleave(torch.arange(n_edges, device=deg.device), counts)
    idx_kj = perm[ptr[e.source[idx_ji]] + _ragged_arange(counts)]
    keep = e.source[idx_kj] != e.target[idx_ji]
    return idx_kj[keep], idx_ji[keep]


# ---------------------------------------------------------------------------- encoder graph
def _crystalnn_settings():
    from dismai.metrics.crystalnn import CrystalNNSettings

    # CDVAE: CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False);
    # pymatgen applies the electronegativity factor only for x_diff_weight > 0.
    return CrystalNNSettings(distance_cutoffs=None, x_diff_weight=-1.0,
                             porous_adjustment=False)


#: The encoder graph's CrystalNN settings (spec graph-models §2.1).
CDVAE_CRYSTALNN = "CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)"


def crystalnn_bonds(lattice: np.ndarray, frac: np.ndarray, species) -> np.ndarray:
    """(M, 5) int64 undirected CrystalNN bonds (i, j, o_x, o_y, o_z): site j at image o is a
    most-probable-CN neighbour of site i (or the reverse), each bond once, as pymatgen's
    ``StructureGraph.with_local_env_strategy`` stores it (the union of the per-site
    neighbour lists, i <= j, an (i, i) bond with its image o or -o but not both).

    frac is wrapped into [0, 1) first, so the images refer to the wrapped sites.
    """
    from dismai.metrics.crystalnn import (
        SpeciesTable,
        crystalnn_nn_data,
        most_probable_neighbours,
        voronoi_cells,
    )

    frac = np.asarray(frac, dtype=np.float64) % 1.0
    settings = _crystalnn_settings()
    species = list(species)
    table = SpeciesTable.from_symbols(species)
    cells = voronoi_cells(lattice, frac, settings.search_cutoff, list(range(len(frac))),
                          species=species)
    inv = np.linalg.inv(lattice)
    bonds = set()
    for i, cell in enumerate(cells):
        faces = np.asarray(most_probable_neighbours(crystalnn_nn_data(cell, i, table, settings)),
                           dtype=np.int64)
        for f in faces:
            j = int(cell.nbr_index[f])
            o = np.rint(cell.nbr_cart[f] @ inv - frac[j]).astype(np.int64)
            a, b, img = (i, j, o) if i <= j else (j, i, -o)
            if a == b and tuple(img) < (0, 0, 0):
                img = -img
            bonds.add((a, b, *map(int, img)))
    return np.array(sorted(bonds), dtype=np.int64).reshape(-1, 5)


def crystalnn_graph(bonds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges of one structure from its bonds, both ways as CDVAE stores them:
    [j -> i with o] then [i -> j with -o] per bond.  Returns (edge_index (2, E) with row 0 =
    source, row 1 = target; images (E, 3) of the source)."""
    i, j, o = bonds[:, 0], bonds[:, 1], bonds[:, 2:]
    src = np.stack([j, i], 1).reshape(-1)
    tgt = np.stack([i, j], 1).reshape(-1)
    img = np.stack([o, -o], 1).reshape(-1, 3)
    return np.stack([src, tgt]), img


@dataclass
class EncoderGraphs:
    """CrystalNN bonds of a set of structures: bonds (M, 5) and ptr (n + 1,) so that
    structure k owns bonds[ptr[k]:ptr[k+1]]."""

    bonds: np.ndarray
    ptr: np.ndarray

    def edges(self, items, n_atoms: int) -> Edges:
        """Directed edges of structures ``items`` stacked in that order as one batch."""
        src, tgt, img = [], [], []
        for slot, k in enumerate(items):
            ei, im = crystalnn_graph(self.bonds[self.ptr[k]:self.ptr[k + 1]])
            src.append(ei[0] + slot * n_atoms)
            tgt.append(ei[1] + slot * n_atoms)
            img.append(im)
        return Edges(torch.from_numpy(np.concatenate(src)), torch.from_numpy(np.concatenate(tgt)),
                     torch.from_numpy(np.concatenate(img)).double())


def _graphs_key(lattice, species, frac) -> str:
    h = hashlib.sha256()
    h.update(CDVAE_CRYSTALNN.encode())
    h.update(np.ascontiguousarray(lattice, dtype=np.float64).tobytes())
    h.update(",".join(species).encode())
    h.update(np.ascontiguousarray(frac, dtype=np.float64).tobytes())
    return h.hexdigest()


def _bonds_job(args):
    lattice, frac, species = args
    return crystalnn_bonds(lattice, frac, species)


def cached_crystalnn_graphs(structures, cache_dir: Path | None = None,
                            workers: int = 1) -> tuple[EncoderGraphs, bool]:
    """CrystalNN bonds of every structure, computed once and kept in
    ``cache_dir/crystalnn-<sha256 of settings, cell, species, coordinates>.pt`` (default: the
    user cache folder), so a dataset's graphs are built on first use and read afterwards.
    Returns (graphs, True if read from the cache).  Cache files are written atomically and
    read with weights_only; a file whose stored key differs is rebuilt."""
    from dismai.datasets.registry import user_cache_dir
    from dismai.fileio import atomic_path
    from dismai.metrics.crystalnn import map_structures

    key = _graphs_key(structures.lattice, structures.species, structures.frac)
    folder = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "graphs"
    path = folder / f"crystalnn-{key[:32]}.pt"
    if path.is_file():
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if data.get("key") == key:
                return EncoderGraphs(data["bonds"].numpy(), data["ptr"].numpy()), True
        except Exception:  # a damaged cache file is rebuilt
            pass
    jobs = [(structures.lattice, f, structures.species) for f in structures.frac]
    per = map_structures(_bonds_job, jobs, n_workers=workers)
    ptr = np.zeros(len(per) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(b) for b in per])
    bonds = np.concatenate(per) if per else np.zeros((0, 5), dtype=np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save({"key": key, "settings": CDVAE_CRYSTALNN, "bonds": torch.from_numpy(bonds),
                    "ptr": torch.from_numpy(ptr)}, tmp)
    return EncoderGraphs(bonds, ptr), False
