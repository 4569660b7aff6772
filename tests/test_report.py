"""dismai report: grouping of repeats, the paper-layout tables, ranks, leaderboard schema,
bad input, the self-contained HTML page and its rendering in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from dismai.errors import InputError
from dismai.report import build_report
from dismai.report.collect import find_results, group_results
from dismai.report.ranking import _ranks, dataset_ranks

DATASET = "alloy-300K-narrow"
N = 30


def _prov(name, seed, baseline=False):
    return {"model": {"name": name, "preset": None if baseline else "quick",
                      "config_hash": None if baseline else "cafe0123", "seed": seed,
                      "baseline": baseline, "train_seconds": 1.0}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three repeats of 'good' (validation structures), one 'bad' (shuffled sites) and a
    baseline, each a real alloy evaluation."""
    from dismai.datasets import load
    from dismai.models import create_model
    from dismai.workflows import evaluate

    root = tmp_path_factory.mktemp("runs")
    ds = load(DATASET)
    for seed in range(3):
        idx = np.random.default_rng(seed).choice(len(ds.val), N, replace=False)
        evaluate(ds.val[idx], ds, out=root / f"good-{seed}", progress=False,
                 label="good", provenance=_prov("good", seed))
    bm = create_model("shuffled-lattice")
    bm.fit(ds.train, ds.val)
    evaluate(bm.sample(N, seed=0), ds, out=root / "bad", progress=False, label="bad",
             provenance=_prov("bad", 0))
    rnd = create_model("random")
    rnd.fit(ds.train, ds.val)
    evaluate(rnd.sample(N, seed=0), ds, out=root / "baselines" / "random", progress=False,
             label="random", provenance=_prov("random", 0, baseline=True))
    return root


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report([runs], out, title="test report")


def _metrics(path):
    return json.loads(path.read_text())["metrics"]


def test_repeats_grouped_and_cells_are_mean_min_max(runs, report):
    groups = {g.label: g for g in report["groups"]}
    assert sorted(groups) == ["bad (quick)", "good (quick)", "random"]
    assert groups["good (quick)"].seeds == [0, 1, 2]
    values = [_metrics(runs / f"good-{s}" / "metrics.json")["d_cluster"]["value"]
              for s in range(3)]
    (table,) = report["tables"]
    row = next(r for r in table.rows if r[0] == "good (quick)")
    cell = row[1][[m for _, m in table.columns].index("d_cluster")]
    assert cell.n == 3 and row[2] == 3
    assert cell.mean == pytest.approx(np.mean(values))
    assert (cell.min, cell.max) == (min(values), max(values))
    assert re.fullmatch(r"\S+ \(\S+, \S+\)", cell.text())
    # a single run shows its value and pivotal interval
    bad = next(r for r in table.rows if r[0] == "bad (quick)")[1][0]
    m = _metrics(runs / "bad" / "metrics.json")["d_cluster"]
    assert bad.lower == pytest.approx(m["value"] - m["lower_error"])
    assert re.fullmatch(r"\S+ \[\S+, \S+\]", bad.text())
    assert [m for _, m in table.columns] == ["d_cluster", "pct_vacancy", "pct_failed",
                                             "pct_near_copy"]
    assert table.rows[-1][0].startswith("noise floor")
    assert any(r[0] == "random [baseline]" for r in table.rows)


def test_shuffled_sites_rank_below_validation_structures(report):
    ranks = dataset_ranks(report["groups"])[DATASET]
    assert ranks == {"good (quick)": 1, "bad (quick)": 2}  # baselines are not ranked
    assert list(_ranks(np.array([0.3, 0.1, 0.3, np.nan]))) == [2.5, 1.0, 2.5, 4.0]


