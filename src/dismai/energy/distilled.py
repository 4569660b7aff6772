"""A small equivariant interatomic potential for one fixed-cell system, distilled from a
universal teacher (CHGNet) so that thousands of relaxations fit on a laptop CPU.

The network is NequIP-shaped (l <= 1, plain torch): species embedding, Bessel radial basis
with a smooth polynomial cutoff, `n_layers` interaction blocks (per-edge tensor products of
node features with the edge's spherical harmonics, weighted by a bias-free radial MLP,
summed over neighbours, then a self-connection and a gated nonlinearity), and a per-atom
scalar energy, plus a fixed repulsive wall per species pair below the closest distance the
training data ever show (`pair_floor`): without it the network, never told what happens
there, put half of its held-out minima on Cl-O 1.45 A, Cl-Cl 1.3 A or O-O 1.4 A contacts,
where CHGNet's forces are 9-15 eV/A (docs/interface.md).  The wall is zero on every
training frame, so it does not change the fit.
Forces are -dE/dx by autograd, so they are exactly conservative and rotate with the
structure.  Every structure of the system shares one cell (a `StructureSet` template), so
the periodic radius graph is a brute-force search over the few images the cutoff reaches.

`DistilledModel` is the `EnergyModel` the relaxation engines use; it checks the weights
file against its manifest's SHA-256 and loads it with ``weights_only=True``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from torch import nn

from dismai.energy.base import CalculatorModel
from dismai.errors import InputError
from dismai.provenance import file_sha256

__all__ = ["PotentialNet", "radius_edges", "DistilledModel", "DistilledCalculator", "DTYPES",
           "load_potential", "shipped_potential_dir"]


#: the floating-point types a distilled potential runs in, by name (recipes, CLI)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


#: eV/A^3 of the wall k (r0 - r)^3 below a pair's floor r0: 0.1 A inside it costs 0.05 eV
#: and pushes with 1.5 eV/A; 0.7 A inside (a Cl-O 1.45 A contact under a 2.15 A floor),
#: 17 eV and 74 eV/A
WALL_STIFFNESS = 50.0


def _floor_matrix(species: list[str], pair_floor: dict) -> torch.Tensor:
    """Symmetric (S, S) matrix of the pair floors ('A-B': r0 in A) in `species` order."""
    floor = torch.zeros(len(species), len(species), dtype=torch.float64)
    for key, r0 in pair_floor.items():
        a, _, b = key.partition("-")
        if a not in species or b not in species:
            raise InputError(f"pair_floor names {key!r}; the potential knows {species}")
        i, j = species.index(a), species.index(b)
        floor[i, j] = floor[j, i] = float(r0)
    return floor


def _image_shifts(lattice: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Integer image offsets (S, 3) that can hold a neighbour within `cutoff`."""
    inv = torch.linalg.inv(lattice)
    # distance between opposite faces of the cell along each reciprocal direction
    reach = [math.ceil(cutoff * float(torch.linalg.norm(inv[:, i]))) for i in range(3)]
    grids = [torch.arange(-r, r + 1, dtype=lattice.dtype) for r in reach]
    return torch.stack(torch.meshgrid(*grids, indexing="ij"), -1).reshape(-1, 3)


@torch.no_grad()
def radius_edges(cart: torch.Tensor, lattice: torch.Tensor, cutoff: float):
    """All periodic pairs closer than `cutoff` in a batch of one cell.

    cart (B, N, 3). Returns (source, target, image) with atom indices into the flattened
    batch and the image (E, 3) of the source: vector = x_t - x_s - image @ lattice."""
    b, n, _ = cart.shape
    lattice = lattice.to(torch.float64)
    shifts = _image_shifts(lattice, cutoff).to(cart.device)
    off = shifts @ lattice  # (S, 3)
    # drop images whose bounding box stays farther than the cutoff from the cell's atoms
    # (with a vacuum slab, the images along c)
    c64 = cart.to(torch.float64)
    span = (c64.amax((0, 1)) - c64.amin((0, 1)))
    gap = (off.abs() - span).clamp(min=0)
    near = gap.square().sum(-1) < cutoff * cutoff
    shifts, off = shifts[near], off[near]
    n_img = shifts.shape[0]
    zero = int(((shifts == 0).all(-1)).nonzero()[0])
    # pairs a little past the cutoff are harmless (the envelope is 0 there): the margin
    # keeps pairs just inside from being lost to rounding
    limit = cutoff * cutoff + 1e-6
    src, tgt, img = [], [], []
    for k in range(b):
        x = cart[k].to(torch.float64)
        y = (x[None, :, :] + off[:, None, :]).reshape(-1, 3)  # (S N, 3): image m of atom s
        d2 = (x.square().sum(-1)[:, None] + y.square().sum(-1)[None, :]
              - 2.0 * x @ y.T)  # (N targets, S N sources)
        keep = d2 < limit
        keep.view(n, n_img, n)[:, zero, :].fill_diagonal_(False)
        t, col = keep.nonzero(as_tuple=True)
        m, s = col // n, col % n
        src.append(s + k * n)
        tgt.append(t + k * n)
        img.append(shifts[m])
    # vector = x_t - (x_s + image @ lattice); image is the source's image
    return torch.cat(src), torch.cat(tgt), torch.cat(img).to(cart.dtype)


