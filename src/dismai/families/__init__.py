"""Dataset families as plugins: one module each, registered here by one line.

``get_family(name)`` returns the family object (a :class:`DatasetFamily`); the dataset
registry, the builder, the evaluation core and the CLI ask it for everything that differs
between families.  A plugin outside dismai calls ``FAMILIES.register(name, "pkg.mod:Class")``.
"""

from __future__ import annotations

from dismai.families.base import BuildResult, DatasetFamily, DatasetSpec
from dismai.registry import Registry

__all__ = ["FAMILIES", "get_family", "all_families", "DatasetFamily", "DatasetSpec",
           "BuildResult"]

#: name -> the family object (stateless; one per module, named FAMILY)
FAMILIES = Registry("dataset family")
FAMILIES.register("alloy", "dismai.families.alloy:FAMILY")
FAMILIES.register("a-si", "dismai.families.asi:FAMILY")
FAMILIES.register("interface", "dismai.families.interface:FAMILY")
FAMILIES.register("disordered", "dismai.families.disordered:FAMILY")


def get_family(name: str) -> DatasetFamily:
    """The family object registered under `name`."""
    return FAMILIES.get(name)


def all_families() -> list[DatasetFamily]:
    return [get_family(n) for n in FAMILIES.names()]
