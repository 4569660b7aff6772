"""Running a masked-atom model on corrupted crystals for the paper's reconstruction metrics
(`dismai.metrics.reconstruction`): the masking strategies of Fig. 4 (alpha: all atoms of one
species, once per species present; beta: 15 % of the atoms, `repeats` times; gamma: 30 %)
plus Gaussian noise sigma_ratio * d_min, the reconstruction (argmax species of every atom,
noisy positions minus the predicted fractional noise, wrapped), and
`evaluate_reconstruction`, which scores them.  Works for any model whose ``_sampler()`` is
the masked-atom network: ssl-pretrain, ssl-gan, ssl.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dismai.crystals import Crystal
from dismai.errors import InputError, ModelError
from dismai.metrics.reconstruction import STRATEGIES, reconstruction_metrics
from dismai.models.ssl_corruption import MASK_TOKEN, AtomBatch, apply_noise, draw_noise

__all__ = ["corrupt", "reconstruct", "masked_atom_network", "evaluate_reconstruction"]


# ---------------------------------------------------------------------------- corruption
def _masked_count(natoms: torch.Tensor, ratio: float) -> torch.Tensor:
    return torch.tensor([math.ceil(round(ratio * int(n), 9)) for n in natoms])


def corrupt(crystals, masking: str, repeats: int, sigma_ratio: float,
            gen: torch.Generator, noise: str = "gaussian"):
    """The corrupted samples of one masking strategy (module doc): (sample's crystal index
    (M,), AtomBatch of the originals repeated per sample, (T,) mask, (T, 3) wrapped noisy
    Cartesian positions, (T, 3) Cartesian noise).  Random masking masks exactly
    ceil(ratio N) distinct atoms per sample; every draw comes from `gen` (masking first,
    then noise)."""
    if masking not in STRATEGIES:
        raise InputError(f"unknown masking {masking!r}; use alpha (every atom of one "
                         "species, once per species), beta (15 %) or gamma (30 %)")
    if repeats < 1:
        raise InputError(f"repeats must be >= 1, got {repeats}")
    if not sigma_ratio > 0:
        raise InputError(f"the noise ratio must be > 0, got {sigma_ratio}")
    base = AtomBatch.from_crystals(crystals)
    owner_atom = base.batch
    if masking == "alpha":
        keys = torch.unique(owner_atom * 128 + base.numbers)  # sorted: crystal, then Z
        sample_of, species = keys // 128, keys % 128
    else:
        sample_of = torch.repeat_interleave(torch.arange(len(base.natoms)), repeats)
    natoms = base.natoms[sample_of]
    first = torch.cumsum(natoms, 0) - natoms
    owner = torch.repeat_interleave(torch.arange(len(natoms)), natoms)
    local = torch.arange(int(natoms.sum())) - first[owner]
    atom = base.offsets[sample_of][owner] + local
    numbers = base.numbers[atom]
    if masking == "alpha":
        mask = numbers == species[owner]
    else:
        key = torch.rand(len(atom), generator=gen, dtype=torch.float64)
        order = torch.argsort(owner.double() + key)  # by sample, random within it
        rank = torch.empty_like(order)
        rank[order] = local
        mask = rank < _masked_count(natoms, STRATEGIES[masking])[owner]
    batch = AtomBatch(numbers, base.pos[atom], base.cell[sample_of], natoms)
    unit = draw_noise(len(atom), gen, noise, batch.pos.dtype)
    noisy, frac_noise = apply_noise(batch, unit, sigma_ratio)
    cart_noise = torch.einsum("ti,tij->tj", frac_noise, batch.cell[owner])
    return sample_of, batch, mask, noisy, cart_noise


def masked_atom_network(model):
    """The network of a masked-atom model (its `_sampler()`: per-atom species logits
    "node" and a per-atom "vector" noise head); a one-line ModelError for any other model."""
    sampler = getattr(model, "_sampler", None)
    net = sampler() if callable(sampler) else None
    core = getattr(net, "weights", net)
    if net is None or getattr(core, "aggregate", None) != "node" \
            or getattr(core, "vector", None) is None:
        raise ModelError(f"{getattr(model, 'name', type(model).__name__)} is not a masked-atom "
                         "model (ssl-pretrain or its GAN generator): it has no per-atom "
                         "species and noise outputs to reconstruct from")
    return net


@torch.no_grad()
def reconstruct(model, batch, mask, noisy, batch_size: int = 32):
    """Run the model's network on corrupted samples: ((T,) predicted Z, (T, 3) reconstructed
    fractional positions in [0, 1)).  batch: the originals (AtomBatch); noisy: Cartesian."""
    net = masked_atom_network(model)
    dev = getattr(model, "_dev", torch.device("cpu"))
    natoms = batch.natoms
    first = (torch.cumsum(natoms, 0) - natoms).tolist() + [int(natoms.sum())]
    inputs = batch.numbers.masked_fill(mask, MASK_TOKEN)
    z_parts, f_parts = [], []
    was = net.training
    net.eval()
    try:
        for s in range(0, len(natoms), batch_size):
            e = min(s + batch_size, len(natoms))
            a, b = first[s], first[e]
            cell = batch.cell[s:e]
            out = net(inputs[a:b].to(dev), noisy[a:b].float().to(dev), cell.float().to(dev),
                      natoms[s:e].to(dev))
            z_parts.append(out["node"].argmax(-1).cpu() + 1)
            owner = torch.repeat_interleave(torch.arange(e - s), natoms[s:e])
            frac = torch.einsum("ti,tij->tj", noisy[a:b], torch.linalg.inv(cell)[owner])
            frac = frac - out["vector"].double().cpu()
            f_parts.append(frac - torch.floor(frac))
    finally:
        net.train(was)
    return torch.cat(z_parts), torch.cat(f_parts)


def evaluate_reconstruction(model, crystals, *, sigma_ratio: float = 0.1,
                            masking: str = "beta", repeats: int = 5, seed: int = 0,
                            energy=None, noise: str = "gaussian",
                            batch_size: int = 32) -> dict:
    """Corrupt `crystals` with one masking strategy and Gaussian noise sigma_ratio * d_min,
    reconstruct them with `model` (anything with ``_sampler()`` returning the masked-atom
    network and ``_dev``: an ssl-pretrain model or its GAN generator) and return
    `reconstruction_metrics` plus the settings and counts.  alpha makes one sample per
    species of each crystal (`repeats` is ignored); beta and gamma `repeats` per crystal.
    Deterministic under `seed` (independent of batch_size)."""
    crystals = list(crystals)
    if not crystals:
        raise InputError("no crystals to evaluate")
    if min(c.n_atoms for c in crystals) < 2:
        raise InputError("a crystal with one atom cannot be masked and denoised")
    masked_atom_network(model)  # fail before any work
    gen = torch.Generator().manual_seed(int(seed))
    sample_of, batch, mask, noisy, cart_noise = corrupt(crystals, masking, repeats,
                                                        sigma_ratio, gen, noise)
    z, frac = reconstruct(model, batch, mask, noisy, batch_size)
    natoms = batch.natoms.tolist()
    cuts = np.cumsum(natoms)[:-1]
    originals = [crystals[i] for i in sample_of.tolist()]
    z_s, f_s = np.split(z.numpy(), cuts), np.split(frac.numpy(), cuts)
    masks = np.split(mask.numpy(), cuts)
    recons = [Crystal(o.lattice, f, zz) for o, f, zz in zip(originals, f_s, z_s, strict=True)]
    owner = batch.batch
    norms = torch.linalg.norm(cart_noise, dim=-1)
    scale = (torch.zeros(len(natoms), dtype=norms.dtype).index_add_(0, owner, norms)
             / batch.natoms).numpy()
    noisy_crystals = None
    if energy is not None:
        inv = torch.linalg.inv(batch.cell)[owner]
        nf = np.split(torch.einsum("ti,tij->tj", noisy, inv).numpy(), cuts)
        noisy_crystals = [Crystal(o.lattice, f, o.numbers) for o, f in
                          zip(originals, nf, strict=True)]
    out = {"model": getattr(model, "name", type(model).__name__), "masking": masking,
           "sigma_ratio": float(sigma_ratio), "noise": noise,
           "repeats": None if masking == "alpha" else int(repeats), "seed": int(seed),
           "n_crystals": len(crystals)}
    out.update(reconstruction_metrics(originals, recons, scale, masks, energy, noisy_crystals))
    numbers = batch.numbers.numpy()
    m, zn = mask.numpy(), z.numpy()
    out["n_atoms"] = int(len(m))
    out["n_masked"] = int(m.sum())
    out["masked_accuracy"] = float((zn[m] == numbers[m]).mean()) if m.any() else float("nan")
    out["unmasked_changed"] = (float((zn[~m] != numbers[~m]).mean()) if (~m).any()
                               else float("nan"))
    return out
