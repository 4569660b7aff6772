"""Cross-run reports: `dismai report RUN_OR_EVAL_DIR... -o OUT`.

Collects metrics.json files (dismai.report.collect), groups repeats, and writes into OUT:

  report.md, report.html   tables in the paper's layout, ranks, plots, published numbers,
                           provenance (report.html is self-contained)
  tables.csv               every cell in full precision (long format)
  tables.tex               the same tables as LaTeX tabulars
  leaderboard.json         one record per model x dataset (docs/results-schema.md)
  ranks.json               the per-dataset ranks and the rule that made them
  plots/*.png              the spider chart and the side-by-side distributions
"""

from __future__ import annotations

from pathlib import Path

from dismai.errors import InputError
from dismai.fileio import write_json, write_text
from dismai.report.collect import find_results, group_results

__all__ = ["build_report"]


def build_report(paths, out, title: str = "dismai report") -> dict:
    """Build the report of the evaluation outputs under `paths` into folder `out`;
    returns {"out", "html", "groups", "tables", "ranks", "plots"}."""
    from dismai.provenance import environment
    from dismai.report.html import render_html
    from dismai.report.leaderboard import leaderboard
    from dismai.report.plots import comparison_plots
    from dismai.report.published import published, published_markdown, published_tables
    from dismai.report.ranking import RANK_RULE, dataset_ranks, metric_ranks, plot_spider
    from dismai.report.tables import family_tables, tables_csv

    paths = list(paths)
    if not paths:
        raise InputError("give at least one run or evaluation folder")
    out = Path(out)
    groups = group_results(find_results(paths))
    if not groups:
        raise InputError("no evaluation outputs found")
    tables = family_tables(groups)
    env = environment()
    plot_dir = out / "plots"

    ranks = dataset_ranks(groups)
    spider = plot_dir / "spider_ranks.png"
    caption = RANK_RULE
    if plot_spider(ranks, spider):
        axes = "datasets"
    else:  # fewer than three datasets: one axis per dataset metric
        per_metric = metric_ranks(groups)
        axes = "dataset metrics"
        caption = ("Fewer than three datasets, so one axis per dataset metric (the rank on "
                   "that metric alone). " + RANK_RULE)
        if not plot_spider(per_metric, spider, title="Model ranks per metric "
                           "(rank 1 outermost)"):
            spider, axes = None, None
    plots = comparison_plots(groups, plot_dir)

    families = {g.family for g in groups}
    pub = published()
    md = [f"# {title}", "",
          f"{sum(len(g.results) for g in groups)} evaluations in {len(groups)} groups "
          "(repeats of one model, preset and configuration on one dataset). Lower is better "
          "for every metric.", ""]
    md += [t.markdown() for t in tables]
    if ranks:
        md += ["## Ranks per dataset", "", RANK_RULE, ""]
        for d, r in ranks.items():
            md.append(f"- {d}: " + ", ".join(f"{m} {k}" for m, k in
                                             sorted(r.items(), key=lambda x: x[1])))
        md.append("")
    if spider is not None:
        md += [f"![ranks](plots/{spider.name})", ""]
    for p in plots:
        md += [f"![{p['dataset']}: {p['title']}](plots/{p['path'].name})", ""]
    md.append(published_markdown(families))
    write_text(out / "report.md", "\n".join(md) + "\n")
    write_text(out / "tables.csv", tables_csv(tables))
    write_text(out / "tables.tex", "\n".join(t.latex() for t in tables))
    board = leaderboard(groups, env)
    write_json(out / "leaderboard.json", board)
    write_json(out / "ranks.json", {"rule": RANK_RULE, "ranks": ranks, "spider_axes": axes})
    page = render_html(title, tables, published_tables(families), pub["citation"],
                       pub["note"], spider, caption, plots, groups)
    write_text(out / "report.html", page)
    return {"out": out, "html": out / "report.html", "groups": groups, "tables": tables,
            "ranks": ranks, "plots": plots, "leaderboard": board}
