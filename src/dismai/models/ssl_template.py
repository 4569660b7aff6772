"""The masked-atom model on a Dismai-Bench dataset: `ssl`.  **Our extension**, not in the
paper (which pre-trains on general crystals and never generates from scratch).

The same backbone and corruptions as `ssl-pretrain` (spec/models.md §7.3-7.4), trained on
the structures of one fixed template (cell + species list), with one change so that it can
*generate*: the position noise of each training structure has its own level, log-uniform
between ``sigma_ratio`` and ``sigma_max_ratio`` times the structure's d_min (with both
equal it is the published single level), and each structure's squared error is weighted by
(sigma_ratio / its ratio)^2, so every level counts alike (the usual epsilon weighting of
diffusion models; at the smallest level the weight is 1, the published loss).  The network
has no noise-level input: it reads the level off the structure.

Generation (`_sample_frac`): every atom masked at uniformly random positions, read as the
data noised at the largest level; then ``sample_steps`` levels, geometric from
``sigma_max_ratio`` to ``sigma_ratio`` times the training median d_min.  At each level the
network's noise prediction gives a denoised estimate x0; the positions move to a draw of the
Gaussian posterior of the next level given x0 (the ancestral step of a variance-exploding
diffusion), and the last step keeps x0.  Each round also unmasks the most confident masked
atoms under the template's composition (`constrained_unmask`), so every structure ends with
exactly the template's atoms, reordered into its species blocks.

`complete_species` is the masked-species completion of an alloy (issue 15, part 7): mask
15 % of the atoms or one species, predict them under the composition, and hand back the
completed structures for the family's metrics.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from dismai.errors import ConfigError, InputError, TrainingDataError
from dismai.models.ssl import MaskedAtomTraining, SSLPretrainConfig
from dismai.models.ssl_corruption import AtomBatch, mask_atoms, min_incell_distance
from dismai.models.training import TrainableModel
from dismai.structures import StructureSet

__all__ = ["SSLTemplate", "SSLTemplateConfig", "constrained_unmask", "complete_species"]


@dataclasses.dataclass
class SSLTemplateConfig(SSLPretrainConfig):
    """ssl-pretrain's keys plus the range of training noise levels and the sampler's
    number of levels."""

    sigma_max_ratio: float = 1.5
    sample_steps: int = 20
    sample_batch_size: int = 50

    RESUMABLE_KEYS: ClassVar[frozenset] = SSLPretrainConfig.RESUMABLE_KEYS | {
        "sample_batch_size"}

    def validate(self) -> None:
        super().validate()
        if self.sigma_max_ratio < self.sigma_ratio:
            raise ConfigError(f"sigma_max_ratio ({self.sigma_max_ratio}) must be >= "
                              f"sigma_ratio ({self.sigma_ratio})")
        if self.sample_batch_size < 1:
            raise ConfigError("sample_batch_size must be >= 1")


def _atomic_numbers(species) -> np.ndarray:
    from ase.data import atomic_numbers

    try:
        return np.array([atomic_numbers[s] for s in species], dtype=np.int64)
    except KeyError as exc:
        raise InputError(f"unknown element {exc.args[0]!r} in the template") from None


def constrained_unmask(numbers: torch.Tensor, logits: torch.Tensor, quota: torch.Tensor,
                       elements: torch.Tensor, rounds_left: int) -> torch.Tensor:
    """Unmask a share 1 / rounds_left of the masked atoms of every structure (all of them
    in the last round), most confident first, without exceeding the remaining count of any
    element.  numbers (B, N) with 0 = masked; logits (B, N, 118); quota (B, S) atoms of each
    template element still to place (updated in place); elements (S,) their atomic
    numbers."""
    numbers = numbers.clone()
    logp = logits[..., elements - 1].log_softmax(-1)  # (B, N, S), over the template elements
    masked = numbers == 0
    todo = torch.ceil(masked.sum(1).double() / rounds_left).long()  # (B,)
    rows = torch.arange(len(numbers))
    for k in range(int(todo.max()) if len(todo) else 0):
        active = todo > k
        score = logp.masked_fill(~masked[..., None] | (quota[:, None, :] <= 0), -math.inf)
        flat = score.reshape(len(numbers), -1).argmax(1)
        atom, slot = flat // len(elements), flat % len(elements)
        ok = active & torch.isfinite(score[rows, atom, slot])
        r, a, s = rows[ok], atom[ok], slot[ok]
        numbers[r, a] = elements[s]
        masked[r, a] = False
        quota[r, s] -= 1
    return numbers


class SSLTemplate(MaskedAtomTraining, TrainableModel):
    """The masked-atom backbone trained as a multi-level denoiser on a fixed template."""

    name = "ssl"
    Config = SSLTemplateConfig
    min_atoms = 2
    loss_columns = ("loss", "atom_loss", "pos_loss", "val_loss", "val_atom_loss",
                    "val_pos_loss", "val_masked_accuracy")

    def _build(self, template: StructureSet) -> None:
        super()._build(template)
        self._build_network()
        self._numbers = torch.as_tensor(_atomic_numbers(self.template.species))
        self._cell = torch.as_tensor(self.template.lattice, dtype=torch.float32)
        self.d_ref = torch.tensor(float("nan"), dtype=torch.float64)

    # the training median d_min sets the sampler's noise scale: data, kept with the weights
    def state_dict(self) -> dict:
        return {**super().state_dict(), "d_ref": self.d_ref}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self.d_ref = state.pop("d_ref")
        super().load_state_dict(state)

    # ------------------------------------------------------------------ data
    def _atom_batch(self, items) -> AtomBatch:
        frac = torch.as_tensor(np.stack(items), dtype=torch.float32)  # (B, N, 3)
        b, n = frac.shape[:2]
        return AtomBatch(self._numbers.repeat(b), (frac @ self._cell).reshape(b * n, 3),
                         self._cell.expand(b, 3, 3).contiguous(),
                         torch.full((b,), n, dtype=torch.long))

    def _noise_ratios(self, n: int, gen: torch.Generator):
        lo, hi = self.config.sigma_ratio, self.config.sigma_max_ratio
        if hi == lo:
            return lo, None
        u = torch.rand((n,), generator=gen, dtype=torch.float64)
        ratio = lo * (hi / lo) ** u
        return ratio.float(), ((lo / ratio) ** 2).float()

    def prepare_data(self, train: StructureSet, val: StructureSet | None) -> None:
        self._set_items(list(train.wrapped().frac.astype(np.float32)),
                        list(val.wrapped().frac.astype(np.float32)) if val is not None else [])
        b = self._atom_batch(self._train[: min(len(self._train), 200)])
        d = min_incell_distance(b.pos.double(), b.natoms)
        if not bool((d > 0).all()):
            raise TrainingDataError("a training structure has two atoms at the same point")
        self.d_ref = d.median().double()

    # ------------------------------------------------------------------ sampling
    def levels(self) -> np.ndarray:
        """The sampler's noise levels in Å, largest first."""
        cfg = self.config
        ratios = np.geomspace(cfg.sigma_max_ratio, cfg.sigma_ratio, cfg.sample_steps)
        return ratios * float(self.d_ref)

    @torch.no_grad()
    def _sample_frac(self, n: int, seed: int) -> np.ndarray:
        g = torch.Generator().manual_seed(seed)
        bs = self.config.sample_batch_size
        return np.concatenate([self._generate(min(bs, n - i), g) for i in range(0, n, bs)])

    @torch.no_grad()
    def _generate(self, b: int, g: torch.Generator) -> np.ndarray:
        net, cell, natoms = self._sampler(), self._cell, self.template.n_atoms
        sigmas = self.levels()
        inv = torch.linalg.inv(cell)
        frac = torch.rand((b, natoms, 3), generator=g)
        numbers = torch.zeros((b, natoms), dtype=torch.long)
        elements, quota = self._composition(b)
        counts = torch.full((b,), natoms, dtype=torch.long)
        dev = self._dev
        was = net.training
        net.eval()
        try:
            for k, sigma in enumerate(sigmas):
                pos = frac @ cell
                out = net(numbers.reshape(-1).to(dev), pos.reshape(-1, 3).to(dev),
                          cell.expand(b, 3, 3).to(dev), counts.to(dev))
                x0 = pos - out["vector"].float().cpu().reshape(b, natoms, 3) @ cell
                if k + 1 < len(sigmas):
                    r = (sigmas[k + 1] / sigma) ** 2
                    pos = x0 + r * (pos - x0) + float(sigmas[k + 1] * math.sqrt(1 - r)) * \
                        torch.randn((b, natoms, 3), generator=g)
                else:
                    pos = x0
                frac = pos @ inv
                frac = frac - torch.floor(frac)
                logits = out["node"].float().cpu().reshape(b, natoms, -1)
                numbers = constrained_unmask(numbers, logits, quota, elements,
                                             len(sigmas) - k)
        finally:
            net.train(was)
        return _block_order(frac, numbers, self._numbers).numpy().astype(np.float64)

    def _composition(self, b: int):
        """(S,) the template's elements and (b, S) their counts, per structure."""
        elements, counts = torch.unique(self._numbers, return_counts=True)
        return elements, counts.repeat(b, 1)


