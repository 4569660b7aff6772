"""The `dismai` command line: a thin layer over the library.

Every expected failure (bad input file, unknown dataset, bad option) is reported as one
line on stderr with exit code 2; nothing is left half-written because all writers
go through `dismai.fileio`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dismai.cli_errors import friendly

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Generative models and benchmarks for large disordered materials.")
datasets_app = typer.Typer(no_args_is_help=True, help="List, inspect, build and export datasets.")
app.add_typer(datasets_app, name="datasets")

console = Console()


def _progress(total: int, description: str):
    """A progress bar with ETA; returns (context manager, advance callback)."""
    from dismai.progress import make_progress

    prog = make_progress()
    task = prog.add_task(description, total=total)
    return prog, lambda n: prog.advance(task, n)


# ------------------------------------------------------------------------------ datasets
@datasets_app.command("list")
@friendly
def datasets_list() -> None:
    """Table of registered datasets: size, atoms, composition, whether shipped."""
    from dismai.datasets.registry import DATASETS, is_shipped, shipped_paths

    table = Table(title="dismai datasets")
    for col in ("name", "family", "structures", "train/val", "atoms", "composition", "shipped"):
        table.add_column(col)
    for name, spec in DATASETS.items():
        shipped = is_shipped(name)
        size, split, status = "-", "-", "no (dismai datasets build)"
        if shipped:
            man = json.loads(shipped_paths(name)["manifest"].read_text())
            size = str(man["n_structures"])
            split = f"{man['n_train']}/{man['n_val']}"
            status = "preview" if man.get("preview") else "yes"
        comp = " ".join(f"{k}{v}" for k, v in spec.composition.items())
        table.add_row(name, spec.family, size, split, str(spec.n_atoms), comp, status)
    Console(width=max(console.width, 120)).print(table)


@datasets_app.command("info")
@friendly
def datasets_info(name: str = typer.Argument(..., help="dataset name")) -> None:
    """Print the manifest (recipe, seed, checksum, statistics) of a shipped dataset."""
    from dismai.datasets import load

    ds = load(name)
    console.print_json(json.dumps(ds.manifest))


@datasets_app.command("build")
@friendly
def datasets_build(
    name: str = typer.Argument(..., help="dataset name, or 'all'"),
    seed: int = typer.Option(None, help="recipe seed (default: the shipped seed)"),
    out: Path = typer.Option(None, "--out", help="output folder (default: the package data)"),
) -> None:
    """Regenerate a dataset from its recipe (bit-identical to the shipped file for a seed)."""
    from dismai.datasets.build import build_dataset
    from dismai.datasets.registry import DATASETS, get_spec

    names = list(DATASETS) if name == "all" else [name]
    for n in names:
        spec = get_spec(n)
        total = spec.recipe.get("n_passes", 1)
        prog, advance = _progress(total, f"{n}: Monte Carlo passes")
        with prog:
            paths = build_dataset(n, seed=seed, out_dir=out, progress=advance)
        man = json.loads(paths["manifest"].read_text())
        console.print(f"wrote {paths['data']} (sha256 {man['sha256'][:16]}…, "
                      f"{man['n_train']} train / {man['n_val']} val)")


@datasets_app.command("export")
@friendly
def datasets_export(
    name: str = typer.Argument(..., help="dataset name"),
    split: str = typer.Option("all", "--split", help="train, val or all"),
    output: Path = typer.Option(..., "-o", "--output", help="output .extxyz file"),
) -> None:
    """Write a split of a dataset as extxyz."""
    from dismai.datasets import load

    ds = load(name)
    structures = ds.split(split)
    structures.write_extxyz(output)
    console.print(f"wrote {len(structures)} structures to {output}")


# ------------------------------------------------------------------------------ evaluate
@app.command("evaluate")
@friendly
def evaluate(
    path: Path = typer.Argument(..., help="generated structures (.extxyz)"),
    dataset: str = typer.Option(..., "--dataset", help="dataset to compare against"),
    n_generated: int = typer.Option(None, "--n-generated",
                                    help="number originally generated (denominator of % failed)"),
    out: Path = typer.Option(None, "--out", help="folder for metrics.json, CSV and plots"),
    lattice_match: str = typer.Option("auto", "--lattice-match",
                                      help="alloys: auto, as-is, translated or rotated"),
    relax: bool = typer.Option(True, "--relax/--no-relax",
                               help="a-Si: relax with the dataset's potential first"),
    workers: int = typer.Option(None, "--workers", help="processes (default: all cores)"),
) -> None:
    """Score generated structures against a dataset's training set."""
    from dismai.datasets import load
    from dismai.evaluation import evaluate_file

    ds = load(dataset)
    if ds.spec.family == "alloy":
        from dismai.metrics.alloy.report import format_table

        options = {"lattice_match": lattice_match, "workers": workers or os.cpu_count() or 1}
    else:
        from dismai.metrics.asi.report import format_table

        options = {"relax": relax, "n_workers": workers}
    result = evaluate_file(path, ds.name, n_generated=n_generated, out_dir=out, **options)
    typer.echo(format_table(result["metrics"], result["noise_floor"]))
    if out is not None:
        console.print(f"wrote {Path(out) / 'metrics.json'}")


def _register_models() -> None:
    try:
        from dismai.cli_models import register
    except ImportError:  # models are optional at this layer
        return
    register(app)


_register_models()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
