"""The interface every generative model in dismai implements.

Every Dismai-Bench model (CryinGAN, DiffCSP, CDVAE, CrysTens, UniMat, the masked-atom
equivariant model, the baselines) generates structures for one fixed cell and one fixed,
block-ordered species list: the dataset's template.  So the whole contract is

    model = ModelClass(config)                  # config: the class's ModelConfig dataclass
    model.fit(train, val, run_dir=..., resume=...)
    model.save(path);  model = GenerativeModel.load(path)
    structures = model.sample(n, seed=...)      # StructureSet on the template

A subclass provides ``_build`` (create networks for a template), ``_sample_frac`` and,
if it has weights, ``state_dict``/``load_state_dict``; ``fit`` for trained models is
provided by ``dismai.models.training.TrainableModel``.  Files are torch archives that
``torch.load(weights_only=True)`` reads: only tensors, strings, numbers, lists and dicts.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import numpy as np

from dismai.errors import CheckpointError, ModelError, NotFittedError, TrainingDataError
from dismai.models.config import ModelConfig, config_from_dict, config_to_dict
from dismai.structures import StructureSet

__all__ = [
    "GenerativeModel",
    "CheckpointError",
    "TrainingDataError",
    "NotFittedError",
    "FILE_FORMAT",
    "check_training_data",
    "read_torch_file",
    "template_to_dict",
    "template_from_dict",
]

FILE_FORMAT = "dismai-model"
FILE_VERSION = 1


def check_training_data(
    train: StructureSet, val: StructureSet | None = None, min_atoms: int = 2
) -> None:
    """One-line errors for data no fixed-template model can learn from."""
    if not isinstance(train, StructureSet):
        raise TrainingDataError(f"training data must be a StructureSet, got {type(train).__name__}")
    if len(train) < 1:
        raise TrainingDataError("the training set is empty")
    if train.n_atoms < min_atoms:
        raise TrainingDataError(
            f"structures have {train.n_atoms} atom(s); this model needs at least {min_atoms}"
        )
    if val is not None and len(val) > 0:
        if val.species != train.species:
            raise TrainingDataError(
                "validation structures have a different species order than the training "
                f"structures ({val.formula} vs {train.formula})"
            )
        if not np.allclose(val.lattice, train.lattice, atol=1e-4):
            raise TrainingDataError(
                "validation structures have a different cell than the training structures; "
                "a fixed-template model needs one lattice"
            )


def template_to_dict(t: StructureSet) -> dict:
    import torch

    return {
        "lattice": torch.as_tensor(t.lattice, dtype=torch.float64),
        "species": list(t.species),
        "frac": torch.as_tensor(t.frac[0], dtype=torch.float64),
    }


def template_from_dict(d: dict) -> StructureSet:
    return StructureSet(
        np.asarray(d["lattice"], dtype=np.float64),
        tuple(d["species"]),
        np.asarray(d["frac"], dtype=np.float64)[None],
    )


def read_torch_file(path, kind: str = "model") -> dict:
    """Load a dismai file safely (weights_only) or raise one CheckpointError line."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {kind} file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, random bytes ...
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = msg.split(". ")[0][:120]
        raise CheckpointError(f"{path}: not a readable dismai {kind} file ({msg})") from None
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise CheckpointError(f"{path}: not a dismai {kind} file (no '{FILE_FORMAT}' header)")
    if data.get("version") != FILE_VERSION:
        raise CheckpointError(
            f"{path}: file version {data.get('version')!r}, this dismai reads {FILE_VERSION}"
        )
    for key in ("model", "config", "template", "state"):
        if key not in data:
            raise CheckpointError(f"{path}: {kind} file has no {key!r} entry (corrupted?)")
    return data


