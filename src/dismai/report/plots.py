"""Side-by-side plots: every model of a dataset against the training set, one figure per
comparison panel (dismai.metrics.report_common: plot_data.json of each evaluation).

Curves and histograms are averaged over a group's repeats; violins pool its repeats'
structures.  Baselines are drawn dashed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from dismai.metrics.report_common import PLOT_DATA, TRAIN_COLOUR, figure, save_png
from dismai.report.collect import Group

__all__ = ["comparison_plots"]


def _panels(group: Group) -> dict[str, list[dict]]:
    """panel name -> that panel of every repeat that wrote plot data."""
    out: dict[str, list[dict]] = {}
    for r in group.results:
        path = r.path.parent / PLOT_DATA
        if not path.exists():
            continue
        for p in json.loads(path.read_text()).get("panels", []):
            out.setdefault(p["name"], []).append(p)
    return out


def _mean(series: list) -> np.ndarray | None:
    arrays = [np.asarray([np.nan if v is None else v for v in s], dtype=np.float64)
              for s in series if s is not None]
    if not arrays or len({a.shape for a in arrays}) != 1:
        return None
    return np.nanmean(np.stack(arrays), axis=0)


def _draw(ax, kind: str, first: dict, entries: list[tuple[Group, list[dict]]], colours):
    train = first.get("train")
    if kind == "curve":
        x = np.asarray(first["x"], dtype=np.float64)
        if train is not None:
            ax.plot(x, np.asarray(train, dtype=float), color="k", lw=1.8, label="train")
        for (g, ps), c in zip(entries, colours, strict=True):
            y = _mean([p["gen"] for p in ps])
            if y is not None:
                ax.plot(x, y, color=c, lw=1.2, ls="--" if g.baseline else "-", label=g.label)
        if first.get("xlim"):
            ax.set_xlim(*first["xlim"])
    elif kind == "histogram":
        edges = np.asarray(first["edges"], dtype=np.float64)
        if train is not None:
            ax.stairs(np.asarray(train, dtype=float), edges, color=TRAIN_COLOUR, fill=True,
                      alpha=0.35, label="train")
        for (g, ps), c in zip(entries, colours, strict=True):
            y = _mean([p["gen"] for p in ps])
            if y is not None:
                ax.stairs(y, edges, color=c, lw=1.4, ls="--" if g.baseline else "-",
                          label=g.label)
    elif kind == "bars":
        labels = first["labels"]
        series = [("train", train, TRAIN_COLOUR)] + [
            (g.label, _mean([p["gen"] for p in ps]), c)
            for (g, ps), c in zip(entries, colours, strict=True)]
        series = [s for s in series if s[1] is not None and len(s[1]) == len(labels)]
        width = 0.8 / max(len(series), 1)
        pos = np.arange(len(labels))
        for k, (name, y, c) in enumerate(series):
            ax.bar(pos + (k - (len(series) - 1) / 2) * width, np.asarray(y, dtype=float),
                   width, color=c, label=name)
        ax.set_xticks(pos)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    elif kind == "violin":
        groups = first["groups"]
        sets = [("train", train, TRAIN_COLOUR)] + [
            (g.label, [sum((p["gen"][j] for p in ps), []) for j in range(len(groups))], c)
            for (g, ps), c in zip(entries, colours, strict=True)]
        width = 0.8 / len(sets)
        for k, (name, cols, c) in enumerate(sets):
            if cols is None:
                continue
            pos = [j + (k - (len(sets) - 1) / 2) * width for j in range(len(groups))]
            data = [(p, v) for p, v in zip(pos, cols, strict=True)
                    if len(v) >= 2 and np.ptp(v) > 1e-12]
            if data:
                parts = ax.violinplot([v for _, v in data], [p for p, _ in data],
                                      widths=width * 0.95, showmedians=True)
                for body in parts["bodies"]:
                    body.set_facecolor(c)
                    body.set_edgecolor("k")
                    body.set_alpha(0.6)
                for key in ("cbars", "cmins", "cmaxes", "cmedians"):
                    parts[key].set_color("k")
                    parts[key].set_linewidth(0.7)
            ax.plot([], [], color=c, lw=6, label=name)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.axhline(0.0, color="grey", lw=0.6)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def comparison_plots(groups: list[Group], out_dir) -> list[dict]:
    """Write one PNG per dataset x panel into out_dir; returns
    [{"dataset", "panel", "title", "path"}] in table order."""
    from matplotlib import colormaps

    out_dir = Path(out_dir)
    written = []
    palette = colormaps["tab10"].colors
    for d in dict.fromkeys(g.dataset for g in groups):
        dg = [g for g in groups if g.dataset == d]
        panels = {g.label + str(g.baseline): _panels(g) for g in dg}
        names = list(dict.fromkeys(n for p in panels.values() for n in p))
        colours = [palette[k % len(palette)] for k in range(len(dg))]
        for name in names:
            entries = [(g, panels[g.label + str(g.baseline)].get(name, [])) for g in dg]
            have = [(g, ps) for g, ps in entries if ps]
            if not have:
                continue
            first = have[0][1][0]
            cols = [c for (g, ps), c in zip(entries, colours, strict=True) if ps]
            fig = figure(7.5, 4.3)
            ax = fig.add_subplot()
            _draw(ax, first["kind"], first, have, cols)
            ax.set_title(f"{d}: {first['title']}", fontsize=10)
            ax.set_xlabel(first.get("xlabel") or "")
            ax.set_ylabel(first.get("ylabel") or "")
            ax.legend(loc="best", fontsize=7)
            path = out_dir / f"{_slug(d)}_{_slug(name)}.png"
            save_png(fig, path)
            written.append({"dataset": d, "panel": name, "title": first["title"],
                            "path": path})
    return written
