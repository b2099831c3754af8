"""ECG pages (infer/plots.py) drawn from shipped records: the traces, the PNG writer and the
atomic write, independently of any model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SAMPLE
from PIL import Image
from scipy import ndimage

from common.records import read_record
from infer import plots
from schemas import LEADS

RECORDS = sorted(SAMPLE.glob("records100/*/*.hea"))[:6]


def _page(signal, fs, row=None, tmp_path=None):
    """Draw a page and return its palette indices as Pillow decodes them."""
    row = {"record_id": "rec", "path": "/x/rec", **(row or {})}
    path = plots.ecg_page(signal, fs, LEADS, row, tmp_path)
    with Image.open(path) as img:
        assert img.mode == "P" and img.format == "PNG"
        return np.asarray(img), img.getpalette()


def _trace_ink(signal: np.ndarray, fs: float):
    """Only the traces of a page, drawn onto an empty canvas the page's size: the ink, the
    layout and the samples' pixel rows."""
    n = min(len(signal), int(round(plots.SECONDS * fs)))
    layout = plots._traces(float(fs), n, LEADS, signal.shape[1])
    canvas = np.zeros(plots._background().shape, np.uint8)
    ys = plots._trace_rows(signal, n, layout)
    plots._draw_traces(canvas, ys, layout)
    return canvas == plots._INK_INDEX, layout, ys


@pytest.mark.parametrize("fs, step", [(100.0, 1), (500.0, 1), (50.0, 2)])
def test_each_trace_is_one_connected_line_through_every_sample(fs, step):
    """13 traces (12 leads and the rhythm strip), each one 8-connected line that passes
    through the pixel of every sample it shows: at 100 Hz (a pixel column a sample), 500 Hz
    (five samples a column) and 50 Hz (two columns a sample: the general line drawer)."""
    for hea in RECORDS[:3]:
        if fs == 500.0:
            hea = SAMPLE / "records500" / hea.parent.name / hea.name.replace("_lr", "_hr")
        signal = read_record(hea.with_suffix("")).to_millivolts()[::step]
        ink, layout, ys = _trace_ink(signal, fs)
        assert layout["dense"] == (fs >= 100)
        labels, count = ndimage.label(ink, structure=np.ones((3, 3)))
        # traces may touch each other (the rhythm strip repeats lead II, rows are close):
        # at most 13 pieces, and every sample's pixel is inked
        assert 1 <= count <= 13
        rows, cols = np.rint(ys).astype(int), np.rint(layout["xs"]).astype(int)
        assert ink[rows, cols].all()
        # one connected piece from each trace's first sample to its last
        starts = np.concatenate([[0], layout["ends"][:-1] + 1])
        for a, b in zip(starts, layout["ends"], strict=True):
            assert labels[rows[a], cols[a]] == labels[rows[b], cols[b]] != 0
        # and nothing more: no more pixels than the steps between samples, all on the grid
        s = layout["segments"]  # (s, s + 1): two samples of one trace
        steps = np.maximum(np.abs(rows[s + 1] - rows[s]), np.abs(cols[s + 1] - cols[s]))
        assert ink.sum() <= steps.clip(min=1).sum() + len(layout["ends"])
        assert not ink[: plots.HEADER_PX].any() and not ink[:, : cols.min()].any()


def test_png_decodes_to_the_pixels_and_palette_drawn(monkeypatch):
    """The PNG written here (rows "up"-filtered, ISA-L's deflate) decodes in Pillow to exactly
    the palette indices drawn, with the page's palette; the standard library's zlib (what
    runs without isal) gives the same image."""
    import functools
    import zlib

    assert plots._deflate().func.__module__.startswith("isal")  # the extra is in use
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 28, (37, 53), dtype=np.uint8)
    pixels[10:20] = pixels[9]  # repeated rows, as on a page
    images = [plots.png_bytes(pixels)]
    monkeypatch.setattr(plots, "_deflate", lambda: functools.partial(zlib.compress, level=1))
    images.append(plots.png_bytes(pixels))
    for data in images:
        with Image.open(io.BytesIO(data)) as img:
            np.testing.assert_array_equal(np.asarray(img), pixels)
            assert img.getpalette()[: 3 * 28] == plots._palette()[: 3 * 28]


