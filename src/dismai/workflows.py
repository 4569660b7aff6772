"""The workflows behind every `dismai` command, as library functions.

The CLI (dismai.cli) only parses arguments, calls one of these and prints the result;
scripts and notebooks call them directly.  Each raises a :class:`dismai.errors.DismaiError`
with a one-line message for anything the user can fix.
"""

from __future__ import annotations

import time
from pathlib import Path

from dismai.errors import CheckpointError, InputError, ModelError

__all__ = ["load_training_data", "train", "sample", "evaluate_file", "evaluate",
           "build", "add_dataset", "remove_dataset", "bench", "bench_rows",
           "model_eval_options", "evaluate_reconstruction"]


def _dataset(dataset):
    from dismai.datasets import load

    return load(dataset) if isinstance(dataset, str) else dataset


# ------------------------------------------------------------------------------ data
def load_training_data(dataset: str):
    """(train, val, family name or None, Dataset or None) for a registered name or a
    structure file or folder in any format of dismai.readers."""
    from dismai.datasets import dataset_names

    path = Path(dataset)
    if dataset not in dataset_names() and path.exists():
        from dismai.readers import read_structures

        return read_structures(path), None, None, None
    ds = _dataset(dataset)
    return ds.train, ds.val, ds.spec.family, ds


def build(name: str, seed: int | None = None, out=None, work_dir=None,
          n_workers: int | None = None, progress=True, **overrides) -> dict[str, Path]:
    """Regenerate one dataset (resumable); returns the written paths and the work folder."""
    from dismai.datasets.build import build_dataset

    return build_dataset(name, seed=seed, out_dir=out, work_dir=work_dir, n_workers=n_workers,
                         progress=progress, **overrides)


def add_dataset(name: str, train, val, **options) -> dict[str, Path]:
    """Register your own dataset from files; see dismai.datasets.user.add_dataset."""
    from dismai.datasets.user import add_dataset as add

    return add(name, train, val, **options)


def remove_dataset(name: str) -> list[Path]:
    """Delete an added dataset's files."""
    from dismai.datasets.user import remove_dataset as remove

    return remove(name)


# ------------------------------------------------------------------------------ evaluate
def evaluate(gen, dataset, n_generated: int | None = None, out=None, progress=True,
             label: str | None = None, provenance: dict | None = None, html: bool = False,
             **options):
    """Score a StructureSet against a dataset (name or Dataset); see dismai.evaluation.

    label names the result in reports; html: also write out/report.html (needs out)."""
    from dismai.evaluation import evaluate_structures

    if html and out is None:
        raise InputError("--html needs --out (the folder the report is written into)")
    ev = evaluate_structures(gen, _dataset(dataset), n_generated=n_generated, out_dir=out,
                             progress=progress, label=label, provenance=provenance, **options)
    if html:
        from dismai.report import build_report

        build_report([out], Path(out))
    return ev


def evaluate_file(path, dataset, n_generated: int | None = None, out=None, progress=True,
                  format: str | None = None, label: str | None = None, html: bool = False,
                  **options):
    """Read generated structures (any format of dismai.readers; detected from the path
    unless `format` is given) and score them (dataset loaded once).  The label defaults
    to the file's name; the file's path and checksum go into the provenance."""
    from dismai.provenance import file_sha256
    from dismai.readers import read_structures

    ds = _dataset(dataset)
    gen = read_structures(path, template=ds.template, format=format)
    path = Path(path)
    prov = {"input": {"path": str(path), "sha256": file_sha256(path)}}
    return evaluate(gen, ds, n_generated=n_generated, out=out, progress=progress,
                    label=label or path.stem, provenance=prov, html=html, **options)


# ------------------------------------------------------------------------------ models
def _resolve(cls, preset: str | None, family: str | None, config_file):
    from dismai.models import resolve_config

    return resolve_config(cls.name, cls.Config, preset=preset, family=family,
                          config_file=config_file)


