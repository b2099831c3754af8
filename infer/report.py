"""``infer report``: one self-contained HTML page for a batch of results.

Everything is inline (CSS, the score histogram as SVG, a few lines of JavaScript for sorting and
filtering the table), so the file opens offline, from a mail attachment or a shared drive, with
no server and no network.  ECG pages written by ``infer score --plots`` are linked by a path
relative to the report, so a folder holding both can be moved as a whole.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from common.io import atomic_write_bytes
from common.storage import is_url

#: table columns shown (when the results have them), in order
COLUMNS = ["record_id", "status", "band", "mi_probability", "abnormal_probability",
           "mi_criteria", "quality", "quality_issues", "beat_index", "abnormal_fraction",
           "format", "input_fs", "duration_s", "message"]


def read_results(path: str | os.PathLike[str]) -> pa.Table:
    """A results table written by ``infer score``: Parquet, CSV when the name ends in .csv, or
    a finished partitioned dataset (``--out DIR/``)."""
    from infer.dataset import UnfinishedDatasetError
    from infer.dataset import read_results as read

    path = os.fspath(path)
    if not is_url(path) and not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such results file; pass the --out of `infer score`")
    try:
        return read(path)
    except UnfinishedDatasetError as e:
        raise ValueError(str(e)) from e
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: not a results table ({e}); pass the --out of `infer "
                         "score`") from e


def _histogram_svg(values: list[float], bands: tuple[float, float] | None) -> str:
    """Score histogram as inline SVG: 20 bins over [0, 1], the band thresholds dashed."""
    bins = [0] * 20
    for v in values:
        bins[min(19, max(0, int(v * 20)))] += 1
    top = max(bins) or 1
    w, h, pad = 600, 180, 24
    bars = []
    for i, n in enumerate(bins):
        bh = (h - 2 * pad) * n / top
        x = pad + i * (w - 2 * pad) / 20
        bars.append(f'<rect x="{x:.1f}" y="{h - pad - bh:.1f}" width="{(w - 2 * pad) / 20 - 2:.1f}"'
                    f' height="{bh:.1f}" fill="#4a78b5"><title>{i / 20:.2f}-{(i + 1) / 20:.2f}: '
                    f"{n}</title></rect>")
    lines = []
    for t in bands or ():
        x = pad + t * (w - 2 * pad)
        lines.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad / 2}" y2="{h - pad}" '
                     'stroke="#c0392b" stroke-dasharray="4 3"/>')
    axis = "".join(f'<text x="{pad + k / 4 * (w - 2 * pad):.1f}" y="{h - 6}" font-size="11" '
                   f'text-anchor="middle">{k / 4:.2f}</text>' for k in range(5))
    return (f'<svg id="histogram" width="{w}" height="{h}" role="img" '
            f'aria-label="score histogram">{"".join(bars)}{"".join(lines)}{axis}</svg>')


def _cell(value: Any, column: str) -> tuple[str, str]:
    """(text, sort key) of a table cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", ""
    if isinstance(value, float):
        text = f"{value:.4f}" if column.endswith(("probability", "fraction")) else f"{value:g}"
        return text, f"{value:.6f}"
    return html.escape(str(value)), html.escape(str(value))


def build_report(table: pa.Table, out: Path, title: str = "mi-screen results") -> str:
    """The report's HTML for ``table``; page links are made relative to ``out``'s folder."""
    rows = table.to_pylist()
    names = set(table.schema.names)
    # columns this batch fills (a MI batch has no beat columns, and so on)
    cols = [c for c in COLUMNS if c in names and table.column(c).null_count < table.num_rows]
    counts: dict[str, dict[str, int]] = {"status": {}, "band": {}, "quality": {}}
    for r in rows:
        for key in counts:
            v = r.get(key) or "(none)"
            counts[key][v] = counts[key].get(v, 0) + 1
    prob_col = "mi_probability" if any(r.get("mi_probability") is not None for r in rows) \
        else "abnormal_probability"
    values = [float(r[prob_col]) for r in rows if r.get(prob_col) is not None]
    summary = "".join(
        f"<div class='box'><h3>{key}</h3><table>"
        + "".join(f"<tr><td>{html.escape(k)}</td><td class='n'>{v}</td></tr>"
                  for k, v in sorted(c.items()))
        + "</table></div>" for key, c in counts.items())
    head = "".join(f"<th data-col='{i}'>{c}</th>" for i, c in enumerate(cols)) + "<th>page</th>"
    body = []
    for r in rows:
        cells = []
        for c in cols:
            text, key = _cell(r.get(c), c)
            cells.append(f"<td data-key='{key}'>{text}</td>")
        page = r.get("page")
        if page:
            rel = os.path.relpath(page, out.parent) if os.path.isabs(page) else page
            cells.append(f"<td><a href='{html.escape(Path(rel).as_posix())}'>ECG</a></td>")
        else:
            cells.append("<td></td>")
        body.append(f"<tr class='{html.escape(str(r.get('status') or ''))}'>{''.join(cells)}</tr>")
    model = html.escape(str(rows[0].get("model_name", ""))) if rows else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.box {{ display: inline-block; vertical-align: top; margin-right: 2em; }}
.box table td {{ padding: 0 .6em 0 0; }} .n {{ text-align: right; font-weight: bold; }}
#results {{ border-collapse: collapse; font-size: 13px; margin-top: 1em; }}
#results th {{ cursor: pointer; background: #eee; position: sticky; top: 0; }}
#results td, #results th {{ border: 1px solid #ccc; padding: 2px 6px; }}
tr.error td {{ background: #fdecea; }} tr.warning td {{ background: #fff8e1; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(rows)} rows; model {model}. Research use only: not a medical device.</p>
{summary}
<h2>Scores</h2>{_histogram_svg(values, None)}
<h2>Records</h2>
<p><input id="filter" placeholder="filter: any text in a row" size="40">
<span id="shown">{len(rows)}</span> shown</p>
<table id="results"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script>
(function () {{
  var tbody = document.querySelector('#results tbody');
  var rows = Array.prototype.slice.call(tbody.rows);
  document.getElementById('filter').addEventListener('input', function (e) {{
    var q = e.target.value.toLowerCase(), n = 0;
    rows.forEach(function (r) {{
      var hit = r.textContent.toLowerCase().indexOf(q) >= 0;
      r.style.display = hit ? '' : 'none'; if (hit) n++;
    }});
    document.getElementById('shown').textContent = n;
  }});
  document.querySelectorAll('#results th[data-col]').forEach(function (th) {{
    var asc = true;
    th.addEventListener('click', function () {{
      var i = +th.dataset.col;
      rows.sort(function (a, b) {{
        var x = a.cells[i].dataset.key, y = b.cells[i].dataset.key;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      }});
      asc = !asc;
      rows.forEach(function (r) {{ tbody.appendChild(r); }});
    }});
  }});
}})();
</script></body></html>
"""


def write_report(results: str | os.PathLike[str], out: str | os.PathLike[str],
                 overwrite: bool = False) -> Path:
    """Read ``results`` and write the report to ``out`` atomically."""
    out = Path(out)
    text = build_report(read_results(results), out, title=f"mi-screen: {Path(results).name}")
    atomic_write_bytes(out, text.encode("utf-8"), overwrite)
    return out
