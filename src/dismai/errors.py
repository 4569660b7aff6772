"""The one error hierarchy of dismai, organised by what the user should do about it.

Every error meant for a user derives from :class:`DismaiError`; the command line prints
those as one line and exits with code 2.  Anything else that escapes is a bug and keeps
its traceback.  The built-in mix-ins (``ValueError``, ``LookupError``, ``ImportError``,
``RuntimeError``) let library callers keep catching the usual Python types.
"""

from __future__ import annotations

__all__ = [
    "DismaiError",
    "InputError",
    "StructureError",
    "ConfigError",
    "TrainingDataError",
    "UnknownNameError",
    "DatasetError",
    "ModelError",
    "CheckpointError",
    "NotFittedError",
    "RunDirError",
    "BackendUnavailable",
    "ComputationError",
]


class DismaiError(Exception):
    """Root of every expected, user-facing error."""


class InputError(DismaiError, ValueError):
    """A value, option or file given by the user that dismai cannot use."""


class StructureError(InputError):
    """A structure (or set) that cannot be represented or does not fit its template."""


class ConfigError(InputError):
    """Unknown key, wrong type or invalid value in a model configuration."""


class TrainingDataError(InputError):
    """Training data a model cannot use (mismatched cells or species, too few atoms)."""


class UnknownNameError(DismaiError, LookupError):
    """A name (model, dataset, family, energy model) that no registry knows."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class DatasetError(DismaiError):
    """A dataset that is not built, or whose shipped files are missing or corrupted."""


class ModelError(DismaiError):
    """A generative model used in a way it cannot honour."""


class CheckpointError(ModelError):
    """A model or checkpoint file that is missing, corrupted or not written by dismai."""


class NotFittedError(ModelError):
    """sample() or save() called before fit() or load()."""


class RunDirError(ModelError):
    """A run directory that holds another run, or nothing to resume."""


class BackendUnavailable(DismaiError, ImportError):
    """An optional backend (LAMMPS, CHGNet, SevenNet) is not installed or cannot load."""

    def __init__(self, backend: str, extra: str, detail: str | None = None):
        msg = f"{backend} is not installed: pip install 'dismai[{extra}]'"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.backend = backend
        self.extra = extra


class ComputationError(DismaiError, RuntimeError):
    """A long job that could not produce a result (nothing survived, a build failed)."""