def test_outputs_and_leaderboard_schema(report):
    jsonschema = pytest.importorskip("jsonschema")
    from dismai.report.leaderboard import leaderboard_schema

    out = report["out"]
    for name in ("report.md", "report.html", "tables.csv", "tables.tex", "leaderboard.json",
                 "ranks.json"):
        assert (out / name).stat().st_size > 0, name
    board = json.loads((out / "leaderboard.json").read_text())
    jsonschema.validate(board, leaderboard_schema())
    rec = next(r for r in board["records"] if r["model"] == "good")
    assert rec["repeats"] == 3 and rec["seeds"] == [0, 1, 2]
    assert len(rec["metrics"]["d_cluster"]["values"]) == 3
    assert rec["dataset_sha256"] and rec["provenance"][0]["dataset"]["name"] == DATASET
    broken = json.loads(json.dumps(board))
    del broken["records"][0]["repeats"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, leaderboard_schema())
    csv = (out / "tables.csv").read_text().splitlines()
    assert len(csv) == 1 + 4 * 4  # 3 groups + noise floor, 4 columns
    assert r"\begin{tabular}" in (out / "tables.tex").read_text()
    md = (out / "report.md").read_text()
    assert "Published (published, on the original datasets" in md
    assert "0.117 (0.106, 0.126)" in md  # CryinGAN, 300 K narrow, Table 3


def test_html_is_self_contained(report):
    page = report["html"].read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    imgs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert imgs and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert len(imgs) == 1 + len(report["plots"])  # spider chart + side-by-side plots
    assert page.count("<table>") == len(report["tables"]) + 2  # + published + provenance


def test_bad_input(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no metrics.json under it"):
        find_results([empty])
    old = tmp_path / "old" / "metrics.json"
    old.parent.mkdir()
    data = json.loads((runs / "bad" / "metrics.json").read_text())
    del data["schema_version"]
    old.write_text(json.dumps(data))
    with pytest.raises(InputError, match="schema version 1, this dismai reads version 2"):
        find_results([old])
    # the same seed claimed twice with different numbers
    twin = tmp_path / "twin" / "metrics.json"
    twin.parent.mkdir()
    data = json.loads((runs / "good-0" / "metrics.json").read_text())
    data["metrics"]["d_cluster"]["value"] += 1e-3
    twin.write_text(json.dumps(data))
    with pytest.raises(InputError, match="both claim good .* with seed 0 but their results"):
        group_results(find_results([runs / "good-0", twin]))
    # an identical copy is kept once
    shutil.copy(runs / "good-0" / "metrics.json", twin)
    (g,) = group_results(find_results([runs / "good-0", twin]))
    assert len(g.results) == 1
    # two versions of one dataset in one table
    data["provenance"]["dataset"]["sha256"] = "0" * 64
    twin.write_text(json.dumps(data))
    with pytest.raises(InputError, match="two versions of dataset"):
        group_results(find_results([runs / "good-1", twin]))


def test_cli_report_and_evaluate_html(runs, tmp_path):
    from typer.testing import CliRunner

    from dismai.cli import app
    from dismai.datasets import load
    from dismai.extxyz import write_extxyz

    r = CliRunner().invoke(app, ["report", str(runs / "good-0"), str(runs / "good-1"),
                                 "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "good (quick)" in r.output and "HTML report" in r.output
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nothing"), "-o", str(tmp_path)])
    assert r.exit_code != 0 and "no such file or folder" in r.output
    path = tmp_path / "mine.extxyz"
    write_extxyz(load(DATASET).val[:10], path)
    r = CliRunner().invoke(app, ["evaluate", str(path), "--dataset", DATASET, "--out",
                                 str(tmp_path / "ev"), "--html", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ev" / "report.html").exists() and "HTML report:" in r.output
    data = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert data["label"] == "mine" and data["provenance"]["input"]["sha256"]
    r = CliRunner().invoke(app, ["evaluate", str(path), "--dataset", DATASET, "--html"])
    assert r.exit_code != 0 and "--html needs --out" in r.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


def _render(page, tmp_path, *extra):
    """(DOM after load, console messages) of a page in headless Chromium."""
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           *extra, "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    return proc.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs "
                                              "Debian's chromium; without it this is skipped)")
def test_report_renders_in_chromium(report, tmp_path):
    # the console check sees an error when there is one
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); undefinedCall();"
                   "</script></body></html>")
    _, console = _render(bad, tmp_path)
    assert any("boom" in c for c in console) and any("undefinedCall" in c for c in console)
    dom, console = _render(report["html"], tmp_path)
    assert console == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    n_img = int(re.search(r'data-images="(\d+)"', body).group(1))
    assert n_img == 1 + len(report["plots"])
    assert re.search(r'data-images-loaded="(\d+)"', body).group(1) == str(n_img)
    assert re.search(r'data-tables="(\d+)"', body).group(1) == str(len(report["tables"]) + 2)
