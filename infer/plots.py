"""Standard 12-lead ECG pages (PNG) for the records a reviewer should look at.

Layout as printed by electrocardiographs: a 3 x 4 grid of 2.5 s per lead (I, II, III / aVR,
aVL, aVF / V1-V3 / V4-V6, each column the next 2.5 s) and a 10 s lead II rhythm strip below, at
25 mm/s and 10 mm/mV on a 1 mm / 5 mm grid, with a 1 mV calibration pulse at the start of each
row.  The title gives the record id, MI probability, band and quality, the line below it the
measured MI criteria (when the row has them) and the quality issues; with ``--explain`` the
seconds that drove the score are shaded (red: pushed it up) and each lead label carries its
attribution.

Drawn straight into 8-bit palette pixels at 4 px per mm, with numpy: the grid and pulses
are made once per process and copied into a reused buffer; text is rendered by Pillow's font
(the ``plots`` extra) once per word or glyph and per process, then stamped; the 13 traces are
drawn in one vectorised pass; the PNG is written here, its rows "up"-filtered and compressed
by ISA-L (``isal``, in the same extra).  Drawing and encoding a page cost 0.8-1.0 ms, under
a record's scoring, and in a nightly batch whose every record was flagged the pages took
0.5-0.85x the scoring time (``benchmarks/RESULTS.md``; matplotlib took 68 ms a page,
Pillow's drawing and PNG writer 7 ms).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from schemas import REFERRED_NOTE

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


#: the page: 10 s across at 25 mm/s after 12 mm for the pulses, four rows of 3 mV and a margin
SECONDS = 10.0
WIDTH_MM, HEIGHT_MM = int(SECONDS * MM_PER_S) + 12, int(4 * ROW_MV * MM_PER_MV) + 6
_BOTTOM = HEADER_PX + HEIGHT_MM * PX_PER_MM  # pixel row of 0 mm
_ROWS = [*LAYOUT, ["II"]]


def _x_px(seconds):
    """Pixel column of a time on the page (12 mm in, after the calibration pulse)."""
    return (12 + np.asarray(seconds) * MM_PER_S) * PX_PER_MM


def _baseline_mm(row: int) -> float:
    """Height of row ``row``'s baseline above the bottom of the grid, in mm."""
    return HEIGHT_MM - (row + 0.5) * ROW_MV * MM_PER_MV - 3


@functools.lru_cache(maxsize=1)
def _background() -> np.ndarray:
    """What every page shares, as palette indices ``(height, width)``: white, a 1 mm minor
    and a 5 mm major grid below the title band, and a 1 mV, 0.2 s calibration pulse two
    pixels wide at the start of each row.  Made once per process and copied for each page."""
    h, w = _BOTTOM + 1, WIDTH_MM * PX_PER_MM + 1
    img = np.zeros((h, w), np.uint8)
    grid = img[HEADER_PX:]
    for step, index in ((PX_PER_MM, 1), (5 * PX_PER_MM, 2)):
        grid[:, ::step] = index
        grid[::step, :] = index
    xs, ys = [], []
    for r in range(len(_ROWS)):
        base = _baseline_mm(r)
        x = np.array([2, 3, 3, 8, 8, 9], float) * PX_PER_MM
        y = _BOTTOM - np.array([base, base, base + MM_PER_MV, base + MM_PER_MV, base,
                                base]) * PX_PER_MM
        xs += [x, x + 1, x]  # two pixels wide
        ys += [y, y, y + 1]
    lengths = [len(x) for x in xs]
    _polylines(img, np.concatenate(xs), np.concatenate(ys), *_segments(lengths))
    img.setflags(write=False)
    return img


