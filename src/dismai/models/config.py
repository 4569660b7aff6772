"""Model configurations: flat dataclasses filled from named YAML presets and user files.

A configuration is resolved in layers, each a plain mapping of keys to values:

  dataclass defaults  <-  preset "defaults"  <-  preset section for the dataset family
                      <-  the user's --config file  <-  explicit overrides

Presets live in ``dismai/models/presets/<model>-<preset>.yaml`` as

    families: [a-si]     # optional: the families this preset is meant for (else: all)
    defaults:            # every dataset family
      key: value
    alloy:               # only for the alloy family (also: a-si, interface)
      key: value

and a user file is one flat mapping.  Every key must be a field of the model's config class
and every value must have the field's type: a misspelt key is an error, never ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from importlib import resources
from pathlib import Path

import yaml

from dismai.errors import ConfigError, ModelError

__all__ = [
    "ModelError",
    "ConfigError",
    "ModelConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "load_yaml_mapping",
    "preset_names",
    "preset_layers",
    "resolve_config",
    "config_differences",
]



@dataclasses.dataclass
class ModelConfig:
    """Base of all model configs; a model with nothing to configure uses it as is."""

    def validate(self) -> None:
        """Check value ranges and choices; raise ConfigError.  Overridden per model."""


@dataclasses.dataclass
class TrainConfig(ModelConfig):
    """Keys of the shared training loop (dismai.models.training), inherited by trained models."""

    seed: int = 0
    epochs: int = 1
    batch_size: int = 32
    device: str = "auto"  # auto (CUDA if present), cpu, cuda, cuda:1, ...
    checkpoint_every: int = 0  # steps between checkpoints (0: time-based only)
    checkpoint_minutes: float = 10.0  # wall-clock minutes between checkpoints (0: off)
    sample_every: int = 0  # epochs between extxyz sample dumps (0: only at the end)
    n_sample_dump: int = 100  # structures per sample dump

    #: Keys that may change on --resume: they do not alter the training trajectory.
    RESUMABLE_KEYS: typing.ClassVar[frozenset] = frozenset(
        {"epochs", "device", "checkpoint_every", "checkpoint_minutes", "sample_every",
         "n_sample_dump"}
    )

    def validate(self) -> None:
        _positive(self, "epochs", "batch_size")
        _non_negative(self, "checkpoint_every", "checkpoint_minutes", "sample_every",
                      "n_sample_dump")
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device must be auto, cpu or cuda[:i], got {self.device!r}")


def _positive(cfg, *names: str) -> None:
    for n in names:
        if getattr(cfg, n) <= 0:
            raise ConfigError(f"{n} must be positive, got {getattr(cfg, n)!r}")


def _non_negative(cfg, *names: str) -> None:
    for n in names:
        if getattr(cfg, n) < 0:
            raise ConfigError(f"{n} must be >= 0, got {getattr(cfg, n)!r}")


# ---------------------------------------------------------------------------- conversion
def _check_type(key: str, value, hint, source: str):
    """Return value converted to the field type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    where = f"{source}: key {key!r}"
    if origin in (list, tuple):
        (item,) = set(typing.get_args(hint)) - {Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_check_type(key, v, item, source) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-3 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise ConfigError(f"{where} must be a number, got {value!r}")
            value = number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {hint!r} for {key!r}")  # programming error


def _fields(cls) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_keys(cls, data: dict, source: str) -> None:
    """Raise ConfigError naming the first key of `data` that `cls` does not have."""
    fields = _fields(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(fields))}"
            )


def config_from_dict(cls, data: dict, source: str = "config"):
    """Build and validate a config of class `cls`; unknown keys and bad types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values")
    check_keys(cls, data, source)
    fields = _fields(cls)
    values = {k: _check_type(k, v, fields[k], source) for k, v in data.items()}
    cfg = cls(**values)
    cfg.validate()
    return cfg


def config_to_dict(cfg) -> dict:
    """Plain dict of a config (lists, numbers, strings): safe for YAML and torch checkpoints."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, (list, tuple)) else v
    return out


# ---------------------------------------------------------------------------- YAML and presets
def load_yaml_mapping(path) -> dict:
    """Read a YAML file that must hold one mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    return data


def _preset_dir() -> Path:
    return Path(str(resources.files("dismai.models") / "presets"))


def preset_names(model: str) -> list[str]:
    """Names of the presets shipped for `model` (from ``<model>-<preset>.yaml``), not
    counting those of a longer model name it starts ("ssl" and "ssl-pretrain-cpu")."""
    from dismai.models.registry import available_models

    prefix = f"{model}-"
    longer = [f"{m}-" for m in available_models() if m.startswith(prefix)]
    return sorted(p.stem[len(prefix):] for p in _preset_dir().glob(f"{prefix}*.yaml")
                  if not any(p.stem.startswith(o) for o in longer))


def preset_layers(model: str, preset: str, family: str | None) -> list[tuple[str, dict]]:
    """The (source, mapping) layers a preset contributes for a dataset family."""
    path = _preset_dir() / f"{model}-{preset}.yaml"
    if not path.is_file():
        known = preset_names(model)
        raise ConfigError(
            f"no preset {preset!r} for model {model!r}; available: {', '.join(known) or 'none'}"
        )
    from dismai.families import FAMILIES  # a preset may specialise any registered family

    data = load_yaml_mapping(path)
    only = data.pop("families", None)  # a preset sized for some families only
    for section in data:
        if section != "defaults" and section not in FAMILIES:
            raise ConfigError(
                f"{path.name}: unknown section {section!r}; use defaults, families or one of "
                f"{', '.join(FAMILIES.names())}"
            )
    if only is not None and family is not None and family not in only:
        which = f"the {only[0]} family" if len(only) == 1 else \
            f"the {', '.join(only[:-1])} and {only[-1]} families"
        raise ConfigError(f"preset {preset!r} of {model} is sized for {which} only, not "
                          f"{family}; use another preset")
    layers = [(f"preset {preset} (defaults)", data.get("defaults") or {})]
    if family is not None and family in data:
        layers.append((f"preset {preset} ({family})", data[family] or {}))
    return layers


def resolve_config(
    model: str,
    cls,
    preset: str | None = None,
    family: str | None = None,
    config_file=None,
    overrides: dict | None = None,
):
    """Merge defaults, a preset (with its family section), a user file and overrides."""
    merged: dict = {}
    layers: list[tuple[str, dict]] = []
    if preset is not None:
        if preset_names(model) or _fields(cls):
            layers += preset_layers(model, preset, family)
    if config_file is not None:
        layers.append((str(config_file), load_yaml_mapping(config_file)))
    if overrides:
        layers.append(("overrides", dict(overrides)))
    for source, layer in layers:
        if not isinstance(layer, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values")
        check_keys(cls, layer, source)
        merged.update(layer)
    return config_from_dict(cls, merged, source="config")


def config_differences(old: dict, new: dict, ignore=frozenset()) -> list[str]:
    """Human-readable 'key: old -> new' lines for keys whose values differ."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in ignore:
            continue
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out
