"""`dismai train`, `dismai sample`, `dismai bench`: generative models from the command line.

``register(app)`` adds the three commands to a typer app (dismai.cli calls it).  Every
expected failure (unknown model/dataset/preset/config key, corrupted checkpoint, a run
directory that holds another run) is one line on stderr and exit code 2, and nothing that
exists is overwritten.  Ctrl-C / SIGTERM during training writes a checkpoint and exits
with 130 / 143; ``--resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from dismai.cli_errors import friendly as _friendly
from dismai.models.registry import available_models

__all__ = ["register", "run_train", "run_sample", "run_bench", "load_training_data"]

console = Console()

BASELINES = ("random", "shuffled-lattice")


def _trainable() -> list[str]:
    return [m for m in available_models() if m not in BASELINES]


# ---------------------------------------------------------------------------- library layer
def load_training_data(dataset: str):
    """(train, val, family, dataset object or None) for a registered name or an extxyz file."""
    from dismai.datasets import DATASETS, load

    path = Path(dataset)
    if dataset not in DATASETS and path.suffix in (".extxyz", ".xyz"):
        from dismai.structures import StructureSet

        return StructureSet.read_extxyz(path), None, None, None
    ds = load(dataset)
    return ds.train, ds.val, ds.spec.family, ds


def _resolve(cls, preset: str | None, family: str | None, config_file):
    from dismai.models import resolve_config

    return resolve_config(cls.name, cls.Config, preset=preset, family=family,
                          config_file=config_file)


def run_train(model: str, dataset: str, preset: str = "paper", config_file=None, out=None,
              resume: bool = False, progress: bool = True) -> Path:
    """Train `model` on `dataset` into a run directory; returns the run directory."""
    from dismai.models import get_model_class

    cls = get_model_class(model)
    train, val, family, _ = load_training_data(dataset)
    cfg = _resolve(cls, preset, family, config_file)
    name = Path(dataset).stem if family is None else dataset
    run_dir = Path(out) if out is not None else Path("runs") / f"{model}-{name}-{preset}"
    m = cls(cfg)
    t0 = time.monotonic()
    m.fit(train, val, run_dir=run_dir, resume=resume, progress=progress)
    if progress:
        device = f" on {m.device}" if hasattr(m, "device") else ""
        console.print(f"trained {model} on {dataset} ({len(train)} structures, preset {preset})"
                      f"{device} in {time.monotonic() - t0:.1f} s -> {run_dir / 'model.pt'}")
    return run_dir


def _load_model(run_dir, device: str = "auto"):
    """The final model of a run (model.pt), else its newest checkpoint, else a file path."""
    from dismai.models import GenerativeModel

    run_dir = Path(run_dir)
    if run_dir.is_file():
        return GenerativeModel.load(run_dir, device=device), run_dir
    for name in ("model.pt", "checkpoint.pt"):
        if (run_dir / name).exists():
            return GenerativeModel.load(run_dir / name, device=device), run_dir / name
    from dismai.models import CheckpointError

    raise CheckpointError(f"{run_dir}: no model.pt or checkpoint.pt (not a training run)")


def run_sample(run_dir, n: int, seed: int = 0, output=None, device: str = "auto"):
    """Sample n structures from a run (or a model file); writes extxyz if output is given."""
    model, source = _load_model(run_dir, device=device)
    structures = model.sample(n, seed=seed)
    if output is not None:
        structures.write_extxyz(output)
    return structures, source


def _fmt(x) -> str:
    if x is None:
        return "-"
    x = float(x)
    return f"{x:.4g}" if x == x else "nan"


def _cell(entry) -> str:
    """'value [v - lower_error, v + upper_error]' for a metrics entry (the 95 % interval)."""
    if entry is None:
        return "-"
    if not isinstance(entry, dict):
        return _fmt(entry)
    v, lo, hi = entry.get("value"), entry.get("lower_error"), entry.get("upper_error")
    s = _fmt(v)
    if v is not None and lo is not None and hi is not None:
        s += f" [{_fmt(v - lo)}, {_fmt(v + hi)}]"
    return s


def bench_rows(result: dict, baselines: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: metric | model | noise floor | one column per baseline."""
    header = ["metric", "model", "noise floor (val vs train)"] + list(baselines)
    rows = []
    for name, entry in result["metrics"].items():
        row = [name, _cell(entry), _cell(result.get("noise_floor", {}).get(name))]
        for b in baselines.values():
            row.append(b if isinstance(b, str) else _cell(b["metrics"].get(name)))
        rows.append(row)
    return header, rows


