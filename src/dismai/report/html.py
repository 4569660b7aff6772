"""A self-contained report.html: tables, plots (embedded as data URIs), the published
numbers and per-run provenance; nothing is fetched when it is viewed.

The page ends with a few lines of script that count the images that decoded and the tables
shown (``data-images-loaded``, ``data-images``, ``data-tables`` on <body>): the browser test
reads them, and a reader loses nothing without script.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from dismai.report.collect import Group
from dismai.report.tables import Table

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
tr.floor td{font-style:italic;background:#fafafa}tr.baseline td{color:#555}
.published{background:#fff8e6;border-left:4px solid #e0a800;padding:.2em 1em;margin:1em 0}
.note{color:#555;font-size:.9em}.plots{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;flex:1 1 520px}figure img{max-width:100%}
figcaption{font-size:.85em;color:#555}
.scroll{overflow-x:auto}
"""

_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img');
  var ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) { ok += 1; } });
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-loaded', String(ok));
  document.body.setAttribute('data-tables', String(document.querySelectorAll('table').length));
});
</script>"""


def _e(text) -> str:
    return html.escape(str(text))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table_html(t: Table) -> str:
    head = ["model", "repeats", *t.headers()]
    out = [f"<h3>{_e(t.title)}</h3>"]
    if t.note:
        out.append(f'<p class="note">{_e(t.note)}</p>')
    out.append('<div class="scroll"><table><thead><tr>' +
               "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>")
    for label, cells, n in t.rows:
        cls = ' class="floor"' if label.startswith("noise floor") else (
            ' class="baseline"' if label.endswith("[baseline]") else "")
        out.append(f"<tr{cls}><td>{_e(label)}</td><td>{n or '-'}</td>" +
                   "".join(f"<td>{_e(c.text())}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _simple_table(headers, rows) -> str:
    return ('<div class="scroll"><table><thead><tr>' +
            "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead><tbody>" +
            "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows) +
            "</tbody></table></div>")


def _seconds(model: dict, key: str) -> str:
    v = model.get(key)
    return "-" if v is None else f"{v:.0f}"


def _provenance_rows(groups: list[Group]) -> list[list[str]]:
    rows = []
    for g in groups:
        for r in g.results:
            p, m, d = r.provenance, r.model, r.provenance.get("dataset") or {}
            hardware = p.get("cpu", "-") + (f" x{p['n_cpus']}" if p.get("n_cpus") else "")
            if p.get("gpu"):
                hardware += f", {p['gpu']}"
            rows.append([g.label + (" [baseline]" if g.baseline else ""),
                         str(m.get("seed", "-")), str(m.get("config_hash") or "-"),
                         f"{d.get('name', r.dataset)} ({str(d.get('sha256') or '-')[:12]}, "
                         f"recipe v{d.get('recipe_version', '-')})",
                         str(p.get("dismai", "-")), hardware,
                         _seconds(m, "train_seconds"), _seconds(m, "train_cpu_seconds"),
                         _seconds(m, "sample_seconds"), str(r.data.get("n_generated", "-")),
                         p.get("created", "-"), str(r.path.parent)])
    return rows


PROVENANCE_HEADERS = ["model", "seed", "config hash", "dataset (sha256, recipe)", "dismai",
                      "hardware", "train s", "train CPU-s", "sample s", "n generated",
                      "evaluated (UTC)", "folder"]


def render_html(title: str, tables: list[Table], published: list[dict], citation: str,
                note: str, spider: Path | None, spider_caption: str, plots: list[dict],
                groups: list[Group]) -> str:
    """The whole page as one string."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{_e(title)}</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             '<p class="note">Generated by <code>dismai report</code>. Lower is better for '
             "every metric. The noise floor is the validation split scored against the "
             "training split: what a perfect generator would get.</p>",
             "<h2>Results</h2>"]
    parts += [_table_html(t) for t in tables]
    if spider is not None:
        parts += ["<h2>Ranking</h2>", "<figure>", _img(spider, "spider chart of ranks"),
                  f"<figcaption>{_e(spider_caption)}</figcaption></figure>"]
    if plots:
        parts.append("<h2>Distributions against the training set</h2>")
        for d in dict.fromkeys(p["dataset"] for p in plots):
            parts += [f"<h3>{_e(d)}</h3>", '<div class="plots">']
            for p in (p for p in plots if p["dataset"] == d):
                parts += ["<figure>", _img(p["path"], f"{d}: {p['title']}"),
                          f"<figcaption>{_e(p['title'])}</figcaption></figure>"]
            parts.append("</div>")
    if published:
        parts += ['<h2>Published numbers</h2><div class="published">',
                  f"<p><strong>{_e(note)}.</strong> Source: {_e(citation)}.</p>"]
        for t in published:
            parts += [f"<h3>{_e(t['title'])} (published)</h3>",
                      _simple_table(["model", *t["headers"]], t["rows"])]
        parts.append("</div>")
    parts += ["<h2>Provenance</h2>", _simple_table(PROVENANCE_HEADERS, _provenance_rows(groups)),
              _CHECK, "</body></html>"]
    return "\n".join(parts) + "\n"
