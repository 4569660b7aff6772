"""Contract checks and test factories for people who add a model, energy model or family.

Each ``check_*`` raises AssertionError with a message that says what broke; run it from a
test (``docs/extending.md``):

* :func:`check_generative_model` - determinism under a seed, template kept, shapes, save /
  load round trip, SIGINT-then-resume bit-identical to an uninterrupted run (CPU), and
  the invariances the class claims (``invariances``: "translation", "permutation").
* :func:`check_energy_model` - the ASE calculator and the batch path agree, and forces are
  minus the finite-difference gradient of the energy.
* :func:`check_family` - every dataset spec is consistent, the noise floor of every built
  dataset has exactly the metrics an evaluation of its validation split produces, and the
  shared bad inputs are refused with one line, exit code 2 and no output files.

* :func:`assert_equivariant` - rotating and translating crystals leaves a network's scalar
  outputs unchanged and rotates its vector outputs (e3nn's ``assert_equivariant``, for
  periodic structures).

Factories: :func:`toy_structures` (a few atoms, a triclinic cell, three species blocks),
:func:`toy_crystals` (general crystals for CrystalSet models) and :func:`model_state`
(weights plus optimiser state, for bit-identity checks).
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import numpy as np

from dismai.structures import StructureSet

__all__ = ["toy_structures", "toy_crystals", "model_state", "check_generative_model",
           "check_invariances",
           "check_energy_model", "check_family", "BAD_INPUTS", "requires_dataset",
           "rms_to_nearest", "check_memorisation", "check_result_files", "random_rotation",
           "assert_equivariant"]


# ---------------------------------------------------------------------------- factories
def toy_structures(m: int = 14, seed: int = 0, n_fe: int = 3, n_ni: int = 5,
                   n_cr: int = 4) -> StructureSet:
    """m random structures of 12 atoms (3 Fe, 5 Ni, 4 Cr) in a triclinic cell."""
    rng = np.random.default_rng(seed)
    lat = np.array([[5.0, 0.0, 0.0], [1.2, 6.0, 0.0], [0.3, -0.4, 7.0]])
    species = ["Fe"] * n_fe + ["Ni"] * n_ni + ["Cr"] * n_cr
    return StructureSet(lat, species, rng.random((m, len(species), 3)))


def toy_crystals(m: int = 8, seed: int = 0, max_atoms: int = 6):
    """m random general crystals (CrystalSet): 1..max_atoms atoms of Li, O, Ti or Sr,
    a random cell (lengths 3-7 Å, angles 80-100 degrees) each."""
    from ase.geometry import cellpar_to_cell

    from dismai.crystals import Crystal, CrystalSet

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(m):
        n = int(rng.integers(1, max_atoms + 1))
        cell = cellpar_to_cell(np.concatenate([rng.uniform(3, 7, 3), rng.uniform(80, 100, 3)]))
        out.append(Crystal(cell, rng.random((n, 3)), rng.choice([3, 8, 22, 38], n)))
    return CrystalSet(out, "toy crystals")


def model_state(model) -> dict:
    """Weights and every optimiser's state as one flat dict of tensors."""
    out = dict(model.state_dict())
    for name, opt in (getattr(model, "optimizers", None) or {}).items():
        state = opt.state_dict()
        for i, st in (state.get("state") or {}).items():
            for k, v in st.items():
                out[f"opt.{name}.{i}.{k}"] = v
    return out


def _same_state(a: dict, b: dict) -> bool:
    import torch

    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and torch.equal(x, y)):
                return False
        elif x != y:
            return False
    return True