def _markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _evaluate(gen, dataset, n_generated: int, out_dir, progress: bool = True,
              **options) -> dict:
    from dismai.evaluation import evaluate_structures

    return evaluate_structures(gen, dataset, n_generated=n_generated, out_dir=out_dir,
                               progress=progress, **options)


def model_eval_options(cls, family: str | None) -> dict:
    """Evaluation options a model class asks for on a dataset family (``eval_options``),
    e.g. DiffCSP's translated alloy lattice match (paper §2.2); baselines use the defaults."""
    return dict((getattr(cls, "eval_options", None) or {}).get(family, {}))


def run_bench(model: str, dataset, preset: str = "quick", config_file=None, n: int = 1000,
              out=None, seed: int = 0, progress: bool = True) -> dict:
    """Train, sample n, evaluate, compare with baselines; write DIR/report.md.

    dataset: a registered name or a Dataset-like object (.name, .train, .val, .spec.family).
    DIR/run holds the training run (continued if it exists with the same config),
    DIR/samples.extxyz and DIR/metrics.json the model's results, DIR/baselines/<name>/ those
    of the baselines.
    """
    from dismai.fileio import write_text
    from dismai.models import create_model, get_model_class

    cls = get_model_class(model)
    if isinstance(dataset, str):
        from dismai.datasets import load

        dataset = load(dataset)
    family = dataset.spec.family
    out = Path(out) if out is not None else Path("runs") / f"bench-{model}-{dataset.name}-{preset}"
    cfg = _resolve(cls, preset, family, config_file)
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")

    t0 = time.monotonic()
    m = cls(cfg)
    m.fit(dataset.train, dataset.val, run_dir=out / "run", resume=True, progress=progress)
    t_train = time.monotonic() - t0
    t0 = time.monotonic()
    gen = m.sample(n, seed=seed)
    t_sample = time.monotonic() - t0
    gen.write_extxyz(out / "samples.extxyz")
    eval_opts = model_eval_options(cls, family)
    result = _evaluate(gen, dataset, n, out, progress, **eval_opts)

    baselines: dict[str, dict | str] = {}
    for b in BASELINES:
        if b == model or (b == "shuffled-lattice" and family != "alloy"):
            continue
        bm = create_model(b)
        bm.fit(dataset.train, dataset.val)
        bgen = bm.sample(n, seed=seed)
        bdir = out / "baselines" / b
        bgen.write_extxyz(bdir / "samples.extxyz")
        try:
            baselines[b] = _evaluate(bgen, dataset, n, bdir, progress)
        except ValueError as exc:  # e.g. nothing on a lattice to score
            baselines[b] = f"failed: {str(exc).splitlines()[0]}"

    header, rows = bench_rows(result, baselines)
    report = [
        f"# dismai bench: {model} on {dataset.name}",
        "",
        f"- preset `{preset}`" + (f", config `{config_file}`" if config_file else ""),
        f"- training: {len(dataset.train)} structures, {t_train:.1f} s wall "
        f"(run directory `run/`, losses in `run/losses.csv`)",
        f"- sampling: {n} structures, seed {seed}, {t_sample:.1f} s -> `samples.extxyz`",
        "- metrics: `metrics.json` (model), `baselines/<name>/metrics.json`; "
        "values with 95 % pivotal bootstrap intervals",
        *([f"- model evaluated with {', '.join(f'{k}={v}' for k, v in eval_opts.items())} "
           "(the paper's choice for this model)"] if eval_opts else []),
        "",
        _markdown_table(header, rows),
    ]
    if preset == "quick":
        report.append("The `quick` preset is a smoke configuration (tiny networks, minutes of "
                      "CPU), not a quality claim.\n")
    write_text(out / "report.md", "\n".join(report))
    return {"out": out, "result": result, "baselines": baselines, "header": header,
            "rows": rows, "train_seconds": t_train}


