"""The `dismai` command line: parse, call one function of dismai.workflows, print.

Error policy (one place, every command): a :class:`dismai.errors.DismaiError` (bad input,
unknown names, corrupted files, failed builds) and an unreadable file print one line on
stderr and exit with code 2; anything else is a bug and shows its traceback after a line
saying so.  ``--debug`` (or ``DISMAI_DEBUG=1``) shows the traceback always.  An
interrupted training run exits 128 + signal after its checkpoint is written.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dismai.errors import DismaiError, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Generative models and benchmarks for large disordered materials.")
datasets_app = typer.Typer(no_args_is_help=True, help="List, inspect, build and export datasets.")
app.add_typer(datasets_app, name="datasets")
potentials_app = typer.Typer(no_args_is_help=True,
                             help="List energy models; rebuild a distilled potential.")
app.add_typer(potentials_app, name="potentials")

console = Console()
err_console = Console(stderr=True)
_STATE = {"debug": False}


def _debug() -> bool:
    return _STATE["debug"] or os.environ.get("DISMAI_DEBUG", "") not in ("", "0")


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def friendly(fn):
    """Apply the error policy of the module docstring to one command."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            from dismai.models.training import TrainingInterrupted

            if isinstance(exc, TrainingInterrupted):
                err_console.print(f"interrupted: {exc}; continue with the same command and "
                                  "--resume", markup=False, highlight=False, soft_wrap=True)
                raise typer.Exit(128 + exc.signum) from None
            expected = isinstance(exc, DismaiError) or (
                isinstance(exc, OSError) and getattr(exc, "filename", None) is not None)
            if _debug() or not expected:
                if not expected:
                    err_console.print("dismai hit an internal error (a bug; please report it "
                                      "with the traceback below)", markup=False)
                raise
            if isinstance(exc, OSError):
                fail(f"{exc.filename}: {exc.strerror or _one_line(exc)}")
            fail(_one_line(exc))

    return wrapper


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks of errors")):
    _STATE["debug"] = debug


def _model_names(trainable: bool = False) -> str:
    from dismai.models.registry import available_models, trainable_models

    return ", ".join(trainable_models() if trainable else available_models())


# ------------------------------------------------------------------------------ datasets
@datasets_app.command("list")
@friendly
def datasets_list() -> None:
    """Table of registered datasets: family, size, atoms, composition, whether built."""
    from dismai.datasets.registry import dataset_specs, find_data_dir, shipped_paths

    table = Table(title="dismai datasets")
    for col in ("name", "family", "structures", "train/val", "atoms", "composition", "built"):
        table.add_column(col)
    for name, spec in dataset_specs().items():
        where = find_data_dir(name)
        size, split, status = "-", "-", f"no (dismai datasets build {name})"
        if where is not None:
            man = json.loads(shipped_paths(name, where)["manifest"].read_text())
            size, split = str(man["n_structures"]), f"{man['n_train']}/{man['n_val']}"
            status = "preview" if man.get("preview") else "shipped" if where == \
                shipped_paths(name)["data"].parent else f"added ({where})" \
                if man.get("added") else f"built ({where})"
        family = spec.family + (f" (preview of {spec.parent})" if spec.recipe.get("preview")
                                else f" (small {spec.parent})" if spec.parent else "")
        comp = " ".join(f"{k}{v}" for k, v in spec.composition.items())
        table.add_row(name, family, size, split, str(spec.n_atoms), comp, status)
    Console(width=max(console.width, 120)).print(table)
    from dismai.datasets.crystal_sets import CRYSTAL_DATASETS

    crys = Table(title="general-crystal datasets (CrystalSet; models: crystens-diffusion, "
                       "crystens-wgan, crystens-gan, ssl-pretrain)")
    for col in ("name", "what", "atoms", "train", "test", "built"):
        crys.add_column(col)
    for name, spec in CRYSTAL_DATASETS.items():
        crys.add_row(name, spec.description, spec.atoms,
                     f"{spec.sizes['train']} (published val split)",
                     f"{spec.sizes['test']} (published test split, held out)", "shipped")
    Console(width=max(console.width, 120)).print(crys)


@datasets_app.command("info")
@friendly
def datasets_info(name: str = typer.Argument(..., help="dataset name")) -> None:
    """Print the manifest (recipe, seed, checksum, statistics) of a built dataset."""
    from dismai.datasets import load

    console.print_json(json.dumps(load(name).manifest))