def train(model: str, dataset: str, preset: str = "paper", config_file=None, out=None,
          resume: bool = False, progress=True) -> tuple[Path, float, object]:
    """Train `model` on `dataset` into a run directory: (run dir, seconds, model)."""
    from dismai.models import get_model_class

    cls = get_model_class(model)
    if _is_crystal_model(cls):
        train_set, val, family = load_crystal_training_data(model, dataset), None, None
    else:
        train_set, val, family, _ = load_training_data(dataset)
    cfg = _resolve(cls, preset, family, config_file)
    name = Path(dataset).name.split(".")[0] if family is None else dataset
    run_dir = Path(out) if out is not None else Path("runs") / f"{model}-{name}-{preset}"
    m = cls(cfg)
    t0 = time.monotonic()
    m.fit(train_set, val, run_dir=run_dir, resume=resume, progress=progress)
    return run_dir, time.monotonic() - t0, m


def _is_crystal_model(cls) -> bool:
    from dismai.models.crystal_model import CrystalModel

    return isinstance(cls, type) and issubclass(cls, CrystalModel)


def load_crystal_training_data(model: str, dataset: str):
    """The CrystalSet a general-crystal model trains on: the train split of a shipped
    general-crystal dataset (the published validation split) or a CDVAE-style CSV."""
    from dismai.crystals import CrystalSet
    from dismai.datasets.crystal_sets import CRYSTAL_DATASETS, load_crystals

    if dataset in CRYSTAL_DATASETS:
        return load_crystals(dataset, "train")
    path = Path(dataset)
    if path.is_file() and path.name.endswith(".csv"):
        return CrystalSet.from_csv(path)
    raise InputError(f"{model} learns general crystals: use --dataset "
                     f"{' or '.join(CRYSTAL_DATASETS)} or a CSV file with a cif column, "
                     f"not {dataset!r}")


def load_run(run_dir, device: str = "auto"):
    """The final model of a run (model.pt), else its newest checkpoint, else a file path."""
    from dismai.models import GenerativeModel

    run_dir = Path(run_dir)
    if run_dir.is_file():
        return GenerativeModel.load(run_dir, device=device), run_dir
    for name in ("model.pt", "checkpoint.pt"):
        if (run_dir / name).exists():
            return GenerativeModel.load(run_dir / name, device=device), run_dir / name
    raise CheckpointError(f"{run_dir}: no model.pt or checkpoint.pt (not a training run)")


def write_sample_report(model, path) -> Path | None:
    """Write the model's report on its last sample() call (one CSV row, e.g. UniMat's
    element_accuracy.csv) to `path`; None when the model reports nothing."""
    from dismai.fileio import write_text

    row = model.sample_report()
    if not row:
        return None
    write_text(path, ",".join(row) + "\n" + ",".join(
        f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()) + "\n")
    return Path(path)


def sample(run_dir, n: int, seed: int = 0, output=None, device: str = "auto"):
    """Sample n structures from a run (or a model file); writes extxyz if output is given
    (and, for a model with a sample report, OUTPUT_STEM.<report file> beside it)."""
    model, source = load_run(run_dir, device=device)
    if output is not None and _is_crystal_model(type(model)) \
            and not str(output).endswith(".csv"):
        raise InputError(f"{model.name} samples general crystals: give a .csv output "
                         f"(one CIF per row), not {output}")
    structures = model.sample(n, seed=seed)
    if output is not None:
        model.write_samples(structures, output)  # extxyz; a CSV of CIFs for crystal models
        if model.sample_report_file:
            out = Path(output)
            write_sample_report(model, out.with_name(f"{out.stem}.{model.sample_report_file}"))
    return structures, source


