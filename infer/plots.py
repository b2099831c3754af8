"""Standard 12-lead ECG pages (PNG) for the records a reviewer should look at.

Layout as printed by electrocardiographs: a 3 x 4 grid of 2.5 s per lead (I, II, III / aVR,
aVL, aVF / V1-V3 / V4-V6, each column the next 2.5 s) and a 10 s lead II rhythm strip below, at
25 mm/s and 10 mm/mV on a 1 mm / 5 mm grid, with a 1 mV calibration pulse at the start of each
row.  The title gives the record id, MI probability, band and quality; with ``--explain`` the
seconds that drove the score are shaded (red: pushed it up) and each lead label carries its
attribution.  matplotlib (the ``plots`` extra) draws it; nothing else is needed.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

#: millimetres per second and per millivolt (the paper standard)
MM_PER_S, MM_PER_MV = 25.0, 10.0
ROW_MV = 3.0  # height of a row in mV
LAYOUT = [["I", "AVR", "V1", "V4"], ["II", "AVL", "V2", "V5"], ["III", "AVF", "V3", "V6"]]
_LABEL = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}


class PlotExtraMissing(ImportError):
    """matplotlib is not installed."""


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotExtraMissing("ECG pages need matplotlib: pip install 'mi-screen[plots]'") from e
    return plt


def page_name(row: dict[str, Any]) -> str:
    """A file name for a row's page that stays unique when two folders hold the same id."""
    digest = hashlib.sha1(row["path"].encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(row["record_id"]))[:80]
    return f"{stem}-{digest}.png"


def ecg_page(signal: np.ndarray, fs: float, leads: tuple[str, ...], row: dict[str, Any],
             out_dir: Path) -> Path:
    """Draw ``signal`` (``(n, leads)`` mV at ``fs``) as a 12-lead page into ``out_dir``; the
    page's path goes into ``row["page"]``."""
    plt = require_matplotlib()
    out_dir.mkdir(parents=True, exist_ok=True)
    col = {lead: k for k, lead in enumerate(leads)}
    seconds = 10.0
    n = min(len(signal), int(round(seconds * fs)))
    t = np.arange(n) / fs
    width_mm, height_mm = seconds * MM_PER_S + 12, 4 * ROW_MV * MM_PER_MV + 6
    fig = plt.figure(figsize=(width_mm / 25.4 * 1.1, height_mm / 25.4 * 1.1 + 0.5), dpi=100)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.86))
    x_of = lambda s: 12 + s * MM_PER_S  # noqa: E731  (mm from the left; 12 mm for the pulse)
    # the grid: 1 mm minor, 5 mm major lines, two collections (one artist per line is 10x
    # slower to draw)
    from matplotlib.collections import LineCollection

    xs, ys = np.arange(0, width_mm + 0.1, 1.0), np.arange(0, height_mm + 0.1, 1.0)
    for major, color, lw in ((False, "#f4c2c2", 0.3), (True, "#e88a8a", 0.6)):
        vx = xs[(xs % 5 == 0) == major]
        hy = ys[(ys % 5 == 0) == major]
        segs = [((x, 0), (x, height_mm)) for x in vx] + [((0, y), (width_mm, y)) for y in hy]
        ax.add_collection(LineCollection(segs, colors=color, linewidths=lw, zorder=0))
    shade = row.get("attr_seconds")
    if shade is not None and len(shade):
        top = max(1e-9, float(np.max(np.abs(shade))))
        for j, a in enumerate(shade):
            if a > 0:
                ax.axvspan(x_of(j), x_of(min(j + 1, seconds)), color="red",
                           alpha=0.25 * a / top, lw=0, zorder=0.5)
    rows = [*LAYOUT, ["II"]]
    for r, names in enumerate(rows):
        base = height_mm - (r + 0.5) * ROW_MV * MM_PER_MV - 3
        # calibration pulse: 1 mV for 0.2 s
        ax.plot([2, 3, 3, 8, 8, 9], [base, base, base + MM_PER_MV, base + MM_PER_MV, base, base],
                color="black", lw=0.8)
        per = seconds / len(names)
        for c, lead in enumerate(names):
            if lead not in col:
                continue
            a, b = int(round(c * per * fs)), int(round((c + 1) * per * fs))
            seg = signal[a:min(b, n), col[lead]]
            seg = seg - np.median(signal[:n, col[lead]])
            ax.plot(x_of(t[a:a + len(seg)]), base + seg * MM_PER_MV, color="black", lw=0.6)
            label = _LABEL.get(lead, lead)
            attr = row.get(f"attr_{lead}")
            if attr is not None and not (isinstance(attr, float) and np.isnan(attr)):
                label += f" {attr:+.2f}"
            ax.text(x_of(c * per) + 1, base + 0.4 * ROW_MV * MM_PER_MV, label, fontsize=7)
    ax.set_xlim(0, width_mm)
    ax.set_ylim(0, height_mm)
    ax.set_aspect("equal")  # 1 mm squares
    ax.set_xticks([])
    ax.set_yticks([])
    p = row.get("mi_probability")
    title = (f"{row['record_id']}   MI probability "
             f"{'-' if p is None else f'{p:.3f}'}   band {row.get('band') or '-'}   "
             f"quality {row.get('quality') or '-'}   25 mm/s, 10 mm/mV")
    issues = row.get("quality_issues")
    fig.suptitle(title + (f"\n{issues[:160]}" if issues else ""), fontsize=8, x=0.01,
                 ha="left")
    path = out_dir / page_name(row)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    row["page"] = str(path)
    return path