def _block_order(frac: torch.Tensor, numbers: torch.Tensor, template: torch.Tensor):
    """Reorder every structure's atoms so that its numbers follow the template's blocks
    (the composition is the template's, so this is a permutation)."""
    rank = {int(z): i for i, z in enumerate(dict.fromkeys(template.tolist()))}
    key = torch.tensor([rank.get(z, len(rank)) for z in range(119)])[numbers]
    order = torch.argsort(key, dim=1, stable=True)
    return torch.gather(frac, 1, order[..., None].expand(-1, -1, 3))


@torch.no_grad()
def complete_species(model: SSLTemplate, structures: StructureSet, mode: str = "random",
                     ratio: float = 0.15, seed: int = 0) -> tuple[StructureSet, dict]:
    """Masked-species completion: mask ``ratio`` of each structure's atoms (mode "random")
    or every atom of one species ("species"; the species drawn per structure), predict them
    in one pass under the known composition of the masked atoms, and return the completed
    structures (in the template's block order) with the per-atom accuracy of the masked
    sites and that of shuffling the masked atoms' species (the trivial baseline).

    Under the composition, a masked species can only be refilled by itself, so in
    "species" mode the completion is exact by construction; the report's
    ``masked_accuracy_free`` (the most likely template element per masked atom, no
    composition) is the score that means something there."""
    if mode not in ("random", "species"):
        raise InputError(f"completion mode must be random or species, got {mode!r}")
    if structures.species != model.template.species:
        raise InputError("structures do not have the model's species order")
    g = torch.Generator().manual_seed(seed)
    net, cell, dev = model._sampler(), model._cell, model._dev
    b, n = len(structures), structures.n_atoms
    frac = torch.as_tensor(structures.wrapped().frac, dtype=torch.float32)
    truth = model._numbers.repeat(b, 1)
    masked, mask = mask_atoms(truth.reshape(-1), torch.full((b,), n), g, ratio,
                              1.0 if mode == "species" else 0.0)
    masked, mask = masked.reshape(b, n), mask.reshape(b, n)
    elements = torch.unique(model._numbers)
    quota = ((truth[..., None] == elements) & mask[..., None]).sum(1)  # (b, S)
    logits = torch.empty((b, n, len(elements)))
    bs = model.config.sample_batch_size  # the masks are drawn above: batching changes nothing
    was = net.training
    net.eval()
    try:
        for i in range(0, b, bs):
            k = min(bs, b - i)
            out = net(masked[i:i + k].reshape(-1).to(dev),
                      (frac[i:i + k] @ cell).reshape(-1, 3).to(dev),
                      cell.expand(k, 3, 3).to(dev), torch.full((k,), n).to(dev))
            logits[i:i + k] = out["node"].float().cpu().reshape(k, n, -1)[..., elements - 1]
    finally:
        net.train(was)
    full = torch.full((b, n, 118), -math.inf)
    full[..., elements - 1] = logits
    pred = constrained_unmask(masked, full, quota, elements, rounds_left=1)
    shuffled = masked.clone()
    for i in range(b):  # the baseline: the masked species in a random order
        idx = torch.nonzero(mask[i]).flatten()
        shuffled[i, idx] = truth[i, idx[torch.randperm(len(idx), generator=g)]]
    done = structures.with_frac(_block_order(frac, pred, model._numbers).double().numpy())
    free = elements[logits.argmax(-1)]
    report = {"n_masked": int(mask.sum()),
              "masked_accuracy": float((pred[mask] == truth[mask]).double().mean()),
              "masked_accuracy_free": float((free[mask] == truth[mask]).double().mean()),
              "masked_accuracy_shuffled": float((shuffled[mask] == truth[mask]).double().mean())}
    return done, report