# ---------------------------------------------------------------------------- models
def check_invariances(model, frac: np.ndarray, atol: float = 1e-4) -> list[str]:
    """Check every invariance in ``type(model).invariances`` through ``model.probe``;
    returns the names checked."""
    claimed = tuple(getattr(type(model), "invariances", ()) or ())
    if not claimed:
        return []
    assert hasattr(model, "probe"), f"{type(model).__name__} claims {claimed} but has no probe()"
    rng = np.random.default_rng(123)
    base = np.asarray(model.probe(frac), dtype=np.float64)
    scale = max(1.0, float(np.abs(base).max()))
    for name in claimed:
        if name == "translation":
            shift = rng.random(3)
            got = np.asarray(model.probe((frac + shift) % 1.0), dtype=np.float64)
            err = np.abs(got - base).max() / scale
            assert err < atol, f"not invariant under a common translation (rel. error {err:.2e})"
        elif name == "permutation":
            from dismai.structures import species_blocks

            species = model.template.species
            perm = np.concatenate([a + rng.permutation(b - a)
                                   for _, a, b in species_blocks(species)])
            got = np.asarray(model.probe(frac[:, perm]), dtype=np.float64)
            want = base[:, perm] if base.ndim == 3 else base
            err = np.abs(got - want).max() / scale
            assert err < atol, f"not invariant/equivariant under a permutation within species " \
                               f"blocks (rel. error {err:.2e})"
        else:
            raise AssertionError(f"unknown invariance {name!r}; use translation or permutation")
    return list(claimed)