def evaluate_reconstruction(model_file, dataset: str = "perov-5", split: str = "test",
                            noise: float = 0.1, masking: str = "beta", repeats: int = 5,
                            n: int | None = 500, seed: int = 0, energy: str | None = None,
                            out=None, device: str = "auto") -> dict:
    """The paper's reconstruction metrics of a masked-atom model (a run folder or model
    file) on n crystals drawn (seeded, without replacement) from a general-crystal dataset
    split or a CSV of CIFs; see dismai.metrics.reconstruction.  energy: a potential name
    (e.g. chgnet) or None; out: a JSON file, written atomically (NaN as null)."""
    import numpy as np

    from dismai.crystals import CrystalSet
    from dismai.datasets.crystal_sets import CRYSTAL_DATASETS, load_crystals
    from dismai.metrics.reconstruction import STRATEGIES
    from dismai.models.ssl_reconstruction import evaluate_reconstruction as run
    from dismai.models.ssl_reconstruction import masked_atom_network

    if not noise > 0:
        raise InputError(f"--noise must be > 0 (sigma as a fraction of d_min), got {noise}")
    if masking not in STRATEGIES:
        raise InputError(f"--masking must be alpha, beta or gamma, got {masking!r}")
    if repeats < 1 or (n is not None and n < 1):
        raise InputError("--repeats and --n must be >= 1")
    if dataset not in CRYSTAL_DATASETS and not (Path(dataset).is_file()
                                                and dataset.endswith(".csv")):
        raise InputError(f"{dataset!r} is not a general-crystal dataset: use "
                         f"{' or '.join(CRYSTAL_DATASETS)} or a CSV file with a cif column")
    model, source = load_run(model_file, device=device)
    masked_atom_network(model)
    if not _is_crystal_model(type(model)):  # `ssl` learnt one Dismai template, not crystals
        raise InputError(f"{source}: {model.name} learns one fixed template; "
                         "reconstruction on general crystals needs ssl-pretrain or ssl-gan")
    energy_model = None
    if energy is not None:
        from dismai.energy import get_energy_model

        energy_model = get_energy_model(energy)
    crystals = (load_crystals(dataset, split) if dataset in CRYSTAL_DATASETS
                else CrystalSet.from_csv(dataset))
    if n is not None and n < len(crystals):
        pick = np.sort(np.random.default_rng(seed).choice(len(crystals), n, replace=False))
        crystals = CrystalSet([crystals[int(i)] for i in pick], crystals.name)
    res = run(model, crystals, sigma_ratio=noise, masking=masking, repeats=repeats,
              seed=seed, energy=energy_model)
    res = {"model_file": str(source), "dataset": dataset,
           "split": split if dataset in CRYSTAL_DATASETS else None, **res,
           "energy_model": energy}
    if out is not None:
        from dismai.fileio import write_json

        write_json(out, _finite_or_none(res))
    return res


def _finite_or_none(obj):
    """obj with every NaN or infinite float replaced by None (strict JSON)."""
    import math

    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def model_eval_options(cls, family: str | None) -> dict:
    """Evaluation options a model class asks for on a dataset family (``eval_options``),
    e.g. DiffCSP's translated alloy lattice match; baselines use the defaults."""
    return dict((getattr(cls, "eval_options", None) or {}).get(family, {}))


