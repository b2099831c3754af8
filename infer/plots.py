"""Standard 12-lead ECG pages (PNG) for the records a reviewer should look at.

Layout as printed by electrocardiographs: a 3 x 4 grid of 2.5 s per lead (I, II, III / aVR,
aVL, aVF / V1-V3 / V4-V6, each column the next 2.5 s) and a 10 s lead II rhythm strip below, at
25 mm/s and 10 mm/mV on a 1 mm / 5 mm grid, with a 1 mV calibration pulse at the start of each
row.  The title gives the record id, MI probability, band and quality; with ``--explain`` the
seconds that drove the score are shaded (red: pushed it up) and each lead label carries its
attribution.

Drawn straight into pixels with Pillow (the ``plots`` extra) at 4 px per mm: the grid is made
once per process and copied, lead labels and glyphs are rendered once per process and
stamped as masks, each trace is one polyline, and the PNG is written with fast compression.
A page costs a few milliseconds (matplotlib took 68 ms), so that a night with thousands of
flagged records gets its pages in seconds.
"""

from __future__ import annotations

import functools
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


#: pixels per millimetre of paper, and the band above the grid for the title
PX_PER_MM = 4
HEADER_PX = 44
_MINOR, _MAJOR, _INK = (0xF7, 0xD4, 0xD4), (0xE8, 0x8A, 0x8A), (0, 0, 0)


class PlotExtraMissing(ImportError):
    """Pillow is not installed."""


def require_pillow():
    """Pillow's image, drawing and font modules (the ``plots`` extra), or PlotExtraMissing
    with the install command."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as e:
        raise PlotExtraMissing("ECG pages need Pillow: pip install 'mi-screen[plots]'") from e
    return Image, ImageDraw, ImageFont


#: shading strengths: attribution shares quantised to this many levels of red
_SHADES = 8
_WHITE = (255, 255, 255)
_INK_INDEX = 3  # palette: 0 white, 1 minor grid, 2 major grid, 3 ink, then the shaded three


@functools.lru_cache(maxsize=1)
def _palette() -> list[int]:
    """The page's 8-bit palette: the background colours, ink, and each background colour
    blended with red at every shading level (alpha up to 0.25)."""
    colors = [_WHITE, _MINOR, _MAJOR, _INK]
    for level in range(1, _SHADES + 1):
        alpha = 0.25 * level / _SHADES
        colors += [tuple(round(c * (1 - alpha) + r * alpha) for c, r in zip(bg, (255, 0, 0),
                                                                             strict=True))
                   for bg in (_WHITE, _MINOR, _MAJOR)]
    return [v for c in colors for v in c]


@functools.lru_cache(maxsize=4)
def _grid(width_mm: int, height_mm: int) -> np.ndarray:
    """The page's background as palette indices ``(height, width)``: white, a 1 mm minor and
    a 5 mm major grid below the title band.  Made once per page size and copied for each
    page (an 8-bit page encodes to PNG three times faster than RGB)."""
    h, w = HEADER_PX + height_mm * PX_PER_MM + 1, width_mm * PX_PER_MM + 1
    img = np.zeros((h, w), np.uint8)
    grid = img[HEADER_PX:]
    for step, index in ((PX_PER_MM, 1), (5 * PX_PER_MM, 2)):
        grid[:, ::step] = index
        grid[::step, :] = index
    img.setflags(write=False)
    return img


@functools.lru_cache(maxsize=2)
def _font(size: int):
    _, _, font = require_pillow()
    try:
        return font.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:  # pragma: no cover (older Pillow)
        return font.load_default()


def _render(text: str, size: int) -> tuple[np.ndarray, int, int]:
    """``text`` as Pillow draws it on a palette image (no anti-aliasing, the same glyph
    positions): a boolean mask and its offset from the text's top-left corner."""
    image, draw_module, _ = require_pillow()
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    if right <= left or bottom <= top:
        return np.zeros((0, 0), bool), 0, 0
    img = image.new("1", (right - left, bottom - top), 0)
    draw_module.Draw(img).text((-left, -top), text, fill=1, font=font)
    return np.array(img, dtype=bool), left, top


#: lead labels ("aVR", "V2 +0.13") repeat from page to page: each is rendered once per
#: process (FreeType calls were a third of a page's cost)
_label = functools.lru_cache(maxsize=4096)(_render)


@functools.lru_cache(maxsize=512)
def _glyph(char: str, size: int) -> tuple[np.ndarray, int, int, float]:
    """One character: its mask and offset as :func:`_render` gives them, and its advance."""
    mask, dx, dy = _render(char, size)
    return mask, dx, dy, float(_font(size).getlength(char))


def _stamp(pixels: np.ndarray, x0: int, y0: int, mask: np.ndarray) -> None:
    """Set the pixels under ``mask`` (its top-left at ``(x0, y0)``) to ink, clipped at the
    page's edges."""
    height, width = pixels.shape
    h, w = mask.shape
    cx0, cy0 = max(0, -x0), max(0, -y0)
    cx1, cy1 = min(w, width - x0), min(h, height - y0)
    if cx1 > cx0 and cy1 > cy0:
        region = pixels[y0 + cy0 : y0 + cy1, x0 + cx0 : x0 + cx1]
        region[mask[cy0:cy1, cx0:cx1]] = _INK_INDEX