def check_generative_model(name: str, tiny_config: dict, data, run_dir,
                           *, val: StructureSet | None = None, n_sample: int = 4,
                           interrupt_at: int | None = None) -> None:
    """The contract of a generative model registered as `name` (see the module doc).

    tiny_config: a config small enough for seconds on a CPU, with enough optimiser steps
    (epochs x batches) that ``interrupt_at`` (default: the middle step) is mid-run.
    run_dir: an empty scratch folder.  Models without a training loop (baselines) skip
    the resume check.  data: a StructureSet, or a CrystalSet for a general-crystal model
    (dismai.models.crystal_model), whose samples may be fewer than asked for.
    """
    from dismai.models import GenerativeModel, create_model
    from dismai.models.training import TrainableModel, TrainingInterrupted

    run_dir = Path(run_dir)
    cfg = {"device": "cpu", **tiny_config} if "device" in _config_keys(name) else tiny_config

    def fit(path, resume=False, on_step=None):
        m = create_model(name, cfg)
        kw = {"run_dir": path, "resume": resume}
        if on_step is not None:
            kw["on_step"] = on_step
        m.fit(data, val, **kw)
        return m

    ref = fit(run_dir / "ref")
    # same seed, same structures; another seed, others; template kept
    a, b, c = ref.sample(n_sample, seed=3), ref.sample(n_sample, seed=3), ref.sample(n_sample,
                                                                                      seed=4)
    assert np.array_equal(_flat(a), _flat(b)), "same seed gave different samples"
    assert not np.array_equal(_flat(a), _flat(c)), "different seeds gave identical samples"
    if isinstance(data, StructureSet):
        assert a.frac.shape == (n_sample, data.n_atoms, 3), f"sample shape {a.frac.shape}"
        assert np.isfinite(a.frac).all(), "samples contain NaN or inf"
        assert a.species == data.species, "species order not preserved"
        assert np.allclose(a.lattice, data.lattice), "cell not preserved"
    else:  # general crystals: failed reconstructions are left out, so <= n_sample
        assert len(a) <= n_sample, f"{len(a)} crystals from {n_sample} attempts"
        assert len(ref.generate(n_sample, seed=3)) == n_sample, "generate() lost attempts"
    # save / load round trip
    path = run_dir / "roundtrip.pt"
    ref.save(path)
    loaded = GenerativeModel.load(path, device="cpu")
    assert np.array_equal(_flat(loaded.sample(n_sample, seed=3)), _flat(a)), \
        "a saved and reloaded model samples differently"
    if isinstance(data, StructureSet):
        check_invariances(ref, a.frac)
    if not isinstance(ref, TrainableModel):
        return
    # SIGINT mid-run, then resume: bit-identical to the uninterrupted run
    steps = _steps_of(run_dir / "ref")
    stop = interrupt_at or max(1, steps // 2)
    assert 0 < stop < steps, f"interrupt step {stop} is not inside the {steps}-step run"

    def interrupt(step):
        if step == stop:
            os.kill(os.getpid(), signal.SIGINT)

    try:
        fit(run_dir / "resumed", on_step=interrupt)
    except TrainingInterrupted:
        pass
    else:
        raise AssertionError("SIGINT did not interrupt training")
    got = fit(run_dir / "resumed", resume=True)
    assert _same_state(model_state(ref), model_state(got)), \
        "resumed training differs from the uninterrupted run"
    assert (run_dir / "ref" / "losses.csv").read_text() == \
        (run_dir / "resumed" / "losses.csv").read_text(), "losses.csv differs after resume"
    assert np.array_equal(_flat(got.sample(n_sample, seed=3)), _flat(a)), \
        "resumed model samples differently"


def _flat(samples) -> np.ndarray:
    """Everything a sample holds as one array: coordinates of a StructureSet; cells,
    coordinates and atomic numbers of a CrystalSet (one marker per crystal)."""
    if isinstance(samples, StructureSet):
        return samples.frac
    parts = [np.concatenate([[c.n_atoms], c.lattice.ravel(), c.frac.ravel(), c.numbers])
             for c in samples]
    return np.concatenate(parts) if parts else np.zeros(0)


def _config_keys(name: str) -> set:
    import dataclasses

    from dismai.models import get_model_class

    cls = get_model_class(name)
    return {f.name for f in dataclasses.fields(cls.Config)} if hasattr(cls, "Config") else set()


def _steps_of(run: Path) -> int:
    import torch

    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    return int(ckpt["progress"]["step"])


# ---------------------------------------------------------------------------- energy
def check_energy_model(model, structures: StructureSet, *, delta: float = 1e-4,
                       n_atoms_checked: int = 3, atol_energy: float = 1e-6,
                       rtol_force: float = 1e-3) -> None:
    """Calculator and batch path agree; forces are minus the finite-difference gradient."""
    e_batch, f_batch = model.energy_forces(structures)
    assert e_batch.shape == (len(structures),), f"energies shape {e_batch.shape}"
    assert f_batch.shape == (len(structures), structures.n_atoms, 3), \
        f"forces shape {f_batch.shape}"
    calc = model.calculator()
    for k, atoms in enumerate(structures.to_atoms()):
        atoms.calc = calc
        e = atoms.get_potential_energy()
        f = atoms.get_forces()
        assert abs(e - e_batch[k]) < atol_energy * max(1.0, abs(e)), \
            f"structure {k}: calculator energy {e} != batch {e_batch[k]}"
        assert np.allclose(f, f_batch[k], atol=1e-6, rtol=1e-6), \
            f"structure {k}: calculator and batch forces differ"
        pos = atoms.get_positions()
        for i in range(min(n_atoms_checked, len(atoms))):
            for d in range(3):
                plus, minus = pos.copy(), pos.copy()
                plus[i, d] += delta
                minus[i, d] -= delta
                atoms.set_positions(plus)
                ep = atoms.get_potential_energy()
                atoms.set_positions(minus)
                em = atoms.get_potential_energy()
                fd = -(ep - em) / (2 * delta)
                assert abs(fd - f[i, d]) <= rtol_force * max(1.0, abs(fd)), \
                    f"structure {k} atom {i} axis {d}: force {f[i, d]:.6g} != -dE/dx {fd:.6g}"
            atoms.set_positions(pos)


# ---------------------------------------------------------------------------- families
def _bad_inputs(tmp: Path, template: StructureSet) -> dict[str, tuple[Path, list[str]]]:
    """name -> (file, extra CLI args): inputs every family must refuse in one line."""
    from dismai.extxyz import write_extxyz

    out = {}
    empty = tmp / "empty.extxyz"
    empty.write_text("")
    out["empty file"] = (empty, [])
    garbage = tmp / "garbage.extxyz"
    garbage.write_text("this is not an extxyz file\n")
    out["not extxyz"] = (garbage, [])
    good = tmp / "good.extxyz"
    write_extxyz(template[np.zeros(2, dtype=int)], good)
    lines = good.read_text().splitlines()
    truncated = tmp / "truncated.extxyz"
    truncated.write_text("\n".join(lines[:-3]) + "\n")
    out["truncated file"] = (truncated, [])
    wrong_cell = tmp / "wrong_cell.extxyz"
    write_extxyz(StructureSet(template.lattice * 1.1, template.species, template.frac),
                 wrong_cell)
    out["wrong cell"] = (wrong_cell, [])
    swapped = list(template.species)
    swapped[0] = "Xe" if swapped[0] != "Xe" else "Kr"
    wrong_species = tmp / "wrong_species.extxyz"
    write_extxyz(StructureSet(template.lattice, swapped, template.frac), wrong_species)
    out["wrong species"] = (wrong_species, [])
    out["n_generated below the input"] = (good, ["--n-generated", "1"])
    out["missing file"] = (tmp / "does-not-exist.extxyz", [])
    return out


BAD_INPUTS = ("empty file", "not extxyz", "truncated file", "wrong cell", "wrong species",
              "n_generated below the input", "missing file")


def check_family(name: str, tmp_dir, *, evaluate_noise_floor: bool = True,
                 max_val: int | None = 60) -> None:
    """The contract of the dataset family registered as `name` (see the module doc).

    For every built dataset of the family: the shipped noise floor's metric names equal
    those of an evaluation of (up to `max_val` structures of) the validation split without
    relaxation, and every bad input of BAD_INPUTS gives exit code 2, one 'error:' line and
    no output folder.
    """
    from typer.testing import CliRunner

    from dismai.cli import app
    from dismai.datasets import is_built, load
    from dismai.datasets.registry import added_specs
    from dismai.evaluation import CORE_TITLES, evaluate_structures
    from dismai.families import get_family

    family = get_family(name)
    assert family.name == name, f"family registered as {name!r} calls itself {family.name!r}"
    assert family.metric_names, "a family must declare metric_names"
    assert set(family.report_metrics) <= set(family.metric_names), \
        f"report_metrics {sorted(set(family.report_metrics) - set(family.metric_names))} " \
        "are not in metric_names"
    specs = family.datasets()
    assert specs or family.accepts_added, "a family must declare at least one dataset"
    specs = specs + [s for s in added_specs().values() if s.family == name]
    for spec in specs:
        assert spec.family == name, f"{spec.name}: spec.family {spec.family!r} != {name!r}"
    tmp = Path(tmp_dir)
    runner = CliRunner()
    for spec in specs:
        if not is_built(spec.name):
            continue
        ds = load(spec.name)
        floor = ds.reference["noise_floor"]
        if evaluate_noise_floor and len(ds.val):
            val = ds.val[np.arange(min(len(ds.val), max_val or len(ds.val)))]
            opts = {"relax": False} if family.relaxes else {}
            ev_dir = tmp / spec.name / "val-evaluation"
            ev = evaluate_structures(val, ds, progress=False, out_dir=ev_dir, **opts)
            check_result_files(ev_dir)
            family_metrics = [k for k in ev.metrics if k not in CORE_TITLES]
            assert list(floor) == family_metrics, \
                f"{spec.name}: noise floor has {list(floor)}, an evaluation gives " \
                f"{family_metrics}"
            assert list(ev.noise_floor) == list(ev.metrics), \
                f"{spec.name}: the evaluation's noise floor lacks " \
                f"{sorted(set(ev.metrics) - set(ev.noise_floor))}"
            assert set(family_metrics) <= set(family.metric_names), \
                f"{spec.name}: metrics {sorted(set(ev.metrics) - set(family.metric_names))} " \
                "are not in metric_names"
        work = tmp / spec.name
        work.mkdir(parents=True, exist_ok=True)
        for what, (path, extra) in _bad_inputs(work, ds.template).items():
            out = work / f"out-{what.replace(' ', '_')}"
            r = runner.invoke(app, ["evaluate", str(path), "--dataset", spec.name,
                                    "--out", str(out), *extra])
            lines = [ln for ln in r.output.splitlines() if ln.strip()]
            assert r.exit_code == 2, f"{spec.name}, {what}: exit {r.exit_code}: {r.output}"
            assert len(lines) == 1 and lines[0].startswith("error: "), \
                f"{spec.name}, {what}: not one error line: {r.output!r}"
            assert not out.exists(), f"{spec.name}, {what}: wrote {out}"


def check_result_files(out_dir) -> None:
    """An evaluation folder holds what `dismai report` reads: metrics.json of the current
    schema with its provenance, and a well-formed plot_data.json (docs/results-schema.md)."""
    import json

    from dismai.metrics.report_common import PLOT_DATA
    from dismai.provenance import METRICS_SCHEMA_VERSION

    out_dir = Path(out_dir)
    data = json.loads((out_dir / "metrics.json").read_text())
    assert data.get("schema_version") == METRICS_SCHEMA_VERSION, "metrics.json schema_version"
    prov = data.get("provenance") or {}
    for key in ("created", "dismai", "cpu", "dataset"):
        assert key in prov, f"metrics.json provenance lacks {key!r}"
    assert prov["dataset"].get("sha256"), "provenance names no dataset checksum"
    plots = json.loads((out_dir / PLOT_DATA).read_text())
    assert plots.get("version") == 1 and plots.get("panels"), f"{PLOT_DATA}: no panels"
    sizes = {"curve": ("x", ["train", "gen"]), "bars": ("labels", ["train", "gen"]),
             "violin": ("groups", ["train", "gen"])}
    for p in plots["panels"]:
        assert {"name", "kind", "title"} <= set(p), f"{PLOT_DATA}: panel keys {sorted(p)}"
        if p["kind"] == "histogram":
            for k in ("train", "gen"):
                assert p[k] is None or len(p[k]) == len(p["edges"]) - 1, \
                    f"{PLOT_DATA} {p['name']}: {k} has not one value per bin"
            continue
        assert p["kind"] in sizes, f"{PLOT_DATA} {p['name']}: unknown kind {p['kind']!r}"
        axis, series = sizes[p["kind"]]
        for k in series:
            assert len(p[k]) == len(p[axis]), \
                f"{PLOT_DATA} {p['name']}: {k} has {len(p[k])} entries, {axis} {len(p[axis])}"


def requires_dataset(name: str):
    """A pytest mark that skips a test when dataset `name` is not built."""
    import pytest

    from dismai.datasets import is_built

    return pytest.mark.skipif(not is_built(name), reason=f"{name} not built")


# ---------------------------------------------------------------------------- memorisation
def rms_to_nearest(sample: StructureSet, reference: StructureSet,
                   translate: bool = True) -> np.ndarray:
    """(len(sample),) RMS distance in Å of each sample to its nearest reference structure:
    minimum image, atoms matched within each species block (optimal assignment), and,
    with `translate`, the best common translation among those that put one atom of the
    smallest species block onto each reference atom of that block."""
    from scipy.optimize import linear_sum_assignment

    from dismai.structures import species_blocks

    lat = sample.lattice
    blocks = species_blocks(sample.species)
    _, a0, b0 = min(blocks, key=lambda blk: blk[2] - blk[1])

    def rms(x: np.ndarray, y: np.ndarray) -> float:
        total = 0.0
        for _, a, b in blocks:
            d = x[a:b, None, :] - y[None, a:b, :]
            d -= np.round(d)
            cost = ((d @ lat) ** 2).sum(-1)
            r, c = linear_sum_assignment(cost)
            total += cost[r, c].sum()
        return float(np.sqrt(total / len(x)))

    out = np.empty(len(sample))
    for i, x in enumerate(sample.frac):
        best = np.inf
        for y in reference.frac:
            shifts = (y[a0:b0] - x[a0]) if translate else np.zeros((1, 3))
            for t in shifts:
                best = min(best, rms(x + t, y))
        out[i] = best
    return out


def check_memorisation(name: str, config: dict, pair: StructureSet, *, rms_tol: float,
                       n_sample: int = 4, min_fraction: float = 1.0, copies: int = 1,
                       translate: bool = True) -> np.ndarray:
    """Trained on two structures, at least `min_fraction` of the model's `n_sample` samples
    lie within `rms_tol` Å (RMS, see :func:`rms_to_nearest`) of a training structure.
    Returns the RMS values.

    A model that cannot memorise two structures has a bug in its loss, score, gradient or
    periodic geometry; this check finds it in a minute instead of a failed benchmark.
    `min_fraction` < 1 allows for the few samples a finite training budget leaves in a
    spurious arrangement; the RMS of a random structure is ~2 Å on the toy cells.
    `copies` repeats the pair in the training set, so one batch can hold both structures
    at many noise levels (the data are unchanged).
    """
    from dismai.models import create_model

    assert len(pair) == 2, "check_memorisation trains on exactly two structures"
    assert 0 < min_fraction <= 1, "min_fraction must lie in (0, 1]"
    m = create_model(name, config)
    m.fit(StructureSet(pair.lattice, pair.species, np.concatenate([pair.frac] * copies)))
    rms = rms_to_nearest(m.sample(n_sample, seed=0), pair, translate=translate)
    need = math.ceil(min_fraction * n_sample - 1e-9)
    assert (rms < rms_tol).sum() >= need, \
        f"{name} did not memorise 2 structures: {(rms < rms_tol).sum()} of {n_sample} " \
        f"samples within {rms_tol} Å (need {need}); RMS {np.round(np.sort(rms), 3).tolist()} Å"
    return rms


# ---------------------------------------------------------------------------- equivariance
def random_rotation(seed: int = 0, dtype=None):
    """A random proper rotation matrix (det +1) as a float64 torch tensor."""
    import torch

    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None]
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q if dtype is None else q.to(dtype)