def bench_rows(result, baselines: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: metric | model | noise floor | one column per baseline.

    result and baselines' values: Evaluations (or a 'failed: ...' string for a baseline)."""
    from dismai.metrics.report_common import format_entry

    header = ["metric", "model", "noise floor (val vs train)"] + list(baselines)
    floor = result.noise_floor or {}
    rows = []
    for name, entry in result.metrics.items():
        row = [name, format_entry(entry), format_entry(floor.get(name))]
        for b in baselines.values():
            row.append(b if isinstance(b, str) else format_entry(b.metrics.get(name)))
        rows.append(row)
    # relaxed families: the same metrics on the structures as generated (the validation
    # split is relaxed data, so its noise floor is the as-generated one too)
    for name, entry in (result.header.get("metrics_as_generated") or {}).items():
        row = [f"{name} (as generated)", format_entry(entry), format_entry(floor.get(name))]
        for b in baselines.values():
            raw = {} if isinstance(b, str) else b.header.get("metrics_as_generated") or {}
            row.append("-" if isinstance(b, str) else format_entry(raw.get(name)))
        rows.append(row)
    return header, rows


def _markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def bench(model: str, dataset, preset: str = "quick", config_file=None, n: int = 1000,
          out=None, seed: int = 0, progress=True) -> dict:
    """Train, sample n, evaluate, compare with the family's baselines; write DIR/report.md.

    dataset: a registered name or a Dataset.  DIR/run holds the training run (continued if
    it exists with the same config), DIR/samples.extxyz and DIR/metrics.json the model's
    results, DIR/baselines/<name>/ those of the baselines.  seed: the repeat's seed, used
    for training (the config's ``seed``) and sampling, so seeds 0, 1, 2 are three
    separately trained models (`dismai report` groups them as repeats).
    """
    import dataclasses

    from dismai.errors import DismaiError
    from dismai.extxyz import read_extxyz, write_extxyz
    from dismai.fileio import write_json, write_text
    from dismai.models import create_model, get_model_class
    from dismai.models.config import config_to_dict
    from dismai.provenance import config_hash, file_sha256

    cls = get_model_class(model)
    dataset = _dataset(dataset)
    family = dataset.spec.family
    suffix = f"-seed{seed}" if seed else ""
    out = (Path(out) if out is not None
           else Path("runs") / f"bench-{model}-{dataset.name}-{preset}{suffix}")
    cfg = _resolve(cls, preset, family, config_file)
    if hasattr(cfg, "seed"):
        cfg = dataclasses.replace(cfg, seed=int(seed))
    if n < 1:
        raise InputError(f"--n must be >= 1, got {n}")

    # the bench resumes: training continues its run directory, and samples already drawn
    # from the same final model (n, seed) are reused, so a crash during the evaluation
    # costs neither training nor sampling again; BENCH_STATE keeps their measured times
    state_path = out / BENCH_STATE
    state = _read_state(state_path)
    cfg_dict = config_to_dict(cfg)
    key = {"model": model, "config": cfg_dict}
    if state.get("key") != key:
        state = {"key": key}
    m = cls(cfg)
    t0, c0 = time.monotonic(), _cpu_seconds()
    m.fit(dataset.train, dataset.val, run_dir=out / "run", resume=True, progress=progress)
    if "train" not in state:
        state["train"] = [time.monotonic() - t0, _cpu_seconds() - c0]
        write_json(state_path, state)
    t_train, c_train = state["train"]
    model_sha = file_sha256(out / "run" / "model.pt")
    sample_key = {"n": int(n), "seed": int(seed), "model_sha256": model_sha}
    if state.get("samples", {}).get("key") != sample_key or \
            not (out / "samples.extxyz").exists():
        t0, c0 = time.monotonic(), _cpu_seconds()
        gen = m.sample(n, seed=seed)
        if m.sample_report_file:
            write_sample_report(m, out / m.sample_report_file)
        if len(gen) == 0:  # e.g. UniMat's species check rejected every structure
            raise ModelError(f"{model}: none of the {n} generated structures passed the "
                             "model's own checks, so there is nothing to evaluate (100 % "
                             "failed)" + (f"; see {out / m.sample_report_file}"
                                          if m.sample_report_file else ""))
        state["samples"] = {"key": sample_key,
                            "seconds": [time.monotonic() - t0, _cpu_seconds() - c0]}
        write_extxyz(gen, out / "samples.extxyz")
        write_json(state_path, state)  # after the samples: never claims samples not written
    # always the samples as stored, so a resumed evaluation (its relaxation folder checks
    # the input's checksum) sees exactly the structures the first attempt saw
    gen = read_extxyz(out / "samples.extxyz", template=dataset.template)
    t_sample, c_sample = state["samples"]["seconds"]
    eval_opts = model_eval_options(cls, family)
    raw = {"as_generated": True} if dataset.family.relaxes else {}
    prov = {"model": {"name": model, "preset": preset,
                      "config_file": None if config_file is None else str(config_file),
                      "config_hash": config_hash(_model_keys(cfg_dict)), "config": cfg_dict,
                      "seed": int(seed), "sample_seed": int(seed), "baseline": False,
                      "train_seconds": round(t_train, 1), "train_cpu_seconds": round(c_train, 1),
                      "sample_seconds": round(t_sample, 1),
                      "sample_cpu_seconds": round(c_sample, 1), "n_train": len(dataset.train),
                      "device": str(getattr(m, "device", "cpu"))}}
    result = evaluate(gen, dataset, n, out, progress, label=model, provenance=prov, **raw,
                      **eval_opts)

    baselines: dict[str, object] = {}
    # the baselines are scored by the rule the model's evaluation used (same comparison)
    base_opts = {**eval_opts, **dataset.family.resolved_options(result)}
    for b in dataset.family.baselines:
        if b == model:
            continue
        bm = create_model(b)
        bm.fit(dataset.train, dataset.val)
        bgen = bm.sample(n, seed=seed)
        bdir = out / "baselines" / b
        write_extxyz(bgen, bdir / "samples.extxyz")
        # a baseline scored by a pinned rule is its own entry in cross-run reports
        blabel = b + "".join(f" [{k}={v}]" for k, v in base_opts.items())
        bprov = {"model": {"name": blabel, "preset": None, "config_hash": None, "seed": int(seed),
                           "sample_seed": int(seed), "baseline": True,
                           "n_train": len(dataset.train)}}
        try:
            baselines[b] = evaluate(bgen, dataset, n, bdir, progress, label=blabel,
                                    provenance=bprov, **raw, **base_opts)
        except DismaiError as exc:  # e.g. nothing on a lattice to score
            baselines[b] = f"failed: {str(exc).splitlines()[0]}"

    gate = None
    if dataset.family.gate_metrics and \
            not isinstance(baselines.get("random"), (str, type(None))):
        from dismai.learning import learning_gate

        gate = learning_gate(result, baselines["random"], dataset.family.gate_metrics)
    header, rows = bench_rows(result, baselines)
    report = [
        f"# dismai bench: {model} on {dataset.name}",
        "",
        f"- preset `{preset}`" + (f", config `{config_file}`" if config_file else ""),
        f"- training: {len(dataset.train)} structures, {t_train:.1f} s wall, "
        f"{c_train:.0f} CPU-s (run directory `run/`, losses in `run/losses.csv`)",
        f"- sampling: {n} structures, seed {seed}, {t_sample:.1f} s wall, {c_sample:.0f} CPU-s "
        "-> `samples.extxyz`" + (f", `{cls.sample_report_file}`" if cls.sample_report_file
                                 else ""),
        *([f"- learning gate against `random` (docs/learning.md): {gate.summary()}"]
          if gate is not None else []),
        "- metrics: `metrics.json` (model), `baselines/<name>/metrics.json`; "
        "values with 95 % pivotal bootstrap intervals",
        *([f"- model evaluated with {', '.join(f'{k}={v}' for k, v in eval_opts.items())} "
           "(the paper's choice for this model)"] if eval_opts else []),
        *([f"- baselines evaluated with {', '.join(f'{k}={v}' for k, v in base_opts.items())}"
           " (the model's rule)"] if base_opts else []),
        "",
        _markdown_table(header, rows),
    ]
    if preset == "quick":
        report.append("The `quick` preset is a smoke configuration (tiny networks, minutes of "
                      "CPU), not a quality claim.\n")
    write_text(out / "report.md", "\n".join(report))
    return {"out": out, "result": result, "baselines": baselines, "header": header,
            "rows": rows, "train_seconds": t_train, "sample_seconds": t_sample,
            "train_cpu_seconds": c_train, "sample_cpu_seconds": c_sample, "gate": gate}


#: a bench folder's record of finished work (training and sampling times, the samples' key)
BENCH_STATE = "bench_state.json"


def _read_state(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


#: config keys that do not change what a repeat learns: left out of the config hash, so
#: runs differing only in these (and the seed) are repeats of one configuration
_BOOKKEEPING_KEYS = frozenset({"seed", "device", "checkpoint_every", "checkpoint_minutes",
                               "sample_every", "n_sample_dump"})


def _model_keys(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in _BOOKKEEPING_KEYS}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (spawned workers)."""
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
