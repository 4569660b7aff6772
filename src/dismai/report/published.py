"""The published numbers of Dismai-Bench Tables 1-3, shipped as data with their citation,
shown beside (never merged with) results on the regenerated datasets."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from dismai.metrics.report_common import format_number

__all__ = ["published", "published_tables", "published_markdown"]


@cache
def published() -> dict:
    """The data file: citation, note, and per table datasets, metrics and rows
    (dataset -> model -> [[mean, min, max] per metric])."""
    text = resources.files("dismai.report").joinpath("data/published_dismai_bench.json")
    return json.loads(text.read_text())


def _cell(triple) -> str:
    mean, lo, hi = triple
    return f"{format_number(mean)} ({format_number(lo)}, {format_number(hi)})"


def published_tables(families=None) -> list[dict]:
    """The published tables of the given dataset families (all if None), each as
    {"title", "headers", "rows": [[label, cells...]]}; dataset rows are prefixed."""
    from dismai.report.tables import short_title

    out = []
    for t in published()["tables"]:
        if families is not None and t["family"] not in families:
            continue
        rows = []
        for d in t["datasets"]:
            for model, cells in t["rows"][d].items():
                label = model if len(t["datasets"]) == 1 else f"{d}: {model}"
                rows.append([label, *(_cell(c) for c in cells)])
        out.append({"title": t["title"], "headers": [short_title(m) for m in t["metrics"]],
                    "rows": rows})
    return out


def published_markdown(families=None) -> str:
    """The published block in Markdown, clearly labelled, with the citation."""
    meta = published()
    tables = published_tables(families)
    if not tables:
        return ""
    lines = [f"## Published ({meta['note']})", "", f"Source: {meta['citation']}. "
             f"Cells: {meta['cell']}.", ""]
    for t in tables:
        head = ["model", *t["headers"]]
        lines += [f"### {t['title']} (published)", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in t["rows"]]
        lines.append("")
    return "\n".join(lines)