def assert_equivariant(fn, numbers, pos, cell, natoms, *, rtol: float = 1e-5,
                       seed: int = 0, vectors=("vector",)) -> dict[str, float]:
    """Rotate every crystal by one random rotation Q (positions and cell vectors) and
    translate it: outputs of ``fn(numbers, pos, cell, natoms)`` (a dict of tensors) named
    in `vectors` must come out rotated (v Q^T), all others unchanged, within `rtol` of the
    output's largest magnitude.  Returns the relative errors; raises AssertionError
    naming the output that broke.  Use float64 inputs and a float64 network."""
    import torch

    q = random_rotation(seed, pos.dtype)
    shift = torch.tensor([0.37, -1.1, 2.3], dtype=pos.dtype)
    with torch.no_grad():
        a = fn(numbers, pos, cell, natoms)
        b = fn(numbers, pos @ q.T + shift, cell @ q.T, natoms)
    errors = {}
    for key, out in a.items():
        want = out @ q.T if key in vectors else out
        scale = float(out.abs().max()) or 1.0
        errors[key] = float((b[key] - want).abs().max()) / scale
        assert errors[key] <= rtol, \
            f"output {key!r} is not {'equivariant' if key in vectors else 'invariant'}: " \
            f"relative error {errors[key]:.2e} > {rtol:.0e}"
    return errors