# ---------------------------------------------------------------------------- commands
def register(app: typer.Typer) -> None:
    """Add the train, sample and bench commands to `app`."""

    @app.command("train")
    @_friendly
    def train(
        model: str = typer.Argument(..., help=f"model name ({', '.join(available_models())})"),
        dataset: str = typer.Option(..., "--dataset",
                                    help="registered dataset name, or an .extxyz file"),
        preset: str = typer.Option("paper", "--preset",
                                   help="named config: paper (published) or quick (smoke)"),
        config: Path = typer.Option(None, "--config",
                                    help="YAML file of keys overriding the preset"),
        out: Path = typer.Option(None, "--out",
                                 help="run directory (default runs/MODEL-DATASET-PRESET)"),
        resume: bool = typer.Option(False, "--resume",
                                    help="continue the run in --out from its newest checkpoint"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Train a model; checkpoints survive Ctrl-C, SIGTERM and crashes (--resume)."""
        run_dir = run_train(model, dataset, preset, config, out, resume, progress=not quiet)
        if quiet:
            console.print(str(run_dir / "model.pt"))

    @app.command("sample")
    @_friendly
    def sample(
        run_dir: Path = typer.Argument(..., help="run directory (or a model/checkpoint file)"),
        n: int = typer.Option(..., "-n", "--n", help="number of structures"),
        seed: int = typer.Option(0, "--seed", help="noise seed: same seed, same structures"),
        output: Path = typer.Option(..., "-o", "--output", help="output .extxyz file"),
        device: str = typer.Option("auto", "--device",
                                   help="auto (CUDA if present), cpu, cuda or cuda:i"),
    ) -> None:
        """Generate structures from a trained model."""
        structures, source = run_sample(run_dir, n, seed, output, device)
        note = " (training unfinished: newest checkpoint)" if source.name == "checkpoint.pt" else ""
        console.print(f"wrote {len(structures)} structures to {output} from {source}{note}")
        if "generated_lattice" in structures.properties:  # DiffCSP with lattice diffusion
            import numpy as np

            dev = np.abs(structures.properties["generated_lattice"].reshape(-1, 3, 3)
                         - structures.lattice).max(axis=(1, 2))
            console.print(f"generated lattices (property generated_lattice) differ from the "
                          f"dataset cell by max |dL| {np.median(dev):.3g} Å (median), "
                          f"{dev.max():.3g} Å (worst); coordinates are on the dataset cell")

    @app.command("bench")
    @_friendly
    def bench(
        model: str = typer.Argument(..., help=f"model name ({', '.join(_trainable())})"),
        dataset: str = typer.Option(..., "--dataset", help="registered dataset name"),
        preset: str = typer.Option("quick", "--preset",
                                   help="quick (default: minutes on a CPU) or paper"),
        config: Path = typer.Option(None, "--config", help="YAML file overriding the preset"),
        n: int = typer.Option(1000, "--n", help="structures to generate and evaluate"),
        out: Path = typer.Option(None, "--out",
                                 help="output directory (default runs/bench-MODEL-DATASET-PRESET)"),
        seed: int = typer.Option(0, "--seed", help="sampling seed"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Train, sample, evaluate, and compare with the noise floor and baselines."""
        from dismai.metrics.report_common import text_table

        res = run_bench(model, dataset, preset, config, n, out, seed, progress=not quiet)
        typer.echo(f"{model} on {dataset} (n = {n}, preset {preset}); 95 % intervals in [ ]")
        typer.echo(text_table(res["header"], res["rows"]))
        typer.echo(f"wrote {res['out'] / 'report.md'}")

