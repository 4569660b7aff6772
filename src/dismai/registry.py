"""The one registry mechanism: names mapped to "module:object" paths, imported on first use.

Models, energy models and dataset families are all looked up through a :class:`Registry`,
so the command line starts without importing torch, LAMMPS or CHGNet, a plugin registers
with one call, and a misspelt name gets a did-you-mean hint.
"""

from __future__ import annotations

import difflib
import importlib

from dismai.errors import UnknownNameError

__all__ = ["Registry"]


class Registry:
    """name -> object, where the object is given as "package.module:attribute" (or itself).

    kind: what the names are (used in error messages), e.g. "model".
    Entries may carry tags (e.g. ``baseline=True``) readable without importing them.
    """

    def __init__(self, kind: str, entries: dict[str, str] | None = None,
                 error: type[UnknownNameError] = UnknownNameError):
        self.kind = kind
        self._paths: dict[str, object] = {}
        self._tags: dict[str, dict] = {}
        self._loaded: dict[str, object] = {}
        self._error = error
        for name, path in (entries or {}).items():
            self.register(name, path)

    def register(self, name: str, target, *, overwrite: bool = True, **tags) -> None:
        """Add `name`; target is "module:attribute" (imported lazily) or the object itself."""
        if not overwrite and name in self._paths:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if isinstance(target, str) and ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target must be 'module:attribute'")
        self._paths[name] = target
        self._tags[name] = dict(tags)
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._paths.pop(name, None)
        self._tags.pop(name, None)
        self._loaded.pop(name, None)

    def names(self, **tags) -> list[str]:
        """Sorted names, optionally only those whose tags match (e.g. baseline=False)."""
        return sorted(n for n in self._paths
                      if all(self._tags[n].get(k, False) == v for k, v in tags.items()))

    def tags(self, name: str) -> dict:
        self._check(name)
        return dict(self._tags[name])

    def __contains__(self, name) -> bool:
        return name in self._paths

    def __iter__(self):
        return iter(self.names())

    def _check(self, name: str) -> None:
        if name in self._paths:
            return
        close = difflib.get_close_matches(str(name), list(self._paths), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise self._error(f"unknown {self.kind} {name!r}{hint}; known: "
                          f"{', '.join(self.names()) or 'none'}")

    def get(self, name: str):
        """The registered object, imported on first use."""
        self._check(name)
        if name not in self._loaded:
            target = self._paths[name]
            if isinstance(target, str):
                module, attr = target.split(":")
                target = getattr(importlib.import_module(module), attr)
            self._loaded[name] = target
        return self._loaded[name]

    def __repr__(self) -> str:
        return f"<Registry of {len(self._paths)} {self.kind}s: {', '.join(self.names())}>"
