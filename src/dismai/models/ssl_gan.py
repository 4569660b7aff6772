"""The GAN stage of the masked-atom model (spec/models.md §7.6, paper Eqn 2-3): `ssl-gan`,
a model of general crystals.

* **Generator G**: the pre-training network (118 type logits per atom and the vector head,
  `ssl.SSLPretrain`'s network), initialised from a saved ``ssl-pretrain`` model file
  (``generator_from``: its best / sampling weights; the backbone sizes must match).
* **Discriminator D**: the backbone with a per-crystal head of 2 outputs and no vector head,
  initialised by the fine-tuning surgery (`ssl_finetune.property_network`) from an
  ``ssl-pretrain`` file: ``discriminator_from`` ("" = the generator's file, "none" =
  random).  The published D starts from a fine-tuned classifier; dismai has no file format
  for one, and the published classifier's backbone is the pre-trained one (its
  fine-tuning trains the head only), so we start D from the pre-trained backbone.
* **Each batch**: the fake input is the real batch masked (0.15, species masking with
  probability 0.5) with Gaussian position noise of ``sigma_ratio`` (0.2) d_min.  G
  predicts; the fake crystal has types argmax + 1 and positions wrap(noisy - predicted
  fractional noise @ cell).  G's loss is

      w_label L_label + L_atom + w_pos L_pos       (0.1, CE over all atoms, 200 x MSE)

  with L_label = mean over crystals of sum |softmax(D(fake)) - (0, 1)|.  G steps every
  batch (Adam ``lr`` 1e-4).  D steps when (batch + epoch) % ``d_every`` == 0 (the published
  offset grows by one each epoch), Adam ``lr_d`` 1e-5, betas (0.5, 0.999), on
  L1(softmax D(real jittered by uniform +-0.001 d_min), onehot(real label)) +
  L1(softmax D(fake), onehot(0)); the real label is 1, or derived from a property
  (``real_label_property``; the published code reads ``is_stable``).
* **``adversarial: as-published``** evaluates D on the argmax types and the denoised
  positions under no_grad, as the published code does, so L_label carries **no gradient**
  to G: it is only logged.  G is then a denoiser trained by L_atom + 200 L_pos at
  sigma 0.2 -- the pre-training objective at twice the noise -- and D never influences it.
* **``adversarial: fixed``** lets the adversarial term reach G: D sees the argmax types
  with a straight-through gradient (one-hot in the forward pass, so a fake's types look
  like a real crystal's; the softmax's gradient in the backward pass, through
  `equiformer.type_embedding`) and the denoised positions with their gradients (positions
  enter D through its edge vectors).  With the plain softmax D could tell fakes by how
  soft their types are.  D's parameters are frozen during G's step.
* bf16 autocast on CUDA (``bf16``; nothing changes on a CPU).  Validation (the same losses
  plus D's accuracy on real and fake) keeps G's best weights by its validation loss.
  Sampling is `SSLPretrain`'s procedure on G (the published code has none).
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from dismai.errors import CheckpointError, ConfigError, TrainingDataError
from dismai.models.config import _positive
from dismai.models.ssl import SSLPretrain, SSLPretrainConfig, batch_means, corrupt
from dismai.models.ssl_corruption import AtomBatch, add_position_noise

__all__ = ["SSLGAN", "SSLGANConfig", "MODES", "discriminator_due"]

MODES = ("as-published", "fixed")
_NOT_COMPARED = ("mean_divisor",)  # only the per-crystal head reads it


@dataclasses.dataclass
class SSLGANConfig(SSLPretrainConfig):
    """Defaults = main_gan_lit.py / trainer_gan_lit.py (spec §7.6) with the published
    backbone; ``lr`` is G's learning rate, ``sigma_ratio`` the fakes' noise."""

    epochs: int = 10
    batch_size: int = 1  # published: batch per GPU = number of GPUs
    lr: float = 1e-4
    sigma_ratio: float = 0.2
    generator_from: str = ""  # an ssl-pretrain model file ("" = random: tests only)
    discriminator_from: str = ""  # "" = generator_from's file, "none" = random, or a file
    adversarial: str = "as-published"  # or "fixed"
    weight_label: float = 0.1
    lr_d: float = 1e-5
    beta1_d: float = 0.5
    beta2_d: float = 0.999
    d_every: int = 10
    real_jitter: float = 0.001  # uniform +-real_jitter d_min on the reals D sees
    real_label_property: str = ""  # "" = every real crystal has label 1
    real_label_threshold: float = 0.5
    real_label_when: str = "above"  # label 1 where the property is >= (above) / <= (below)
    bf16: bool = True  # bf16 autocast on CUDA (published: bf16-mixed); no effect on a CPU

    def validate(self) -> None:
        super().validate()
        if self.adversarial not in MODES:
            raise ConfigError(f"adversarial must be one of {', '.join(MODES)}, "
                              f"got {self.adversarial!r}")
        if self.real_label_when not in ("above", "below"):
            raise ConfigError(f"real_label_when must be above or below, "
                              f"got {self.real_label_when!r}")
        _positive(self, "lr_d", "d_every")
        if self.weight_label < 0 or self.real_jitter < 0:
            raise ConfigError("weight_label and real_jitter must be >= 0")
        if not (0 <= self.beta1_d < 1 and 0 <= self.beta2_d < 1):
            raise ConfigError("beta1_d and beta2_d must lie in [0, 1)")
        if self.max_elements < 119:
            raise ConfigError("max_elements must be >= 119 (atomic numbers 0..118)")


def _straight_through(logits: torch.Tensor) -> torch.Tensor:
    """One-hot argmax types in the forward pass, the softmax's gradient in the backward."""
    soft = logits.softmax(-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


def discriminator_due(batch_index: int, epoch: int, every: int = 10) -> bool:
    """Whether D steps on this batch: (batch_index + offset) % every == 0 with an offset
    that starts at 0 and grows by one (mod every) each epoch, as published."""
    return (batch_index + epoch % every) % every == 0


def _pretrained(path: str, what: str):
    """An ssl-pretrain model read from `path`, or a one-line CheckpointError."""
    from dismai.models.base import GenerativeModel, read_torch_file

    kind = read_torch_file(path).get("model")
    if kind != "ssl-pretrain":
        raise CheckpointError(f"{path}: {what} must be an ssl-pretrain model file, not "
                              f"{kind!r}")
    rng = torch.get_rng_state()  # building it draws initial weights: leave no trace
    try:
        return GenerativeModel.load(path, device="cpu")
    finally:
        torch.set_rng_state(rng)


def _check_backbone(pre, cfg, path: str, what: str) -> None:
    mine = dataclasses.asdict(cfg.backbone())
    theirs = dataclasses.asdict(pre.config.backbone())
    diff = [k for k in mine if k not in _NOT_COMPARED and mine[k] != theirs[k]]
    if diff:
        show = ", ".join(f"{k} {theirs[k]} vs {mine[k]}" for k in diff[:3])
        raise CheckpointError(f"{path}: {what}'s backbone differs from this config's "
                              f"({show}); use the sizes of its pre-training")


class SSLGAN(SSLPretrain):
    """The masked-atom model's GAN stage: G (`self.net`, as in pre-training) against a
    per-crystal discriminator `self.disc`."""

    name = "ssl-gan"
    Config = SSLGANConfig
    loss_columns = ("loss", "atom_loss", "pos_loss", "label_loss", "d_loss", "d_accuracy",
                    "val_loss", "val_atom_loss", "val_pos_loss", "val_label_loss",
                    "val_masked_accuracy", "val_d_accuracy")

    # ------------------------------------------------------------------ networks
    def _build(self, data) -> None:
        from dismai.crystals import CrystalSet
        from dismai.models.ssl_finetune import property_network

        super()._build(data)  # G = self.net, its best weights, the corruption generator
        cfg, d_src = self.config, None
        if isinstance(data, CrystalSet):  # fitting: start from the pre-trained files
            g_src = None
            if cfg.generator_from:
                g_src = _pretrained(cfg.generator_from, "generator_from")
                _check_backbone(g_src, cfg, cfg.generator_from, "generator_from")
                self.net.load_state_dict(g_src._sampler().state_dict())
            d_path = cfg.discriminator_from or cfg.generator_from
            if d_path and d_path != "none":
                d_src = g_src if d_path == cfg.generator_from and g_src is not None else \
                    _pretrained(d_path, "discriminator_from")
                _check_backbone(d_src, cfg, d_path, "discriminator_from")
        self.disc = property_network(cfg.backbone(), 2, d_src)[0].to(self._dev)

    def modules(self) -> dict:
        return {**super().modules(), "disc": self.disc}

    def make_optimizers(self) -> dict:
        cfg = self.config
        return {"net": torch.optim.Adam(self.net.parameters(), lr=cfg.lr),
                "disc": torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_d,
                                         betas=(cfg.beta1_d, cfg.beta2_d))}

    def _autocast(self):
        if self._dev.type == "cuda" and self.config.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ data
    def check_data(self, train, val=None) -> None:
        super().check_data(train, val)
        key = self.config.real_label_property
        for what, s in (("training", train), ("validation", val)):
            for i, c in enumerate(s or ()):
                if key and key not in c.properties:
                    raise TrainingDataError(f"{what} crystal {i} has no property {key!r} "
                                            "(real_label_property)")

    def prepare_data(self, train, val) -> None:
        super().prepare_data(train, val)
        self._labels = self._real_labels(self._train)
        self._val_labels = self._real_labels(self._val)

    def _real_labels(self, crystals) -> np.ndarray:
        cfg = self.config
        if not cfg.real_label_property:
            return np.ones(len(crystals), dtype=np.int64)
        y = np.array([float(c.properties[cfg.real_label_property]) for c in crystals])
        hit = y >= cfg.real_label_threshold if cfg.real_label_when == "above" else \
            y <= cfg.real_label_threshold
        return hit.astype(np.int64)

    # ------------------------------------------------------------------ one batch
    def generator_terms(self, crystals, gen: torch.Generator) -> dict:
        """Corrupt `crystals` (drawing from `gen`), run G and D on the fake, and return G's
        loss terms (0-d tensors), the masked accuracy, and what D's step needs: the batch
        and the fake (types, positions), detached."""
        cfg, dev = self.config, self._dev
        b = AtomBatch.from_crystals(crystals, dtype=torch.float32)
        masked, mask, noisy, target = corrupt(b, gen, cfg)
        cell, natoms, numbers = b.cell.to(dev), b.natoms.to(dev), b.numbers.to(dev)
        noisy, target, mask = noisy.to(dev), target.to(dev), mask.to(dev)
        with self._autocast():
            out = self.net(masked.to(dev), noisy, cell, natoms)
        logits, vector = out["node"].float(), out["vector"].float()
        atom = F.cross_entropy(logits, numbers - 1)
        pos_loss = F.mse_loss(vector, target)
        acc = (logits.argmax(-1)[mask] == numbers[mask] - 1).float().mean()
        if cfg.adversarial == "fixed":  # types and positions with their gradients
            types = F.pad(_straight_through(logits), (1, self.disc.embed.num_embeddings - 119))
            pos = _denoised(noisy, vector, cell, natoms)
            self.disc.requires_grad_(False)  # D is frozen during G's step
            try:
                with self._autocast():
                    d_fake = self.disc(types, pos, cell, natoms)["graph"].float()
            finally:
                self.disc.requires_grad_(True)
        else:  # as published: D on argmax types under no_grad -> no gradient to G
            with torch.no_grad():
                types = logits.argmax(-1) + 1
                pos = _denoised(noisy, vector, cell, natoms)
                with self._autocast():
                    d_fake = self.disc(types, pos, cell, natoms)["graph"].float()
        label = (d_fake.softmax(-1) - _onehot(1, len(natoms), dev)).abs().sum(-1).mean()
        loss = cfg.weight_label * label + atom + cfg.weight_loss_pos * pos_loss
        return {"loss": loss, "atom_loss": atom, "pos_loss": pos_loss, "label_loss": label,
                "masked_accuracy": acc, "batch": b,
                "fake": (types.detach(), pos.detach())}

    def discriminator_terms(self, b: AtomBatch, fake, labels: np.ndarray,
                            gen: torch.Generator) -> dict:
        """D's loss on the real batch `b` (jittered, drawing from `gen`) and on the fake, and
        its accuracy (the mean of its real and fake accuracies)."""
        cfg, dev = self.config, self._dev
        real_pos, _ = add_position_noise(b, gen, cfg.real_jitter, "uniform")
        cell, natoms = b.cell.to(dev), b.natoms.to(dev)
        y = torch.as_tensor(labels, device=dev)
        with self._autocast():
            d_real = self.disc(b.numbers.to(dev), real_pos.to(dev), cell, natoms)["graph"]
            d_fake = self.disc(fake[0], fake[1], cell, natoms)["graph"]
        d_real, d_fake = d_real.float(), d_fake.float()
        zero = torch.zeros_like(y)
        loss = F.l1_loss(d_real.softmax(-1), F.one_hot(y, 2).float()) + \
            F.l1_loss(d_fake.softmax(-1), F.one_hot(zero, 2).float())
        acc = 0.5 * ((d_real.argmax(-1) == y).float().mean()
                     + (d_fake.argmax(-1) == 0).float().mean())
        return {"d_loss": loss, "d_accuracy": acc}

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        terms = self.generator_terms([self._train[i] for i in items], self._gen)
        opt = self.optimizers["net"]
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        n = len(items)
        stats = {k: (terms[k].detach(), n)
                 for k in ("loss", "atom_loss", "pos_loss", "label_loss")}
        if discriminator_due(batch_index, self._epoch, self.config.d_every):
            d = self.discriminator_terms(terms["batch"], terms["fake"], self._labels[items],
                                         self._gen)
            opt_d = self.optimizers["disc"]
            opt_d.zero_grad(set_to_none=True)
            d["d_loss"].backward()
            opt_d.step()
            stats.update({k: (v.detach(), n) for k, v in d.items()})
        return self.validate_when_due(stats, batch_index)

    @torch.no_grad()
    def validation(self, epoch: int) -> dict[str, float]:
        """Mean G losses, masked accuracy and D accuracy on the validation crystals,
        corrupted from `validation_generator`."""
        g, bs = self.validation_generator(epoch), self.config.batch_size

        def terms(part, start):
            t = self.generator_terms(part, g)
            t.update(self.discriminator_terms(t.pop("batch"), t.pop("fake"),
                                              self._val_labels[start:start + bs], g))
            t.pop("d_loss")
            return t

        self.set_train_mode(False)
        try:
            return batch_means(self._val, bs, terms)
        finally:
            self.set_train_mode(True)


def _onehot(k: int, n: int, device) -> torch.Tensor:
    return F.one_hot(torch.full((n,), k, device=device), 2).float()


def _denoised(noisy, vector, cell, natoms):
    """wrap(noisy - predicted fractional noise @ cell): the fake crystal's positions."""
    owner = torch.repeat_interleave(torch.arange(len(natoms), device=noisy.device), natoms)
    frac = torch.einsum("ti,tij->tj", noisy, torch.linalg.inv(cell)[owner]) - vector
    frac = frac - torch.floor(frac).detach()
    return torch.einsum("ti,tij->tj", frac, cell[owner])
