"""Self-supervised pre-training of the masked-atom equivariant model (spec/models.md §7.4):
`ssl-pretrain`, a model of general crystals.

Each step corrupts a batch of crystals (`ssl_corruption`: masking, then position noise of
0.1 d_min) and trains the backbone (`equiformer`: 118 atom-type logits per atom and an
equivariant 3-vector per atom) to undo it:

    L = CE(logits, Z - 1) over all atoms  +  w MSE(vector, fractional noise)

with Adam (1e-4 as published) and w = ``weight_loss_pos`` (the published pre-training
value is unknown, spec §9.6; 200 is what the published GAN stage uses).  The validation
loss (same corruption, from a generator seeded per epoch, so it is reproducible) picks the
best weights, as published.  `reconstruction_scores` measures what pre-training learnt on
held-out crystals against trivial baselines (docs/masked-atom.md).

Sampling (our generation procedure; the published code has none, spec §7.6 (d)): a
training crystal's cell and atom count with every atom masked and at uniformly random
positions; ``sample_steps`` rounds, each moving every atom by minus its predicted noise
and unmasking the most confident masked atoms, so that all are unmasked at the end.

The position head is an equivariant vector trained to match fractional noise, which is not
equivariant for non-cubic cells; kept as published (spec §7.4).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from dismai.crystals import Crystal, CrystalSet
from dismai.errors import ConfigError, TrainingDataError
from dismai.models.config import TrainConfig, _positive
from dismai.models.crystal_model import CrystalModel
from dismai.models.equiformer import Equiformer, EquiformerConfig
from dismai.models.image_diffusion import BestWeights
from dismai.models.ssl_corruption import AtomBatch, add_position_noise, mask_atoms
from dismai.models.training import (
    PermutedEpochs,
    generator_state,
    restore_generator,
    select_device,
)

__all__ = ["SSLPretrain", "SSLPretrainConfig", "MaskedAtomTraining", "corrupt",
           "corrupt_and_predict", "reconstruction_scores"]

_BACKBONE_KEYS = tuple(f.name for f in dataclasses.fields(EquiformerConfig))


@dataclasses.dataclass
class SSLPretrainConfig(EquiformerConfig, TrainConfig):
    """Defaults = main_pretrain.py with the published backbone (spec §7.1, §7.4); the
    backbone's keys are EquiformerConfig's."""

    epochs: int = 10
    batch_size: int = 5
    lr: float = 1e-4
    weight_loss_pos: float = 200.0
    mask_ratio: float = 0.15
    mask_species_prob: float = 0.5
    sigma_ratio: float = 0.1
    noise: str = "gaussian"
    as_coded_masking: bool = False  # True: the published off-by-one (last atom never masked)
    sample_steps: int = 10
    val_every: int = 1

    RESUMABLE_KEYS: ClassVar[frozenset] = TrainConfig.RESUMABLE_KEYS | {"sample_steps"}

    def backbone(self) -> EquiformerConfig:
        return EquiformerConfig(**{k: getattr(self, k) for k in _BACKBONE_KEYS})

    def validate(self) -> None:
        TrainConfig.validate(self)
        _positive(self, "lr", "sample_steps", "sigma_ratio")
        if not 0 < self.mask_ratio <= 1 or not 0 <= self.mask_species_prob <= 1:
            raise ConfigError("mask_ratio must lie in (0, 1] and mask_species_prob in [0, 1]")
        if self.noise not in ("gaussian", "uniform"):
            raise ConfigError(f"noise must be gaussian or uniform, got {self.noise!r}")
        if self.weight_loss_pos < 0:
            raise ConfigError("weight_loss_pos must be >= 0")
        self.backbone().validate()


def corrupt_and_predict(net, crystals, gen: torch.Generator, cfg, device, sigma_ratio=None):
    """Corrupt `crystals` (a sequence of Crystals, or an AtomBatch) as in pre-training
    (masking, then position noise of `sigma_ratio` d_min: cfg.sigma_ratio, or a (B,) tensor
    of per-crystal ratios; both drawn from `gen` on the CPU) and run `net` on them:
    (outputs, true numbers, mask, fractional noise target), all on `device`."""
    b = crystals if isinstance(crystals, AtomBatch) else \
        AtomBatch.from_crystals(crystals, dtype=torch.float32)
    masked, mask, pos, target = corrupt(b, gen, cfg, sigma_ratio)
    out = net(masked.to(device), pos.to(device), b.cell.to(device), b.natoms.to(device))
    return out, b.numbers.to(device), mask.to(device), target.to(device)


def corrupt(b: AtomBatch, gen: torch.Generator, cfg, sigma_ratio=None):
    """The pre-training corruption of a batch, masking then position noise (both drawn
    from `gen`): (masked numbers, mask, wrapped noisy positions, fractional noise)."""
    masked, mask = mask_atoms(b.numbers, b.natoms, gen, cfg.mask_ratio,
                              cfg.mask_species_prob, cfg.as_coded_masking)
    ratio = cfg.sigma_ratio if sigma_ratio is None else sigma_ratio
    pos, target = add_position_noise(b, gen, ratio, cfg.noise)
    return masked, mask, pos, target


class MaskedAtomTraining(PermutedEpochs):
    """What every masked-atom model trains the same way: one backbone with type logits and a
    vector head, Adam, a CPU generator for the corruptions, the loss, validation that keeps
    the best weights.  A host sets ``self._train``/``self._val`` (sequences of items),
    ``self._per_epoch`` and may override `_atom_batch` (items -> AtomBatch) and
    `_noise_ratios` (per-crystal noise levels and loss weights)."""

    def _build_network(self) -> None:
        cfg = self.config
        self._dev = select_device(cfg.device)
        self.net = Equiformer(cfg.backbone(), 118, "node", vector_head=True).to(self._dev)
        self.best = BestWeights(self.net)
        self._gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    def modules(self) -> dict:
        return {"net": self.net, "best": self.best}

    def make_optimizers(self) -> dict:
        return {"net": torch.optim.Adam(self.net.parameters(), lr=self.config.lr)}

    def rng_states(self) -> dict:
        return generator_state(self._gen, torch.device("cpu"))

    def set_rng_states(self, states: dict) -> None:
        restore_generator(self._gen, states, torch.device("cpu"))

    def _set_items(self, train: list, val: list) -> None:
        """The training and validation items (whatever `_atom_batch` takes) and the
        epoch bookkeeping that follows from them."""
        self._train, self._val = train, val
        self._n_train = len(train)
        self._per_epoch = math.ceil(self._n_train / self.config.batch_size)
        self._epoch = 0

    def _atom_batch(self, items) -> AtomBatch:
        return AtomBatch.from_crystals(items, dtype=torch.float32)

    def _noise_ratios(self, n: int, gen: torch.Generator):
        """(noise ratio: a number or (n,) tensor, per-crystal loss weights or None)."""
        return self.config.sigma_ratio, None

    def losses(self, items, gen: torch.Generator) -> dict:
        """Corrupt `items`, predict, and return the loss terms (0-d tensors) and the
        masked-atom accuracy."""
        cfg = self.config
        b = self._atom_batch(items)
        ratio, weight = self._noise_ratios(len(b.natoms), gen)
        out, numbers, m, target = corrupt_and_predict(self.net, b, gen, cfg, self._dev, ratio)
        atom = F.cross_entropy(out["node"], numbers - 1)
        if weight is None:
            pos_loss = F.mse_loss(out["vector"], target)
        else:  # per-crystal weights on the squared error of each of its atoms
            w = weight.to(self._dev)[b.batch.to(self._dev)]
            pos_loss = ((out["vector"] - target).square().mean(1) * w).mean()
        acc = (out["node"].argmax(-1)[m] == numbers[m] - 1).float().mean()
        return {"loss": atom + cfg.weight_loss_pos * pos_loss, "atom_loss": atom,
                "pos_loss": pos_loss, "masked_accuracy": acc}

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        terms = self.losses([self._train[i] for i in items], self._gen)
        opt = self.optimizers["net"]
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        n = len(items)
        stats = {k: (terms[k].detach(), n) for k in ("loss", "atom_loss", "pos_loss")}
        return self.validate_when_due(stats, batch_index)

    def validate_when_due(self, stats: dict, batch_index: int) -> dict:
        """Add the validation scores to a step's stats when one is due, keeping the best
        weights by the validation loss."""
        if self._val and self.validation_due(batch_index):
            val = self.validation(self._epoch)
            for k, v in val.items():
                stats[f"val_{k}"] = (v, 1)
            self.best.offer(val["loss"], self.net)
        return stats

    def validation_generator(self, epoch: int) -> torch.Generator:
        """Seeded by (seed, epoch): validation is reproducible with nothing to checkpoint."""
        return torch.Generator().manual_seed(
            (self.config.seed * 1_000_003 + 7919 * (epoch + 1)) % 2 ** 63)

    @torch.no_grad()
    def validation(self, epoch: int) -> dict[str, float]:
        """Mean losses and masked accuracy on the validation items, corrupted from
        `validation_generator`."""
        g = self.validation_generator(epoch)
        was = self.net.training
        self.net.eval()
        try:
            return _mean_terms(self, self._val, g)
        finally:
            self.net.train(was)

    def _sampler(self):
        """The network that samples: the best-validation weights once there are any."""
        return self.best.weights if self.best.filled else self.net


class SSLPretrain(MaskedAtomTraining, CrystalModel):
    """Masked-atom + position-noise pre-training of the equivariant backbone."""

    name = "ssl-pretrain"
    Config = SSLPretrainConfig
    loss_columns = ("loss", "atom_loss", "pos_loss", "val_loss", "val_atom_loss",
                    "val_pos_loss", "val_masked_accuracy")

    def _build(self, data) -> None:
        super()._build(data)
        self._build_network()
        if isinstance(data, CrystalSet):
            self._templates = (torch.tensor(np.stack([c.lattice for c in data])),
                               torch.tensor(data.n_atoms))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:  # the training cells and atom counts: sampling templates
        state = super().state_dict()
        state["template_cells"], state["template_counts"] = self._templates
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self._templates = (state.pop("template_cells"), state.pop("template_counts"))
        super().load_state_dict(state)

    # ------------------------------------------------------------------ data
    def check_data(self, train, val=None) -> None:
        super().check_data(train, val)
        for what, s in (("training", train), ("validation", val)):
            if s is not None and len(s) and s.n_atoms.min() < 2:
                i = int(np.argmin(s.n_atoms))
                raise TrainingDataError(f"{what} crystal {i} has one atom; masking and "
                                        "position noise need at least 2")

    def prepare_data(self, train: CrystalSet, val: CrystalSet | None) -> None:
        self._set_items(list(train), list(val) if val else [])

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def _sample_crystals(self, n: int, seed: int):
        net, cfg = self._sampler(), self.config
        g = torch.Generator().manual_seed(seed)
        cells, counts = self._templates
        pick = torch.randint(len(counts), (n,), generator=g)
        natoms = counts[pick].long()
        cell = cells[pick].float()
        owner = torch.repeat_interleave(torch.arange(n), natoms)
        frac = torch.rand((int(natoms.sum()), 3), generator=g)
        numbers = torch.zeros(len(frac), dtype=torch.long)
        was = net.training
        net.eval()
        try:
            for step in range(cfg.sample_steps):
                pos = torch.einsum("ti,tij->tj", frac, cell[owner])
                out = net(numbers.to(self._dev), pos.to(self._dev), cell.to(self._dev),
                          natoms.to(self._dev))
                frac = frac - out["vector"].float().cpu()
                frac = frac - torch.floor(frac)
                numbers = _unmask(numbers, out["node"].float().cpu(), owner, natoms,
                                  cfg.sample_steps - step)
        finally:
            net.train(was)
        crystals, start = [], 0
        for k in range(n):
            c = int(natoms[k])
            crystals.append((Crystal(cell[k].double().numpy(),
                                     frac[start:start + c].double().numpy(),
                                     numbers[start:start + c].numpy()), ""))
            start += c
        return crystals


def _unmask(numbers, logits, owner, natoms, rounds_left: int):
    """Give the most confident masked atoms of every crystal their argmax element: a share
    1 / rounds_left of the still-masked ones (all in the last round)."""
    prob, z = logits.softmax(-1).max(-1)
    masked = numbers == 0
    left = torch.zeros(len(natoms), dtype=torch.long).index_add_(0, owner, masked.long())
    quota = torch.ceil(left.double() / rounds_left).long()
    score = torch.where(masked, prob, torch.full_like(prob, -1.0))
    order = torch.argsort(owner * 4.0 - score.double(), stable=True)  # by crystal, best first
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order)) - (torch.cumsum(natoms, 0) - natoms)[owner[order]]
    chosen = masked & (rank < quota[owner])
    return torch.where(chosen, z + 1, numbers)


def _mean_terms(model: MaskedAtomTraining, crystals, gen) -> dict[str, float]:
    return batch_means(crystals, model.config.batch_size,
                       lambda part, start: model.losses(part, gen))


def batch_means(items, batch_size: int, terms) -> dict[str, float]:
    """Means over `items` of the numbers terms(part, start) gives per batch, each batch
    weighted by its size."""
    sums, n = {}, 0
    for i in range(0, len(items), batch_size):
        part = items[i:i + batch_size]
        for k, v in terms(part, i).items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(part)
        n += len(part)
    return {k: v / n for k, v in sums.items()}


def reconstruction_scores(model: SSLPretrain, crystals: CrystalSet, train: CrystalSet,
                          seed: int = 0, repeats: int = 1) -> dict[str, float]:
    """Held-out masked-species accuracy and position-noise MSE of `model` (its sampling
    weights), beside the trivial baselines on the same corruptions: the most frequent
    element of `train` for every masked atom, and zero predicted noise."""
    net = model._sampler()
    was = net.training
    net.eval()
    counts = np.bincount(np.concatenate([c.numbers for c in train]), minlength=119)
    majority = int(np.argmax(counts))
    try:
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            hits = base_hits = masked_total = 0
            mse = zero_mse = 0.0
            n_atoms = 0
            for _ in range(repeats):
                for i in range(0, len(crystals), model.config.batch_size):
                    part = list(crystals[i:i + model.config.batch_size])
                    out, numbers, mask, target = corrupt_and_predict(net, part, g, model.config,
                                                                     model._dev)
                    numbers, mask, target = numbers.cpu(), mask.cpu(), target.cpu()
                    pred = out["node"].argmax(-1).cpu() + 1
                    hits += int((pred[mask] == numbers[mask]).sum())
                    base_hits += int((numbers[mask] == majority).sum())
                    masked_total += int(mask.sum())
                    mse += float((out["vector"].cpu() - target).square().sum())
                    zero_mse += float(target.square().sum())
                    n_atoms += 3 * len(target)
    finally:
        net.train(was)
    return {"masked_accuracy": hits / masked_total,
            "masked_accuracy_majority": base_hits / masked_total,
            "position_mse": mse / n_atoms, "position_mse_zero": zero_mse / n_atoms,
            "n_masked": masked_total}