class GenerativeModel(abc.ABC):
    """A generator of structures on one fixed template (cell + block-ordered species)."""

    #: Registry name, e.g. "cryingan"; set by every concrete subclass.
    name: ClassVar[str] = ""
    #: The config dataclass; ``ModelConfig`` itself for models without settings.
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    #: Smallest number of atoms per structure the model handles.
    min_atoms: ClassVar[int] = 1
    #: File name under which workflows write sample_report() (e.g. UniMat's
    #: element_accuracy.csv); "" for models that report nothing.
    sample_report_file: ClassVar[str] = ""

    def __init__(self, config: ModelConfig | dict | None = None):
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = config_from_dict(self.Config, config, source=f"{self.name} config")
        elif not isinstance(config, self.Config):
            raise ModelError(
                f"{self.name} expects a {self.Config.__name__}, got {type(config).__name__}"
            )
        config.validate()
        self.config = config
        self.template: StructureSet | None = None

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def fit(
        self,
        train: StructureSet,
        val: StructureSet | None = None,
        *,
        run_dir=None,
        resume: bool = False,
        progress: bool = False,
    ) -> None:
        """Learn from `train` (and `val` where the model uses one); sets self.template.

        run_dir: folder for checkpoints, logs and sample dumps (None: keep nothing on disk).
        resume: continue from the newest checkpoint in run_dir instead of refusing to
        overwrite it.
        """

    @abc.abstractmethod
    def _sample_frac(self, n: int, seed: int):
        """(n, N, 3) fractional coordinates for the template's species order, or a tuple
        (coordinates, {name: per-structure array}) for models that also generate properties."""

    def _build(self, template: StructureSet) -> None:
        """Create networks and buffers for a template (called by fit and by load)."""
        self.template = template[0]

    # --- what a model learns from: StructureSets here, CrystalSets in crystal_model -------
    def check_data(self, train, val=None) -> None:
        """One-line TrainingDataError for data this model cannot learn from."""
        check_training_data(train, val, min_atoms=self.min_atoms)

    def template_payload(self) -> dict:
        """The template as tensors and plain values, for model files and checkpoints."""
        return template_to_dict(self.template)

    @classmethod
    def template_from_payload(cls, d: dict):
        """What template_payload wrote, in the form _build takes."""
        return template_from_dict(d)

    def write_samples(self, samples, path) -> None:
        """Write what sample() returns (the trainer's sample dumps)."""
        from dismai.extxyz import write_extxyz

        write_extxyz(samples, path)

    def state_dict(self) -> dict:
        """Tensors that, with the config and template, reproduce the fitted model."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise CheckpointError(f"{self.name} has no weights but the file holds {len(state)}")

    # ------------------------------------------------------------------ provided
    @property
    def is_fitted(self) -> bool:
        return self.template is not None

    def sample(self, n: int, seed: int = 0) -> StructureSet:
        """n structures on the template; the same (n, seed) gives the same structures."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name}: call fit() or load() before sample()")
        if n < 1:
            raise ModelError(f"number of structures must be >= 1, got {n}")
        out = self._sample_frac(int(n), int(seed))
        frac, props = out if isinstance(out, tuple) else (out, {})
        frac = np.asarray(frac, dtype=np.float64)
        return self.template.with_frac(frac, props).wrapped()

    def sample_report(self) -> dict[str, float]:
        """Numbers about the last sample() call that the returned structures cannot carry,
        such as how many generated structures were rejected (one CSV row); {} when none."""
        return {}

    def save(self, path) -> None:
        """Write config, template and weights atomically to one torch file."""
        import torch

        from dismai.fileio import atomic_path

        if not self.is_fitted:
            raise NotFittedError(f"{self.name}: nothing to save before fit()")
        payload = self.file_payload()
        with atomic_path(path, suffix=".pt.tmp") as tmp:
            torch.save(payload, tmp)

    def file_payload(self) -> dict:
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "model": self.name,
            "config": config_to_dict(self.config),
            "template": self.template_payload(),
            "state": self.state_dict(),
        }

    @staticmethod
    def load(path, device: str = "auto") -> GenerativeModel:
        """Rebuild any registered model from a file written by save() or a checkpoint.

        device: where a torch model runs now (auto: CUDA if present), whatever it was
        trained on.
        """
        from dismai.models.registry import get_model_class

        data = read_torch_file(path)
        cls = get_model_class(data["model"])
        try:
            config = config_from_dict(cls.Config, data["config"], source=f"{path} config")
        except ModelError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if "device" in data["config"]:
            config.device = device
        try:
            model = cls(config)
            model._build(cls.template_from_payload(data["template"]))
            model.load_state_dict(data["state"])
        except ModelError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise CheckpointError(
                f"{path}: weights do not fit the {cls.name} model ({msg})"
            ) from None
        return model

    def __repr__(self) -> str:
        fitted = f"fitted on {self.template.formula}" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}({fitted})"
