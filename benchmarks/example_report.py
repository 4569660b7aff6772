"""The example cross-run report in docs/examples/report/: CryinGAN and DiffCSP, three seeds
each, on a-si-64 and alloy-300K-narrow, with their baselines and noise floors.

    python benchmarks/example_report.py --runs runs/example --n 200

Each bench folder that already holds its results is kept (so an interrupted run continues
where it stopped); then `dismai report` is built from all of them into docs/examples/report
(small files only: the tables, leaderboard.json, the plots and report.html), and a
screenshot of report.html is taken with headless Chromium when it is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"a-si-64": [("cryingan", "quick"), ("diffcsp", "quick")],
          "alloy-300K-narrow": [("diffcsp", "quick"), ("cryingan", "quick")]}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _done(out: Path, dataset) -> bool:
    return (out / "metrics.json").exists() and all(
        (out / "baselines" / b / "metrics.json").exists() for b in dataset.family.baselines)


def main(argv=None) -> int:
    from dismai.datasets import load
    from dismai.report import build_report
    from dismai.workflows import bench

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/example")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "docs" / "examples" / "report"))
    p.add_argument("--report-only", action="store_true",
                   help="build the report from the finished bench folders, run nothing")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    folders = []
    for name, models in MODELS.items():
        ds = load(name)
        for model, preset in models:
            for seed in range(args.seeds):
                out = runs / f"{model}-{name}-{preset}-seed{seed}"
                if _done(out, ds):
                    folders.append(out)
                    continue
                if args.report_only:
                    continue
                folders.append(out)
                t0 = time.time()
                bench(model, ds, preset=preset, n=args.n, out=out, seed=seed, progress=False)
                print(f"{out.name}: {time.time() - t0:.0f} s", flush=True)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    res = build_report(folders, out, title="dismai example report: CryinGAN and DiffCSP, "
                       f"3 seeds, n = {args.n}")
    print(f"wrote {res['html']}")
    chromium = shutil.which("chromium")
    if chromium:
        shot = ROOT / "docs" / "report-screenshot.png"
        with_profile = [f"--user-data-dir={runs / 'chromium-profile'}"]
        subprocess.run([chromium, *FLAGS, *with_profile, "--window-size=1280,1600",
                        f"--screenshot={shot}", res["html"].resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
        print(f"wrote {shot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