def test_page_pixels_are_the_background_text_and_traces(tmp_path):
    """A shipped record's page: where there is no text, the decoded page is the grid with the
    traces over it, pixel for pixel; a shaded second changes the grid's colours only inside
    that second's columns; and no temporary file is left behind."""
    signal = read_record(RECORDS[0].with_suffix("")).to_millivolts()
    page, palette = _page(signal, 100.0, tmp_path=tmp_path)
    ink, _, _ = _trace_ink(signal, 100.0)
    want = np.where(ink, plots._INK_INDEX, plots._background())
    text = page != want
    assert text[plots.HEADER_PX:].sum() < 0.01 * text.size  # only the lead labels differ
    assert (page[text] == plots._INK_INDEX).all()  # and they are ink
    shaded, _ = _page(signal, 100.0, {"attr_seconds": [0, 0, 0.4, 0, 0, 0, 0, 0, 0, 0.1]},
                      tmp_path)
    changed = np.flatnonzero((shaded != page).any(axis=0))
    x2, x3 = int(plots._x_px(2)), int(plots._x_px(3))
    x9, x10 = int(plots._x_px(9)), int(plots._x_px(10))
    assert set(changed) == set(range(x2, x3)) | set(range(x9, x10))
    # the stronger second is the deeper red: on the white paper of both seconds' columns
    rgb = np.asarray(palette).reshape(-1, 3)
    grid = slice(plots.HEADER_PX, None)
    white = (page[grid, x2 + 1] == 0) & (page[grid, x9 + 1] == 0)
    assert white.sum() > 100
    green = [rgb[shaded[grid, x][white]][:, 1] for x in (x2 + 1, x9 + 1)]
    assert (green[0] < green[1]).all() and (green[1] < 255).all()
    assert [p.name for p in tmp_path.iterdir()] == [plots.page_name({"record_id": "rec",
                                                                     "path": "/x/rec"})]


def test_a_page_into_a_missing_folder_makes_it(tmp_path):
    signal = read_record(RECORDS[1].with_suffix("")).to_millivolts()
    row = {"record_id": "r", "path": "/x/r"}
    path = plots.ecg_page(signal, 100.0, LEADS, row, tmp_path / "a" / "b")
    assert path.is_file() and row["page"] == str(path)


def test_samples_that_are_not_numbers_are_drawn_on_the_baseline(tmp_path):
    """A lead with gaps (NaN) or infinities still gets its page: gaps on the baseline,
    infinities at the page's edge, nothing written outside the grid."""
    signal = read_record(RECORDS[2].with_suffix("")).to_millivolts()
    clean, _ = _page(signal, 100.0, tmp_path=tmp_path)
    signal[100:300, 0] = np.nan
    signal[400, 1] = np.inf
    page, _ = _page(signal, 100.0, tmp_path=tmp_path)
    layout = plots._traces(100.0, 1000, LEADS, 12)
    lead_i = np.flatnonzero(layout["take"] % 12 == 0)[:250]  # lead I's first 2.5 s
    gap = lead_i[100:299]  # its samples 100-298 and their runs to the next sample
    base_row = int(round(layout["base"][gap[0]]))
    cols = layout["columns"][gap]
    assert (page[base_row, cols] == plots._INK_INDEX).all()
    assert (page[plots.HEADER_PX:] != clean[plots.HEADER_PX:]).any()
    assert not (page[: plots.HEADER_PX] != clean[: plots.HEADER_PX]).any()


def test_the_criteria_line_is_cut_between_words():
    """A long criteria and quality line is cut at a word boundary, never inside a word."""
    from infer.plots import _fit_line

    text = ("pathological Q inferior (II,III,AVF); ST elevation anterior (V1,V2,V3,V4); ST "
            "depression lateral (I,AVL,V5,V6); T inversion lateral (I,AVL,V5,V6); poor R "
            "progression   ST -0.21 to +0.34 mV   QRS 96 ms   baseline wander in V1")
    for limit in (40, 100, 150, len(text) - 1):
        line = _fit_line(text, limit)
        assert len(line) <= limit and line.endswith(" ...")
        words = {w.rstrip(";,") for w in text.split()}
        assert {w.rstrip(";,") for w in line[:-4].split()} <= words, line
    assert _fit_line(text, len(text)) == text
    assert _fit_line("x" * 50, 20) == "x" * 16 + " ..."