def _segments(lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """For polylines of ``lengths`` points laid end to end: the index of each segment's
    first point, and the last point of each line."""
    ends = np.cumsum(lengths) - 1
    starts = np.ones(int(ends[-1]) + 1, bool)
    starts[ends] = False
    return np.flatnonzero(starts), ends


def _polylines(pixels: np.ndarray, xs: np.ndarray, ys: np.ndarray, segments: np.ndarray,
               ends: np.ndarray) -> None:
    """Ink polylines (pixel coordinates ``xs``, ``ys``, their segments as :func:`_segments`
    gives them) into ``pixels``, one pixel wide and 8-connected: each segment is stepped at
    most a pixel at a time in x and y, every segment of the page in one vectorised pass
    (Pillow's line drawing, one call per trace, cost more in Python than in C)."""
    x0, y0 = xs[segments], ys[segments]
    dx, dy = xs[segments + 1] - x0, ys[segments + 1] - y0
    steps = np.ceil(np.maximum(np.abs(dx), np.abs(dy))).astype(np.intp)
    np.maximum(steps, 1, out=steps)
    k = np.arange(int(steps.sum())) - np.repeat(np.cumsum(steps) - steps, steps)
    xi = np.concatenate([np.repeat(x0, steps) + k * np.repeat(dx / steps, steps), xs[ends]])
    yi = np.concatenate([np.repeat(y0, steps) + k * np.repeat(dy / steps, steps), ys[ends]])
    h, w = pixels.shape
    xi, yi = np.rint(xi).astype(np.intp), np.rint(yi).astype(np.intp)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    pixels[yi[inside], xi[inside]] = _INK_INDEX


def _spans(pixels: np.ndarray, columns: np.ndarray, ys: np.ndarray, ends: np.ndarray) -> None:
    """:func:`_polylines` for traces laid end to end (``ends``: the last point of each) whose
    samples lie at most a pixel column apart: each segment is the vertical run of pixels in
    its first sample's column, from its first row up to (not including) its last, which the
    next segment starts from one column on, so the trace stays 8-connected; a trace's last
    point is a run of one.  The runs' pixel addresses come out of one running sum (3 passes
    over the pixels instead of 10).  ``ys`` must lie on the page."""
    w = np.int32(pixels.shape[1])
    rows = np.rint(ys).astype(np.int32)
    start = rows * w + columns
    rise = rows[1:] - rows[:-1]
    rise[ends[:-1]] = 0  # no run from one trace to the next
    steps = np.append(np.maximum(np.abs(rise), 1), 1)
    stride = np.append(np.sign(rise) * w, 0)
    step = np.repeat(stride, steps)
    first = np.cumsum(steps) - steps
    # each run's first address, as a jump from the previous run's last
    step[first[1:]] = start[1:] - (start[:-1] + (steps[:-1] - 1) * stride[:-1])
    step[0] = start[0]
    pixels.reshape(-1)[np.cumsum(step)] = _INK_INDEX


@functools.lru_cache(maxsize=8)
def _traces(fs: float, n: int, leads: tuple[str, ...], width: int) -> dict[str, Any]:
    """Where each sample of a page goes, for ``n`` samples at ``fs`` of ``leads`` (the first
    columns of a ``width``-column signal): the samples to take (flat indices), their leads,
    pixel columns and baselines, the segments between them, and each lead label's place.
    The same for every page of a night, so worked out once."""
    col = {lead: k for k, lead in enumerate(leads)}
    rows, cols, base, labels, lengths = [], [], [], [], []
    for r, names in enumerate(_ROWS):
        per = SECONDS / len(names)
        for c, lead in enumerate(names):
            if lead not in col:
                continue
            a, b = int(round(c * per * fs)), min(int(round((c + 1) * per * fs)), n)
            if b > a:
                rows.append(np.arange(a, b))
                cols.append(np.full(b - a, col[lead]))
                base.append(np.full(b - a, _BOTTOM - _baseline_mm(r) * PX_PER_MM))
                lengths.append(b - a)
            label_y = _BOTTOM - (_baseline_mm(r) + 0.4 * ROW_MV * MM_PER_MV) * PX_PER_MM
            labels.append((lead, float(_x_px(c * per)) + PX_PER_MM, float(label_y) - 14))
    if not lengths:
        return {"take": None, "labels": labels}
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    segments, ends = _segments(lengths)
    xs = _x_px(rows / fs)
    columns = np.rint(xs).astype(np.int32)
    return {"take": rows * width + cols, "cols": cols, "xs": xs, "columns": columns,
            # a pixel column or less between samples (100 Hz and up): spans suffice
            "dense": bool(np.all(np.abs(columns[segments + 1] - columns[segments]) <= 1)),
            "base": np.concatenate(base), "segments": segments, "ends": ends,
            "labels": labels}


#: each thread's page and PNG row buffers, reused page after page (fresh 600 kB arrays cost
#: more in page faults than the drawing)
_scratch = threading.local()


def _buffers(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None or bufs[0].shape != shape:
        bufs = _scratch.bufs = (np.empty(shape, np.uint8),
                                np.empty((shape[0], shape[1] + 1), np.uint8))
    return bufs


@functools.lru_cache(maxsize=1)
def _deflate():
    """zlib compression at level 1: ISA-L's (the ``plots`` extra; a page in 0.2 ms) or, where
    it is missing, the standard library's (2 ms)."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover (isal comes with the plots extra)
        return functools.partial(zlib.compress, level=1)
    return functools.partial(isal_zlib.compress, level=1)


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(tag))
    return b"".join([struct.pack(">I", len(data)), tag, data, struct.pack(">I", crc)])


def png_bytes(pixels: np.ndarray, raw: np.ndarray | None = None) -> bytes:
    """An 8-bit palette PNG of ``pixels`` (indices into :func:`_palette`), its filtered rows
    built in ``raw`` (``(height, width + 1)``) if given.  Each row is filtered as its
    difference from the row above (PNG filter 2, "up"): the grid repeats down the page, so
    most rows become zeros and compress in a fraction of the time."""
    h, w = pixels.shape
    if raw is None:
        raw = np.empty((h, w + 1), np.uint8)
    raw[:, 0] = 2
    raw[0, 0] = 0
    raw[0, 1:] = pixels[0]
    np.subtract(pixels[1:], pixels[:-1], out=raw[1:, 1:])  # modulo 256, as PNG wants
    return b"".join([_png_head(h, w), _chunk(b"IDAT", _deflate()(raw)),  # raw: no copy
                     _chunk(b"IEND", b"")])


@functools.lru_cache(maxsize=4)
def _png_head(h: int, w: int) -> bytes:
    """The signature, header and palette of an ``h`` x ``w`` page."""
    return b"".join([b"\x89PNG\r\n\x1a\n",
                     _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)),
                     _chunk(b"PLTE", bytes(_palette()))])


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


@functools.lru_cache(maxsize=4096)
def _ink(text: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns of ``text``'s ink from its top-left corner, as Pillow draws it.
    Words and glyphs repeat from page to page, so each is rendered once per process
    (FreeType calls were a third of a page's cost)."""
    mask, dx, dy = _render(text, size)
    rows, cols = np.nonzero(mask)
    return (rows + dy).astype(np.int32), (cols + dx).astype(np.int32)


@functools.lru_cache(maxsize=4096)
def _advance(text: str, size: int) -> float:
    """How far the pen moves over ``text``."""
    return float(_font(size).getlength(text))


@functools.lru_cache(maxsize=16384)
def _word(word: str, size: int) -> tuple[np.ndarray, np.ndarray, float, tuple | None]:
    """A word's ink (as :func:`_ink` gives it), its advance, and the first and last row and
    column of its ink (None: no ink).  A word without digits ("aVR", "probability",
    "borderline") is Pillow's rendering of it whole; one with digits (record ids,
    probabilities, attributions, which seldom repeat) is set from its glyphs, each at the pen
    position the advances before it give (rendering each new one costs 0.7 ms)."""
    if not _DIGIT.search(word):
        rows, cols = _ink(word, size)
        advance = _advance(word, size)
    else:
        parts, pen = [], 0.0
        for glyph in word:
            r, c = _ink(glyph, size)
            parts.append((r, c + int(round(pen))))
            pen += _advance(glyph, size)
        rows = np.concatenate([r for r, _ in parts])
        cols = np.concatenate([c for _, c in parts]).astype(np.int32)
        advance = pen
    box = (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) if len(rows) \
        else None
    return rows, cols, advance, box


def _text_ink(x: float, y: float, text: str, size: int) -> list[tuple[str, int, int, int]]:
    """The ink of ``text`` with its top-left at ``(x, y)`` (rounded to pixels), as pieces
    ``(word, size, y, x)``: word by word (:func:`_word`), each at the pen position the
    advances before it give.  Pillow's layout of the whole line may place a glyph a pixel
    apart."""
    x0, y0 = int(round(x)), int(round(y))
    pieces, pen, space = [], 0.0, _advance(" ", size)
    for word in text.split(" "):
        if word:
            pieces.append((word, size, y0, x0 + int(round(pen))))
            pen += _word(word, size)[2]
        pen += space
    return pieces


@functools.lru_cache(maxsize=16384)
def _word_flat(word: str, size: int, width: int) -> np.ndarray:
    """A word's ink as offsets into the pixels of a ``width``-column page."""
    rows, cols, _, _ = _word(word, size)
    return rows * np.int32(width) + cols


def _put_ink(pixels: np.ndarray, pieces: list[tuple[str, int, int, int]]) -> None:
    """Ink the pixels of every piece :func:`_text_ink` gives in one pass; a piece that runs
    off the page is clipped at its edges."""
    h, w = pixels.shape
    flats, offsets, sizes = [], [], []
    for word, size, y, x in pieces:
        rows, cols, _, box = _word(word, size)
        if box is None:
            continue
        if box[0] + y >= 0 and box[1] + y < h and box[2] + x >= 0 and box[3] + x < w:
            flat = _word_flat(word, size, w)
            flats.append(flat)
            offsets.append(y * w + x)
            sizes.append(len(flat))
        else:
            rows, cols = rows + y, cols + x
            inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
            pixels[rows[inside], cols[inside]] = _INK_INDEX
    if flats:
        pixels.reshape(-1)[np.concatenate(flats) + np.repeat(offsets, sizes)] = _INK_INDEX


_DIGIT = re.compile(r"\d")


def page_name(row: dict[str, Any]) -> str:
    """A file name for a row's page that stays unique when two folders hold the same id."""
    digest = hashlib.sha1(row["path"].encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(row["record_id"]))[:80]
    return f"{stem}-{digest}.png"


def ecg_page(signal: np.ndarray, fs: float, leads: tuple[str, ...], row: dict[str, Any],
             out_dir: Path) -> Path:
    """Draw ``signal`` (``(n, leads)`` mV at ``fs``) as a 12-lead page into ``out_dir``
    (through a temporary name); the page's path goes into ``row["page"]``."""
    path = out_dir / page_name(row)
    tmp = out_dir / f".{path.name}.tmp-{os.getpid()}.png"
    data = memoryview(page_png(signal, fs, leads, row))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:  # the first page of the folder (a stat per page cost more)
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:  # a full disk leaves no half page behind
        tmp.unlink(missing_ok=True)
        raise
    row["page"] = str(path)
    return path


def page_png(signal: np.ndarray, fs: float, leads: tuple[str, ...],
             row: dict[str, Any]) -> bytes:
    """The PNG of :func:`ecg_page`, in memory (Pillow, the ``plots`` extra, renders the text's
    words and glyphs the first time each is needed)."""
    n = min(len(signal), int(round(SECONDS * fs)))
    background = _background()
    pixels, raw = _buffers(background.shape)
    offset = _shading(row.get("attr_seconds"), pixels.shape[1])
    if offset is None:
        np.copyto(pixels, background)
    else:  # the grid and its shading in one pass
        np.copyto(pixels[:HEADER_PX], background[:HEADER_PX])
        np.add(background[HEADER_PX:], offset, out=pixels[HEADER_PX:])
    ink = _text_ink(8, 5, page_title(row), 14)
    second = [t for t in (criteria_text(row), row.get("quality_issues")) if t]
    if second:
        ink += _text_ink(8, 24, _fit_line("   ".join(second), 190), 13)
    layout = _traces(float(fs), n, tuple(leads), signal.shape[1])
    for lead, x, y in layout["labels"]:
        label = _LABEL.get(lead, lead)
        attr = row.get(f"attr_{lead}")
        if attr is not None and not (isinstance(attr, float) and np.isnan(attr)):
            label += f" {attr:+.2f}"
        ink += _text_ink(x, y, label, 13)
    _put_ink(pixels, ink)
    if layout["take"] is not None:
        _draw_traces(pixels, _trace_rows(signal, n, layout), layout)
    return png_bytes(pixels, raw)


def _fit_line(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with " ..." when cut
    (a word is never cut in two: "depression" must not print as "depressio")."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 3)
    return (text[:cut] if cut > 0 else text[: limit - 4]).rstrip(" ;,") + " ..."


def page_title(row: dict[str, Any]) -> str:
    """The page's first line: record, MI probability, band (and, for a record the scorer
    referred whatever its probability, that it was), quality, paper speed and gain."""
    p = row.get("mi_probability")
    band = row.get("band") or "-"
    if REFERRED_NOTE in (row.get("message") or ""):
        band += " (referred: LBBB shape)"
    return (f"{row['record_id']}   MI probability {'-' if p is None else f'{p:.3f}'}   "
            f"band {band}   quality {row.get('quality') or '-'}   25 mm/s, 10 mm/mV")


def criteria_text(row: dict[str, Any]) -> str:
    """The measured MI criteria of a results row in one line (empty without them)."""
    words = row.get("mi_criteria")
    if not words:
        return ""
    extra = []
    if row.get("st_max_mv") is not None:
        extra.append(f"ST {row['st_min_mv']:+.2f} to {row['st_max_mv']:+.2f} mV")
    if row.get("median_qrs_ms") is not None:
        extra.append(f"QRS {row['median_qrs_ms']:.0f} ms")
    return "   ".join([words, *extra])


def _trace_rows(signal: np.ndarray, n: int, layout: dict[str, Any]) -> np.ndarray:
    """The pixel row of every sample the page shows (:func:`_traces`' order): each lead
    about its median, at 10 mm/mV, kept on the page; samples that are not numbers lie on
    the baseline."""
    # the median of an odd number of samples, every 4th at 100 Hz
    sample = signal[:n:max(1, n // 250)]
    sample = sample[: len(sample) - 1 + len(sample) % 2]
    middle = np.partition(sample, len(sample) // 2, axis=0)[len(sample) // 2]
    cols = layout["cols"]
    volts = np.take(signal, layout["take"]) - middle[cols]  # row-major (n, leads)
    ys = layout["base"] - volts * (MM_PER_MV * PX_PER_MM)
    np.clip(ys, HEADER_PX, _BOTTOM, out=ys)  # a wild lead stays on its page
    gaps = np.isnan(ys)
    if gaps.any():
        ys[gaps] = layout["base"][gaps]
    return ys


def _draw_traces(pixels: np.ndarray, ys: np.ndarray, layout: dict[str, Any]) -> None:
    """Ink the traces at rows ``ys`` (:func:`_trace_rows`)."""
    if layout["dense"]:
        _spans(pixels, layout["columns"], ys, layout["ends"])
    else:  # under 100 Hz
        _polylines(pixels, layout["xs"], ys, layout["segments"], layout["ends"])


def _shading(seconds, width: int) -> np.ndarray | None:
    """The palette offset of each pixel column that shades the seconds which pushed the
    score up (red, in ``_SHADES`` steps of their share of the largest), or None."""
    if seconds is None or not len(seconds):
        return None
    share = [float(a) for a in seconds[: int(SECONDS)]]  # ten numbers: plain Python
    top = max(1e-9, max(abs(a) for a in share))
    offset = None
    for j, a in enumerate(share):
        if a > 0:
            if offset is None:
                offset = np.zeros(width, np.uint8)
            level = math.ceil(_SHADES * a / top)
            offset[_SECOND_COLUMNS[j]:_SECOND_COLUMNS[j + 1]] = 4 + 3 * (level - 1)
    return offset


#: the first pixel column of each second on the page, and the end of the last
_SECOND_COLUMNS = [int(_x_px(j)) for j in range(int(SECONDS) + 1)]