def _text(pixels: np.ndarray, x: float, y: float, text: str, size: int,
          label: bool = True) -> None:
    """Write ``text`` in ink into the page's palette indices, its top-left at ``(x, y)``
    (rounded to pixels).  A label is stamped whole from the cache, exactly as Pillow draws
    it; other text (titles, which never repeat) character by character from cached glyphs,
    each at the pen position the characters' advances give (Pillow's own layout may place a
    glyph a pixel apart; rendering a title whole cost 5 ms)."""
    x0, y0 = int(round(x)), int(round(y))
    if label:
        mask, dx, dy = _label(text, size)
        if mask.size:
            _stamp(pixels, x0 + dx, y0 + dy, mask)
        return
    pen = 0.0
    for char in text:
        mask, dx, dy, advance = _glyph(char, size)
        if mask.size:
            _stamp(pixels, x0 + int(round(pen)) + dx, y0 + dy, mask)
        pen += advance


def page_name(row: dict[str, Any]) -> str:
    """A file name for a row's page that stays unique when two folders hold the same id."""
    digest = hashlib.sha1(row["path"].encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(row["record_id"]))[:80]
    return f"{stem}-{digest}.png"


def ecg_page(signal: np.ndarray, fs: float, leads: tuple[str, ...], row: dict[str, Any],
             out_dir: Path) -> Path:
    """Draw ``signal`` (``(n, leads)`` mV at ``fs``) as a 12-lead page into ``out_dir``; the
    page's path goes into ``row["page"]``."""
    image, draw_module, _ = require_pillow()
    out_dir.mkdir(parents=True, exist_ok=True)
    col = {lead: k for k, lead in enumerate(leads)}
    seconds = 10.0
    n = min(len(signal), int(round(seconds * fs)))
    width_mm, height_mm = int(seconds * MM_PER_S) + 12, int(4 * ROW_MV * MM_PER_MV) + 6
    bottom = HEADER_PX + height_mm * PX_PER_MM  # y of 0 mm

    def px(x_mm, y_mm):
        """Paper millimetres (y up from the bottom) to pixel columns and rows."""
        return np.asarray(x_mm) * PX_PER_MM, bottom - np.asarray(y_mm) * PX_PER_MM

    def x_of(s):
        return 12 + np.asarray(s) * MM_PER_S  # mm from the left; 12 mm for the pulse

    pixels = _grid(width_mm, height_mm).copy()
    shade = row.get("attr_seconds")
    if shade is not None and len(shade):  # the seconds that pushed the score up, in red
        top = max(1e-9, float(np.max(np.abs(shade))))
        for j, a in enumerate(shade):
            level = int(np.ceil(_SHADES * a / top)) if a > 0 else 0
            if level:
                x0, _ = px(x_of(j), 0)
                x1, _ = px(x_of(min(j + 1, seconds)), 0)
                pixels[HEADER_PX:, int(x0) : int(x1)] += np.uint8(4 + 3 * (level - 1))
    p = row.get("mi_probability")
    title = (f"{row['record_id']}   MI probability "
             f"{'-' if p is None else f'{p:.3f}'}   band {row.get('band') or '-'}   "
             f"quality {row.get('quality') or '-'}   25 mm/s, 10 mm/mV")
    _text(pixels, 8, 5, title, 14, label=False)
    issues = row.get("quality_issues")
    if issues:
        _text(pixels, 8, 24, issues[:160], 13, label=False)
    lines = []  # (points, width) drawn once the labels are in
    t = np.arange(n) / fs
    middle = np.median(signal[:n], axis=0) if n else np.zeros(signal.shape[1])
    for r, names in enumerate([*LAYOUT, ["II"]]):
        base = height_mm - (r + 0.5) * ROW_MV * MM_PER_MV - 3
        # calibration pulse: 1 mV for 0.2 s
        xs, ys = px([2, 3, 3, 8, 8, 9], [base, base, base + MM_PER_MV, base + MM_PER_MV, base,
                                         base])
        lines.append((np.column_stack([xs, ys]).ravel().tolist(), 2))
        per = seconds / len(names)
        for c, lead in enumerate(names):
            if lead not in col:
                continue
            a, b = int(round(c * per * fs)), int(round((c + 1) * per * fs))
            seg = signal[a:min(b, n), col[lead]]
            seg = seg - middle[col[lead]]
            xs, ys = px(x_of(t[a:a + len(seg)]), base + seg * MM_PER_MV)
            ys = np.clip(ys, HEADER_PX, bottom)  # a wild lead stays on its page
            if len(seg) > 1:
                lines.append((np.column_stack([xs, ys]).ravel().tolist(), 1))
            label = _LABEL.get(lead, lead)
            attr = row.get(f"attr_{lead}")
            if attr is not None and not (isinstance(attr, float) and np.isnan(attr)):
                label += f" {attr:+.2f}"
            lx, ly = px(x_of(c * per) + 1, base + 0.4 * ROW_MV * MM_PER_MV)
            _text(pixels, float(lx), float(ly) - 14, label, 13)
    img = image.fromarray(pixels, mode="P")
    img.putpalette(_palette())
    draw = draw_module.Draw(img)
    for points, width in lines:
        draw.line(points, fill=_INK_INDEX, width=width)
    path = out_dir / page_name(row)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    img.save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)
    row["page"] = str(path)
    return path
