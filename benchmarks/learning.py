"""Does every model learn?  Run each trainable model's `cpu` preset on a small dataset and
write docs/learning.md: the gate metrics as generated and after relaxation, with 95 %
intervals, beside `random` and the noise floor, CPU time of training and sampling, and
whether the learning gate passed (dismai.learning).

    python benchmarks/learning.py                     # every model with a cpu preset
    python benchmarks/learning.py --models diffcsp --n 1000 --out runs/learning

Models of general crystals (crystens-diffusion, crystens-wgan, crystens-gan) have no
Dismai-Bench dataset: their check is the CrysTens paper's comparison on `--crystals`
(perov-5 by default), run by benchmarks/crystens_tables.py (1000 training crystals, --n
generated each, CHGNet energies), whose tables become their section.

Each model's run folder is reused (training resumes), so an interrupted run continues, and
the doc is assembled from every model's newest section under --out: rerunning one model
keeps the others' results.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SECTION = "learning-section.md"  # one model's part of the doc, kept in its run folder


def _cell(entry) -> str:
    from dismai.metrics.report_common import format_entry

    return format_entry(entry)


def _table(res: dict) -> list[str]:
    model, base = res["result"], res["baselines"].get("random")
    if isinstance(base, str):  # the baseline failed: its cells stay empty
        base = None
    raw = model.header.get("metrics_as_generated") or {}
    base_raw = {} if base is None else base.header.get("metrics_as_generated") or {}
    floor = model.noise_floor or {}
    lines = ["| metric | model | random | noise floor (val vs train) |", "|---|---|---|---|"]
    for name in ("d_motif", "d_rdf", "d_angle", "pct_failed"):
        # pct_failed as generated: structures left out for coincident atoms (gate: <= 1 %)
        lines.append(f"| {name}, as generated | {_cell(raw.get(name))} | "
                     f"{_cell(base_raw.get(name))} | {_cell(floor.get(name))} |")
    for name in ("pct_near_copy",):  # computed on the structures as generated
        b = None if base is None else base.metrics.get(name)
        lines.append(f"| {name}, as generated | {_cell(model.metrics.get(name))} | "
                     f"{_cell(b)} | {_cell(floor.get(name))} |")
    for name in ("d_motif", "d_rdf", "d_angle", "mean_relax_steps", "pct_failed"):
        b = None if base is None else base.metrics.get(name)
        lines.append(f"| {name}, relaxed | {_cell(model.metrics.get(name))} | {_cell(b)} | "
                     f"{_cell(floor.get(name))} |")
    return lines


def main(argv=None) -> int:
    from dismai.errors import DismaiError
    from dismai.fileio import write_text
    from dismai.models import get_model_class, trainable_models
    from dismai.models.config import preset_names
    from dismai.models.registry import crystal_models
    from dismai.workflows import bench

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--dataset", default="a-si-64")
    p.add_argument("--crystals", default="perov-5", choices=["perov-5", "carbon-24"],
                   help="dataset of the general-crystal models")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", default="runs/learning")
    p.add_argument("--doc", default=str(Path(__file__).resolve().parents[1] / "docs" /
                                        "learning-results.md"))
    args = p.parse_args(argv)
    models = args.models or [m for m in trainable_models() + crystal_models()
                             if "cpu" in preset_names(get_model_class(m).name)]
    sections = []
    # the general-crystal generators are compared in the CrysTens paper's tables; the
    # masked-atom pre-training has its own gate (benchmarks/ssl_pretrain_gate.py)
    crystals = [m for m in models if m in crystal_models() and m.startswith("crystens")]
    models = [m for m in models if m not in crystal_models()]
    if crystals:
        _crystal_section(crystals, args)
    for name in models:
        w0 = time.time()
        try:
            res = bench(name, args.dataset, preset="cpu", n=args.n,
                        out=Path(args.out) / name, progress=False)
        except DismaiError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            sections.append(f"## {name}\n\nerror: {exc}\n")
            (Path(args.out) / name / SECTION).unlink(missing_ok=True)  # no stale result
            continue
        gate = res["gate"]
        wall = time.time() - w0
        print(f"{name}: gate {gate.summary()}, train {res['train_cpu_seconds']:.0f} CPU-s, "
              f"sample {res['sample_cpu_seconds']:.0f} CPU-s, bench {wall:.0f} s wall")
        section = "\n".join([
            f"## {name} (`--preset cpu`, {args.dataset}, n = {args.n})", "",
            f"- learning gate: **{gate.summary()}**",
            f"- training {res['train_seconds']:.0f} s wall / {res['train_cpu_seconds']:.0f} "
            f"CPU-s; sampling {res['sample_seconds']:.0f} s / {res['sample_cpu_seconds']:.0f} "
            f"CPU-s; whole bench {wall:.0f} s wall ({time.strftime('%Y-%m-%d')})", "",
            *_table(res), ""])
        write_text(Path(args.out) / name / SECTION, section)
    # every model's newest section under --out, so models can be rerun one at a time; a
    # model with none there (run on another machine) keeps its section of the current doc
    kept = _doc_sections(Path(args.doc))
    ordered = []
    for m in trainable_models() + [CRYSTALS]:
        if (Path(args.out) / m / SECTION).is_file():
            ordered.append((Path(args.out) / m / SECTION).read_text())
        elif m in kept:
            ordered.append(kept[m])
    sections = ordered + sections
    text = ("# Learning check results\n\nWritten by `python benchmarks/learning.py` "
            "from the runs under its `--out` folder; see docs/learning.md for the gate. A "
            "model whose run is not under `--out` keeps its section from the previous "
            "version of this file (each section gives the date of its run).\n\n"
            + "\n".join(sections))
    write_text(args.doc, text)
    print(f"wrote {args.doc}")
    return 0


CRYSTALS = "crystal-models"  # the run folder of the general-crystal comparison


def _doc_sections(doc: Path) -> dict[str, str]:
    """The model sections of an existing results doc: model name (CRYSTALS for the
    general-crystal one) -> its text, heading included."""
    if not doc.is_file():
        return {}
    out: dict[str, str] = {}
    for part in doc.read_text().split("\n## ")[1:]:
        name = part.split()[0]
        key = CRYSTALS if name == "General-crystal" else name
        out[key] = "## " + part.rstrip("\n") + "\n"
    return out


def _crystal_section(models: list[str], args) -> None:
    """Run the CrysTens paper's comparison for the general-crystal models and keep its
    tables as their section."""
    from dismai.fileio import write_text

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import crystens_tables

    out = Path(args.out) / CRYSTALS
    crystens_tables.main(["--dataset", args.crystals, "--limit", "1000", "--n", str(args.n),
                          "--models", *models, "--preset", "cpu", "--energy", "chgnet",
                          "--out", str(out)])
    write_text(out / SECTION, "\n".join([
        f"## General-crystal models (`--preset cpu`, {args.crystals}, n = {args.n})", "",
        "Tables 1 and 2 of the CrysTens paper, validity and KS statistics against the "
        f"held-out split, from `benchmarks/crystens_tables.py` ({time.strftime('%Y-%m-%d')}); "
        "see docs/crystens.md.", "", (out / "tables.md").read_text()]))


if __name__ == "__main__":
    sys.exit(main())
