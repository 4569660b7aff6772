"""What a dataset family provides: the one protocol behind datasets, builds and evaluation.

A *family* is a kind of material with its own recipe and metric suite (the FCC alloys,
amorphous Si, the battery interface).  Everything that differs between families lives in
one :class:`DatasetFamily` subclass; the dataset registry, the builder, the evaluation
core, the CLI and the models only ask the family.  ``docs/extending.md`` shows how to add
one: write the module, add one registration line to ``dismai/families/__init__.py``, run
``dismai.testing.check_family``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from dismai.errors import DatasetError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from dismai.evaluation import Evaluation
    from dismai.structures import StructureSet

__all__ = ["DatasetSpec", "BuildResult", "DatasetFamily", "REFERENCE_SCHEMA",
           "REFERENCE_VERSION", "reference_header", "check_reference"]

REFERENCE_SCHEMA = "dismai-reference"
REFERENCE_VERSION = 2


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its name, family, size and default recipe parameters.

    parent: for a small variant of a full-size dataset, the name of that dataset.
    """

    name: str
    family: str
    description: str
    n_atoms: int
    composition: dict
    recipe: dict  # default recipe parameters (the family build's keyword arguments)
    parent: str | None = None


@dataclass
class BuildResult:
    """What a family's build returns; the generic builder writes it to disk.

    data: the main array (NAME.npy); arrays: extra arrays (NAME.<key>.npy, checksummed);
    structures: all structures, train rows first; reference: the training reference
    statistics (without the common header, added by the builder); statistics: summary
    statistics for the manifest; info: build bookkeeping for the manifest.
    """

    data: np.ndarray
    n_train: int
    structures: StructureSet
    reference: dict
    statistics: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def reference_header(family: str, dataset: str, n_atoms: int, n_train: int,
                     n_val: int) -> dict:
    """The keys every shipped ``NAME.reference.json`` starts with (one schema for all)."""
    return {"schema": REFERENCE_SCHEMA, "version": REFERENCE_VERSION, "family": family,
            "dataset": dataset, "n_atoms": int(n_atoms), "n_train": int(n_train),
            "n_val": int(n_val)}


def check_reference(ref: dict, family: str, dataset: str, source: str = "reference") -> dict:
    """One-line DatasetError unless `ref` follows the shared reference schema."""
    if not isinstance(ref, dict) or ref.get("schema") != REFERENCE_SCHEMA:
        raise DatasetError(f"{source}: not a dismai reference file (no {REFERENCE_SCHEMA!r})")
    if ref.get("version") != REFERENCE_VERSION:
        raise DatasetError(f"{source}: reference version {ref.get('version')!r}, this dismai "
                           f"reads {REFERENCE_VERSION}; rebuild the dataset")
    if ref.get("family") != family or ref.get("dataset") != dataset:
        raise DatasetError(f"{source}: reference of {ref.get('dataset')!r} "
                           f"({ref.get('family')!r}), expected {dataset!r} ({family!r})")
    if not isinstance(ref.get("noise_floor"), dict):
        raise DatasetError(f"{source}: reference has no noise_floor")
    return ref


class DatasetFamily:
    """Base class of the family plugins: subclasses fill in the class attributes and the
    methods that raise NotImplementedError.

    Class attributes:
      name           registry name, e.g. "a-si"
      metric_names   the metrics of an evaluation, in table order
      metric_titles  readable names for tables (default: the metric name)
      report_metrics the columns of the paper's tables (`dismai report`; default:
                     metric_names)
      baselines      the baseline models ``dismai bench`` compares against
      options        evaluation options and their defaults (``dismai evaluate`` flags)
      relaxes        generated structures are relaxed before scoring
      storage        how NAME.npy stores the structures (written into the manifest)
      recipe_version bumped when the recipe changes its output for a given seed
      accepts_added  `dismai datasets add` may register user files under this family
      default_energy_model  the potential of an added dataset when none is named
    """

    name: ClassVar[str] = ""
    metric_names: ClassVar[tuple[str, ...]] = ()
    metric_titles: ClassVar[dict[str, str]] = {}
    report_metrics: ClassVar[tuple[str, ...]] = ()
    baselines: ClassVar[tuple[str, ...]] = ("random",)
    options: ClassVar[dict[str, object]] = {}
    relaxes: ClassVar[bool] = False
    storage: ClassVar[str] = ""
    recipe_version: ClassVar[int] = 1
    accepts_added: ClassVar[bool] = False
    #: the near-copy distance (dismai.metrics.memorisation): "atoms" or "sites"
    near_copy_kind: ClassVar[str] = "atoms"
    #: the potential an added dataset of this family relaxes with unless told otherwise
    default_energy_model: ClassVar[str | None] = None
    #: the learning gate's (metric, "as_generated" | "relaxed") pairs (dismai.learning);
    #: empty: the family has no gate
    gate_metrics: ClassVar[tuple[tuple[str, str], ...]] = ()

    # ------------------------------------------------------------------ datasets
    def datasets(self) -> list[DatasetSpec]:
        """The registered datasets of this family."""
        raise NotImplementedError

    def structures(self, data: np.ndarray, arrays: dict[str, np.ndarray],
                   manifest: dict) -> StructureSet:
        """Decode the stored arrays (see BuildResult) into all structures, train first."""
        raise NotImplementedError

    def build(self, spec: DatasetSpec, recipe: dict, *, work_dir, n_workers: int | None,
              progress) -> BuildResult:
        """Run the recipe (resumable in work_dir) and compute reference and statistics."""
        raise NotImplementedError

    # ------------------------------------------------------------------ added datasets
    def fit(self, structures: StructureSet) -> StructureSet:
        """User structures on this family's canonical cell (same fractional coordinates);
        one-line DatasetError unless they fit the family's definitions."""
        raise DatasetError(f"the {self.name} family does not take added datasets; "
                           "use --family disordered")

    def added_reference(self, train: StructureSet, val: StructureSet, *, options: dict,
                        n_workers) -> dict:
        """The reference statistics and noise floor of an added dataset (no header)."""
        raise DatasetError(f"the {self.name} family does not take added datasets; "
                           "use --family disordered")

    # ------------------------------------------------------------------ evaluation
    def check_options(self, options: dict) -> dict:
        """The family's defaults updated with `options`; one-line error for a foreign one.

        None values mean "not given" and keep the default.
        """
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise InputError(f"evaluation option {unknown[0]!r} does not apply to the "
                             f"{self.name} family (its options: {known})")
        return {**self.options, **given}

    def evaluate(self, gen: StructureSet, dataset, n_generated: int, *, out_dir=None,
                 progress=True, **options) -> Evaluation:
        """Score `gen` (already checked against the dataset template) against `dataset`."""
        raise NotImplementedError

    def resolved_options(self, evaluation: Evaluation) -> dict:
        """The options an evaluation actually used where it chose one itself ("auto"), so
        that ``dismai bench`` scores the baselines by the same rule as the model."""
        return {}

    def write_outputs(self, evaluation: Evaluation, reference: dict, out_dir) -> None:
        """Per-structure CSV, plots and any family-specific files (not metrics.json or
        metrics.txt, which the evaluation core writes)."""
        raise NotImplementedError

    def title(self, metric: str) -> str:
        return self.metric_titles.get(metric, metric)

    def __repr__(self) -> str:
        return f"<dataset family {self.name}>"