class _Bessel(nn.Module):
    """sqrt(2) sin(k pi x) / x with x = r / rc, k = 1..n, times NequIP's polynomial envelope
    (p = 6), which goes to 0 with its first derivatives at the cutoff.  Scaled to be of order
    1 (NequIP's 2/rc sin(k pi x)/r is the same up to a constant) so a network initialised to
    keep variances starts with forces of the teacher's size."""

    def __init__(self, cutoff: float, n: int = 8, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = p
        self.register_buffer("k", torch.arange(1, n + 1, dtype=torch.get_default_dtype()) * math.pi)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = r / self.cutoff
        p = self.p
        env = (1 - (p + 1) * (p + 2) / 2 * x ** p + p * (p + 2) * x ** (p + 1)
               - p * (p + 1) / 2 * x ** (p + 2)) * (x < 1)
        return math.sqrt(2.0) * torch.sin(self.k * x[:, None]) / x[:, None] * env[:, None]


#: 1 / sqrt(E[silu(z)^2]) for z ~ N(0, 1): keeps activations of unit second moment
_SILU_NORM = 1.679


def _silu(x: torch.Tensor) -> torch.Tensor:
    return _SILU_NORM * torch.nn.functional.silu(x)


def _linear(fan_in: int, fan_out: int, bias: bool = False) -> nn.Linear:
    """A linear map initialised to keep the second moment (weights N(0, 1/fan_in))."""
    lin = nn.Linear(fan_in, fan_out, bias=bias)
    nn.init.normal_(lin.weight, 0.0, 1.0 / math.sqrt(fan_in))
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


class _RadialMLP(nn.Module):
    """Bias-free MLP of the radial basis, its hidden layer scaled per species pair: every
    pair of elements gets its own radial functions (a Li-O contact is not a Cl-Cl one),
    and the output is zero wherever the basis is (at the cutoff)."""

    def __init__(self, n_radial: int, hidden: int, n_out: int, n_species: int):
        super().__init__()
        self.l1, self.l2 = _linear(n_radial, hidden), _linear(hidden, n_out)
        self.n_species = n_species
        self.pair = nn.Parameter(torch.ones(n_species * n_species, hidden))

    def forward(self, rbf: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        return self.l2(_silu(self.l1(rbf)) * self.pair.index_select(0, pair))


class _Interaction(nn.Module):
    """One message-passing block on scalar (N, C) and vector (N, C, 3) features.

    The messages are the l <= 1 tensor products of a neighbour's features with the edge's
    spherical harmonics (1 and the unit vector), each path weighted per edge by a radial
    MLP without biases (so every message vanishes smoothly at the cutoff):
    s (x) 1 -> scalar, v . r -> scalar, s (x) r -> vector, v (x) 1 -> vector.  They are
    summed at the target, mixed by channel-wise linear maps, added to a species-dependent
    self-connection and passed through a gate (SiLU on scalars, sigmoid gates on vectors).
    This is NequIP at l_max = 1 (without the parity-odd cross-product path), written in
    plain torch because e3nn's general tensor product is several times slower here."""

    def __init__(self, channels: int, n_radial: int, n_species: int, avg_neighbours: float,
                 first: bool):
        super().__init__()
        c = channels
        self.c, self.first = c, first
        self.norm = 1.0 / math.sqrt(avg_neighbours)
        n_paths = 2 if first else 4
        self.radial = _RadialMLP(n_radial, 32, n_paths * c, n_species)
        self.lin_s = _linear(c, c)
        n_ms = 1 if first else 2
        n_mv = 1 if first else 2
        self.out_s = _linear(n_ms * c, 2 * c)
        self.out_v = nn.Parameter(torch.randn(n_mv * c, c) / math.sqrt(n_mv * c))
        self.self_s = nn.Parameter(torch.randn(n_species, c, 2 * c) / math.sqrt(c))
        if not first:
            self.lin_v = nn.Parameter(torch.randn(c, c) / math.sqrt(c))
            self.self_v = nn.Parameter(torch.randn(n_species, c, c) / math.sqrt(c))

    def forward(self, s, v, species_idx, unit, rbf, src, tgt):
        n, c = s.shape[0], self.c
        pair = species_idx.index_select(0, src) * self.radial.n_species + \
            species_idx.index_select(0, tgt)
        w = self.radial(rbf, pair)
        hs = self.lin_s(s).index_select(0, src)
        ms = [w[:, :c] * hs]
        mv = [w[:, c:2 * c, None] * hs[:, :, None] * unit[:, None, :]]
        if not self.first:
            hv = torch.einsum("nci,cd->ndi", v, self.lin_v).index_select(0, src)
            ms.append(w[:, 2 * c:3 * c] * (hv * unit[:, None, :]).sum(-1))
            mv.append(w[:, 3 * c:, None] * hv)
        ms = torch.cat(ms, 1)
        mv = torch.cat(mv, 1)
        agg_s = torch.zeros(n, ms.shape[1], dtype=s.dtype, device=s.device).index_add(0, tgt, ms)
        agg_v = torch.zeros(n, mv.shape[1], 3, dtype=s.dtype, device=s.device).index_add(0, tgt, mv)
        u_s = self.out_s(agg_s * self.norm) + torch.einsum(
            "nc,ncd->nd", s, self.self_s.index_select(0, species_idx))
        u_v = torch.einsum("nci,cd->ndi", agg_v * self.norm, self.out_v)
        if not self.first:
            u_v = u_v + torch.einsum("nci,ncd->ndi", v, self.self_v.index_select(0, species_idx))
        # the sigmoid gates average 1/2: the factor 2 keeps the vectors' size
        return _silu(u_s[:, :c]), 2.0 * u_v * torch.sigmoid(u_s[:, c:])[..., None]


class PotentialNet(nn.Module):
    """Total energy (B,) of a batch of structures of one cell and species template."""

    def __init__(self, species: list[str], cutoff: float = 5.0, channels: int = 32,
                 n_layers: int = 2, n_radial: int = 8, avg_neighbours: float = 38.0,
                 energy_shift: float = 0.0, energy_scale: float = 1.0,
                 pair_floor: dict | None = None, wall_stiffness: float = WALL_STIFFNESS):
        super().__init__()
        pair_floor = {k: float(v) for k, v in sorted((pair_floor or {}).items())}
        self.config = {"species": list(species), "cutoff": float(cutoff),
                       "channels": int(channels), "n_layers": int(n_layers),
                       "n_radial": int(n_radial), "avg_neighbours": float(avg_neighbours),
                       "energy_shift": float(energy_shift),
                       "energy_scale": float(energy_scale), "pair_floor": pair_floor,
                       "wall_stiffness": float(wall_stiffness)}
        self.species = list(species)
        self.cutoff = float(cutoff)
        ns = len(species)
        self.embed = nn.Embedding(ns, channels)  # N(0, 1) entries
        self.radial = _Bessel(cutoff, n_radial)
        self.layers = nn.ModuleList(
            _Interaction(channels, n_radial, ns, avg_neighbours, first=(i == 0))
            for i in range(n_layers))
        self.readout = nn.Sequential(_linear(channels, channels, bias=True), nn.SiLU(),
                                     _linear(channels, 1, bias=True))
        self.register_buffer("shift", torch.tensor(float(energy_shift)))
        self.register_buffer("scale", torch.tensor(float(energy_scale)))
        self.wall_stiffness = float(wall_stiffness)
        self.floor = _floor_matrix(self.species, pair_floor)  # (S, S) A; 0 = no wall

    def species_index(self, species) -> torch.Tensor:
        lookup = {s: i for i, s in enumerate(self.species)}
        unknown = sorted(set(species) - set(lookup))
        if unknown:
            raise InputError(f"the potential knows {self.species}; got {unknown}")
        return torch.tensor([lookup[s] for s in species])

    def forward(self, cart: torch.Tensor, lattice: torch.Tensor,
                species_idx: torch.Tensor) -> torch.Tensor:
        """cart (B, N, 3) Å (may require grad), lattice (3, 3), species_idx (N,)."""
        b, n, _ = cart.shape
        src, tgt, img = radius_edges(cart.detach(), lattice, self.cutoff)
        flat = cart.reshape(b * n, 3)
        vec = flat.index_select(0, tgt) - flat.index_select(0, src) - img @ lattice
        r = vec.norm(dim=-1)
        unit = vec / r[:, None]
        rbf = self.radial(r)
        idx = species_idx.to(cart.device).repeat(b)
        s, v = self.embed(idx), None
        for layer in self.layers:
            s, v = layer(s, v, idx, unit, rbf, src, tgt)
        e_atom = self.readout(s).reshape(b, n)
        energy = (e_atom * self.scale + self.shift).sum(-1)
        if self.floor.any():
            r0 = self.floor.to(r).index_select(0, idx[src]).gather(1, idx[tgt][:, None])[:, 0]
            # both directions of each pair are edges: half the wall per edge
            wall = 0.5 * self.wall_stiffness * (r0 - r).clamp(min=0.0) ** 3
            energy = energy.index_add(0, tgt // n, wall)
        return energy

    def energy_forces(self, cart: torch.Tensor, lattice: torch.Tensor,
                      species_idx: torch.Tensor, create_graph: bool = False):
        cart = cart.detach().requires_grad_(True)
        e = self(cart, lattice, species_idx)
        (g,) = torch.autograd.grad(e.sum(), cart, create_graph=create_graph)
        return e, -g


def shipped_potential_dir() -> Path:
    return Path(__file__).parent / "data"


def load_potential(weights_path, manifest_path=None) -> tuple[PotentialNet, dict]:
    """Load a distilled potential and check it against its manifest.

    The manifest (JSON beside the weights unless given) names the weights' SHA-256; a
    mismatch is an InputError, as is a missing file."""
    weights_path = Path(weights_path)
    manifest_path = Path(manifest_path or weights_path.with_suffix(".json"))
    for p in (weights_path, manifest_path):
        if not p.exists():
            raise InputError(f"potential file not found: {p}")
    manifest = json.loads(manifest_path.read_text())
    digest = file_sha256(weights_path)
    if manifest.get("weights_sha256") != digest:
        raise InputError(f"{weights_path.name} does not match its manifest "
                         f"({manifest_path.name}): sha256 {digest[:12]}... vs "
                         f"{str(manifest.get('weights_sha256'))[:12]}...")
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    net = PotentialNet(**state["config"])
    net.load_state_dict(state["state_dict"])
    net.eval()
    return net, manifest


class DistilledCalculator(Calculator):
    """ASE calculator of a loaded PotentialNet (energy, free_energy, forces)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, net: PotentialNet, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.net, self.device = net, device

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        net = self.net
        dtype = next(net.parameters()).dtype
        lattice = torch.as_tensor(np.asarray(self.atoms.cell), dtype=dtype, device=self.device)
        cart = torch.as_tensor(self.atoms.positions, dtype=dtype, device=self.device)[None]
        idx = net.species_index(self.atoms.get_chemical_symbols()).to(self.device)
        e, f = net.energy_forces(cart, lattice, idx)
        e = float(e.detach()[0])
        self.results = {"energy": e, "free_energy": e,
                        "forces": f[0].detach().cpu().double().numpy()}


class DistilledModel(CalculatorModel):
    """Energy model of a distilled potential ('interface-mlip' by default: the shipped
    Li-Sc-Co-Cl-O interface potential).  `path` overrides the shipped weights."""

    def __init__(self, potential: str = "interface-mlip", path=None, device: str | None = None,
                 batch_size: int = 8, dtype: str = "float32"):
        self.name = potential
        self.path = path
        self.device = device
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self._net = None
        self.manifest = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_net"] = None
        return state

    @property
    def model_name(self) -> str:
        """The weights' SHA-256 prefix: relaxation stores record it, so a resume with other
        weights is refused rather than mixed."""
        return (file_sha256(self.weights_path()) or "")[:16]

    def weights_path(self) -> Path:
        return Path(self.path) if self.path else shipped_potential_dir() / f"{self.name}.pt"

    def check_available(self) -> None:
        self.load()

    def load(self) -> PotentialNet:
        if self._net is None:
            from dismai.energy.base import torch_device

            self._net, self.manifest = load_potential(self.weights_path())
            self._net.to(device=torch_device(self.device),
                         dtype=DTYPES[self.dtype])
        return self._net

    def calculator(self):
        net = self.load()
        return DistilledCalculator(net, str(next(net.parameters()).device))

    def energy_forces(self, structures) -> tuple[np.ndarray, np.ndarray]:
        """Batched: `batch_size` structures per network call."""
        net = self.load()
        p = next(net.parameters())
        lattice = torch.as_tensor(structures.lattice, dtype=p.dtype, device=p.device)
        idx = net.species_index(structures.species).to(p.device)
        cart_all = np.asarray(structures.cart())
        energies, forces = [], []
        for i in range(0, len(structures), self.batch_size):
            cart = torch.as_tensor(cart_all[i:i + self.batch_size], dtype=p.dtype,
                                   device=p.device)
            e, f = net.energy_forces(cart, lattice, idx)
            energies.append(e.detach().cpu().double().numpy())
            forces.append(f.detach().cpu().double().numpy())
        return np.concatenate(energies), np.concatenate(forces)