@datasets_app.command("build")
@friendly
def datasets_build(
    name: str = typer.Argument(..., help="dataset name, or 'all' (every shipped dataset)"),
    seed: int = typer.Option(None, help="recipe seed (default: the shipped seed)"),
    out: Path = typer.Option(None, "--out",
                             help="output folder (default: the user data folder)"),
    work: Path = typer.Option(None, "--work",
                              help="folder for resumable work files (default: the user "
                                   "cache folder)"),
    workers: int = typer.Option(None, "--workers", help="processes (default: all cores)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Regenerate a dataset from its recipe (bit-identical to the shipped file for a seed);
    an interrupted build continues where it stopped when run again."""
    from dismai.datasets.registry import DATA_DIR, dataset_names, find_data_dir
    from dismai.workflows import build

    names = ([n for n in dataset_names() if find_data_dir(n) == DATA_DIR] if name == "all"
             else [name])
    for n in names:
        paths = build(n, seed=seed, out=out, work_dir=work, n_workers=workers,
                      progress=not quiet)
        man = json.loads(paths["manifest"].read_text())
        console.print(f"wrote {paths['data']} (sha256 {man['sha256'][:16]}…, "
                      f"{man['n_train']} train / {man['n_val']} val); work files in "
                      f"{paths['work']}")


def _species_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InputError(f"{what}: give species separated by commas, e.g. Li,Co")
    return items


def _oxidation_states(text: str | None) -> dict | None:
    if text is None:
        return None
    out = {}
    for item in text.split(","):
        sym, sep, val = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[sym.strip()] = float(val)
        except ValueError:
            raise InputError(f"--oxidation-states: {item.strip()!r} is not SPECIES=CHARGE "
                             "(e.g. Li=1,Cl=-1)") from None
    return out


@datasets_app.command("add")
@friendly
def datasets_add(
    name: str = typer.Argument(..., help="name for the new dataset"),
    train: Path = typer.Option(..., "--train", help="training structures (any evaluate "
                                                     "input format)"),
    val: Path = typer.Option(..., "--val", help="validation structures (the noise floor)"),
    family: str = typer.Option("disordered", "--family",
                               help="disordered (any system), or alloy, a-si or interface "
                                    "when the files fit that family"),
    energy_model: str = typer.Option(None, "--energy-model",
                                     help="relax generated structures with this potential "
                                          "(sw-vink, chgnet, sevennet); default: the family's "
                                          "(a-si sw-vink, interface chgnet), disordered: score "
                                          "as given"),
    fmt: str = typer.Option(None, "--format", help="input format (default: from the paths)"),
    centres: str = typer.Option(None, "--centres",
                                help="disordered: species that get fingerprints, e.g. Li,Co "
                                     "(default all)"),
    nn_species: str = typer.Option(None, "--nn-species",
                                   help="disordered: neighbour-species fraction columns, "
                                        "e.g. Cl,O"),
    oxidation_states: str = typer.Option(None, "--oxidation-states",
                                         help="disordered: e.g. Li=1,Cl=-1 (only oppositely "
                                              "charged neighbours count)"),
    fmax: float = typer.Option(None, "--fmax", help="relaxation force target, eV/Å "
                                                    "(default 0.05)"),
    max_steps: int = typer.Option(None, "--max-steps", help="relaxation step limit "
                                                            "(default 1000)"),
    optimizer: str = typer.Option(None, "--optimizer",
                                  help="relaxation optimizer (default lammps-cg for sw-vink, "
                                       "else fire)"),
    workers: int = typer.Option(None, "--workers", help="processes (default: all cores)"),
) -> None:
    """Register your own dataset: validate the files, store them in the user data folder and
    compute its reference statistics and noise floor; then evaluate/train/bench use it."""
    from dismai.workflows import add_dataset

    fingerprint = {k: v for k, v in (("centres", _species_list(centres, "--centres")),
                                     ("nn_species", _species_list(nn_species, "--nn-species")),
                                     ("oxidation_states", _oxidation_states(oxidation_states)))
                   if v is not None}
    relax = {k: v for k, v in (("fmax", fmax), ("max_steps", max_steps),
                               ("optimizer", optimizer)) if v is not None}
    paths = add_dataset(name, train, val, family=family, energy_model=energy_model,
                        format=fmt, fingerprint=fingerprint or None, relax=relax or None,
                        n_workers=workers)
    man = json.loads(paths["manifest"].read_text())
    console.print(f"added {name} ({man['family']}, {man['n_train']} train / {man['n_val']} "
                  f"val, {man['n_atoms']} atoms) -> {paths['manifest'].parent}")


@datasets_app.command("remove")
@friendly
def datasets_remove(name: str = typer.Argument(..., help="an added dataset")) -> None:
    """Delete a dataset added with `dismai datasets add` (shipped ones cannot be removed)."""
    from dismai.workflows import remove_dataset

    remove_dataset(name)
    console.print(f"removed {name}")


@datasets_app.command("export")
@friendly
def datasets_export(
    name: str = typer.Argument(..., help="dataset name"),
    split: str = typer.Option("all", "--split", help="train, val or all"),
    output: Path = typer.Option(..., "-o", "--output",
                                help="output .extxyz file (.csv of CIFs for crystal models)"),
) -> None:
    """Write a split of a dataset as extxyz."""
    from dismai.datasets import load
    from dismai.extxyz import write_extxyz

    structures = load(name).split(split)
    write_extxyz(structures, output)
    console.print(f"wrote {len(structures)} structures to {output}")


# ------------------------------------------------------------------------------ evaluate
@app.command("evaluate")
@friendly
def evaluate(
    path: Path = typer.Argument(..., help="generated structures: .extxyz, .cif, a folder or "
                                          ".zip of CIFs, POSCAR/.vasp (file or folder), "
                                          "ASE .db, pymatgen .json"),
    dataset: str = typer.Option(..., "--dataset", help="dataset to compare against"),
    fmt: str = typer.Option(None, "--format",
                            help="input format (default: from the path): extxyz, cif, poscar, "
                                 "ase-db, pymatgen-json"),
    n_generated: int = typer.Option(None, "--n-generated",
                                    help="number originally generated (denominator of % failed)"),
    out: Path = typer.Option(None, "--out", help="folder for metrics.json, CSV and plots"),
    lattice_match: str = typer.Option(None, "--lattice-match",
                                      help="alloys: auto (default), as-is, translated, rotated"),
    relax: bool = typer.Option(None, "--relax/--no-relax",
                               help="relaxed families (a-si, interface, disordered with an "
                                    "energy model): relax first (default)"),
    workers: int = typer.Option(None, "--workers", help="processes (default: all cores)"),
    as_generated: bool = typer.Option(None, "--as-generated",
                                      help="relaxed families: also score the input as given "
                                           "(the learning gate, docs/learning.md)"),
    near_copies: bool = typer.Option(True, "--near-copies/--no-near-copies",
                                     help="also count near copies of training structures "
                                          "(pct_near_copy)"),
    label: str = typer.Option(None, "--label",
                              help="name of these structures in reports (default: the file "
                                   "name); evaluations with one label are repeats"),
    html: bool = typer.Option(False, "--html", help="also write OUT/report.html (needs --out)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Score generated structures against a dataset's training set."""
    from dismai.evaluation import format_table
    from dismai.workflows import evaluate_file

    ev = evaluate_file(path, dataset, n_generated=n_generated, out=out, progress=not quiet,
                       format=fmt, label=label, html=html, lattice_match=lattice_match,
                       relax=relax, workers=workers, as_generated=as_generated,
                       near_copies=near_copies)
    typer.echo(ev.table())
    raw = ev.header.get("metrics_as_generated")
    if raw:
        typer.echo("as generated (no move-apart, no relaxation):")
        typer.echo(format_table(raw, ev.noise_floor, ev.titles))
    if out is not None:
        console.print(f"wrote {Path(out) / 'metrics.json'}")
    if html:
        console.print(f"HTML report: {Path(out) / 'report.html'}")


# ------------------------------------------------------------------------------ report
@app.command("report")
@friendly
def report(
    paths: list[Path] = typer.Argument(..., help="bench, run or evaluation folders (searched "
                                                 "for metrics.json), or metrics.json files"),
    out: Path = typer.Option(..., "-o", "--out", help="folder for the report"),
    title: str = typer.Option("dismai report", "--title", help="title of the report"),
) -> None:
    """Cross-run tables in the paper's layout, ranks, plots, report.html, leaderboard.json."""
    from dismai.report import build_report

    res = build_report(paths, out, title=title)
    n = sum(len(g.results) for g in res["groups"])
    console.print(f"{n} evaluations in {len(res['groups'])} groups -> {res['out']}")
    for t in res["tables"]:
        typer.echo(t.markdown())
    console.print(f"HTML report: {res['html']}")


# ------------------------------------------------------------------------------ models
@app.command("train")
@friendly
def train(
    model: str = typer.Argument(..., help=f"model name ({_model_names()})"),
    dataset: str = typer.Option(..., "--dataset",
                                help="registered dataset name, or a structure file/folder "
                                     "(any `evaluate` input format)"),
    preset: str = typer.Option("paper", "--preset",
                               help="named config: paper (published), quick (smoke), cpu (learning "
                                    "check on a-si-64), demo (DiffCSP's first run, 5-7 min)"),
    config: Path = typer.Option(None, "--config", help="YAML file of keys overriding the preset"),
    out: Path = typer.Option(None, "--out",
                             help="run directory (default runs/MODEL-DATASET-PRESET)"),
    resume: bool = typer.Option(False, "--resume",
                                help="continue the run in --out from its newest checkpoint"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Train a model; checkpoints survive Ctrl-C, SIGTERM and crashes (--resume)."""
    from dismai.workflows import train as run_train

    run_dir, seconds, m = run_train(model, dataset, preset, config, out, resume,
                                    progress=not quiet)
    if quiet:
        console.print(str(run_dir / "model.pt"))
    else:
        device = f" on {m.device}" if hasattr(m, "device") else ""
        console.print(f"trained {model} on {dataset} (preset {preset}){device} in "
                      f"{seconds:.1f} s -> {run_dir / 'model.pt'}")


@app.command("sample")
@friendly
def sample(
    run_dir: Path = typer.Argument(..., help="run directory (or a model/checkpoint file)"),
    n: int = typer.Option(..., "-n", "--n", help="number of structures"),
    seed: int = typer.Option(0, "--seed", help="noise seed: same seed, same structures"),
    output: Path = typer.Option(..., "-o", "--output",
                                help="output .extxyz file (.csv of CIFs for crystal models)"),
    device: str = typer.Option("auto", "--device",
                               help="auto (CUDA if present), cpu, cuda or cuda:i"),
) -> None:
    """Generate structures from a trained model."""
    from dismai.workflows import sample as run_sample

    structures, source = run_sample(run_dir, n, seed, output, device)
    note = " (training unfinished: newest checkpoint)" if source.name == "checkpoint.pt" else ""
    console.print(f"wrote {len(structures)} structures to {output} from {source}{note}")
    if "generated_lattice" in getattr(structures, "properties", {}):  # DiffCSP lattices
        import numpy as np

        dev = np.abs(structures.properties["generated_lattice"].reshape(-1, 3, 3)
                     - structures.lattice).max(axis=(1, 2))
        console.print(f"generated lattices (property generated_lattice) differ from the "
                      f"dataset cell by max |dL| {np.median(dev):.3g} Å (median), "
                      f"{dev.max():.3g} Å (worst); coordinates are on the dataset cell")


@app.command("bench")
@friendly
def bench(
    model: str = typer.Argument(..., help=f"model name ({_model_names(trainable=True)})"),
    dataset: str = typer.Option(..., "--dataset", help="registered dataset name"),
    preset: str = typer.Option("quick", "--preset",
                               help="quick (smoke), cpu (learning check on a-si-64), demo "
                                    "(DiffCSP's first run, 5-7 min) or paper"),
    config: Path = typer.Option(None, "--config", help="YAML file overriding the preset"),
    n: int = typer.Option(1000, "--n", help="structures to generate and evaluate"),
    out: Path = typer.Option(None, "--out",
                             help="output directory (default runs/bench-MODEL-DATASET-PRESET)"),
    seed: int = typer.Option(0, "--seed", help="repeat seed: training and sampling (seeds "
                                               "0, 1, 2: three separately trained models)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Train, sample, evaluate, and compare with the noise floor and baselines."""
    from dismai.metrics.report_common import text_table
    from dismai.workflows import bench as run_bench

    res = run_bench(model, dataset, preset, config, n, out, seed, progress=not quiet)
    typer.echo(f"{model} on {dataset} (n = {n}, preset {preset}); 95 % intervals in [ ]")
    typer.echo(text_table(res["header"], res["rows"]))
    if res["gate"] is not None:
        typer.echo(f"learning gate against random (docs/learning.md): {res['gate'].summary()}")
    typer.echo(f"wrote {res['out'] / 'report.md'}")


@app.command("evaluate-reconstruction")
@friendly
def evaluate_reconstruction(
    model_file: Path = typer.Argument(..., help="a masked-atom model (ssl-pretrain, ssl-gan): run "
                                                "folder or model file"),
    dataset: str = typer.Option("perov-5", "--dataset",
                                help="general-crystal dataset (perov-5, carbon-24) or a CSV "
                                     "of CIFs"),
    split: str = typer.Option("test", "--split", help="train or test (held out)"),
    noise: float = typer.Option(0.1, "--noise", help="position noise sigma / d_min"),
    masking: str = typer.Option("beta", "--masking",
                                help="alpha (all atoms of one species, once per species), "
                                     "beta (15 %), gamma (30 %)"),
    repeats: int = typer.Option(5, "--repeats", help="corruptions per crystal (beta, gamma)"),
    n: int = typer.Option(500, "--n", help="crystals drawn from the split (seeded)"),
    seed: int = typer.Option(0, "--seed", help="seed of the draw and the corruptions"),
    energy: str = typer.Option(None, "--energy",
                               help="also score energies per atom with this potential "
                                    "(chgnet; slow)"),
    output: Path = typer.Option(None, "-o", "--output", help="write every number as JSON"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:i"),
) -> None:
    """The masked-atom paper's reconstruction metrics: validity, compositional and
    structural similarity, energy change, species replacements (docs/masked-atom.md)."""
    from dismai.metrics.report_common import text_table
    from dismai.workflows import evaluate_reconstruction as run

    res = run(model_file, dataset, split, noise, masking, repeats, n, seed, energy, output,
              device)
    rows = [[k, _fmt(res[k])] for k in (
        "n_crystals", "n_samples", "n_masked", "masked_accuracy", "unmasked_changed",
        "structure_valid", "composition_valid", "valid", "composition_similarity",
        "structural_similarity_eqn5", "structural_similarity_matched",
        "structural_similarity_all", "mean_noise_angstrom", "n_valid_changed")]
    rows += [[f"originals: {k}", _fmt(res["originals"][k])]
             for k in ("structure_valid", "composition_valid")]
    rows += [[f"substitution table: {k}", _fmt(v)]
             for k, v in res["substitution_comparison"].items()]
    rows += [[f"energy: {k}", _fmt(v)] for k, v in (res.get("energy") or {}).items()]
    typer.echo(f"{res['model']} on {dataset} {split}, masking {masking}, noise {noise} d_min")
    typer.echo(text_table(["metric", "value"], rows))
    top = sorted(res["replacements"], key=lambda r: -r["count"])[:8]
    if top:
        typer.echo("most frequent replacements (valid, changed reconstructions): " + ", ".join(
            f"{r['from']}->{r['to']} {r['count']}" for r in top))
    if output is not None:
        console.print(f"wrote {output}")


@potentials_app.command("list")
@friendly
def potentials_list() -> None:
    """Registered energy models, and the distilled ones with their manifests."""
    from dismai.energy import available_potentials
    from dismai.energy.distill import POTENTIAL_RECIPES
    from dismai.energy.distilled import shipped_potential_dir

    table = Table(title="dismai energy models")
    for col in ("name", "kind", "shipped weights"):
        table.add_column(col)
    for name in available_potentials():
        if name in POTENTIAL_RECIPES:
            man = shipped_potential_dir() / f"{name}.json"
            info = "no (dismai potentials build " + name + ")"
            if man.exists():
                m = json.loads(man.read_text())
                info = f"yes: {m['teacher']} distilled, {m['data']['train_frames']} frames"
            table.add_row(name, f"distilled ({POTENTIAL_RECIPES[name]['system']})", info)
        else:
            table.add_row(name, "universal / classical", "-")
    Console(width=max(console.width, 100)).print(table)


@potentials_app.command("build")
@friendly
def potentials_build(
    name: str = typer.Argument(..., help="a distilled potential's recipe (interface-mlip)"),
    work: Path = typer.Option(None, "--work", help="work folder (teacher frames, training "
                              "checkpoint; default runs/potentials/NAME); rerun to resume"),
    out: Path = typer.Option(None, "--out", help="folder for NAME.pt and NAME.json "
                             "(default: the work folder)"),
) -> None:
    """Reproduce a distilled potential from its recipe: teacher data, training, validation.

    CPU-heavy (the teacher relaxes every candidate); every stage resumes."""
    from dismai.energy.distill import build_potential, get_recipe

    get_recipe(name)
    work = work or Path("runs") / "potentials" / name
    man = build_potential(name, work, out, log=typer.echo)
    typer.echo(json.dumps(man["validation"], indent=1))
    console.print(f"wrote {(out or work) / (name + '.pt')} and its manifest")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
