"""--explain (occlusion attributions with onnxruntime) and --plots (ECG pages), on shipped
records."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import SAMPLE

from infer import Model, ScoreOptions, score_dir
from infer.explain import occluded, occlusion
from infer.readers import read_wfdb
from schemas import LEADS, RESULTS_SCHEMA, ExitCode

HEAS = sorted(SAMPLE.glob("records100/*/*.hea"))[:12]


@pytest.fixture(scope="module")
def model(trained) -> Model:
    return Model(trained[2])


def _signal(model: Model, hea):
    raw = read_wfdb(str(hea))
    x = raw.signal.astype(np.float32)  # PTB-XL leads are already in the model's order
    w = model.contract.windows
    return x, w.starts(len(x)), w.length


def test_occluding_everything_gives_the_baseline_probability(model):
    x, starts, length = _signal(model, HEAS[0])
    zeros = model.predict(np.zeros((1, length, 12), np.float32))[0]
    assert occluded(model, x, starts, length) == pytest.approx(float(zeros), abs=1e-6)
    # occluding nothing gives the record's own probability
    p, leads, seconds = occlusion(model, x, starts, length, model.contract.fs)
    assert occluded(model, x, starts, length, leads=[], span=(0, 0)) == pytest.approx(p, abs=1e-6)
    # each lead's attribution is the fall when that lead alone is zeroed
    for k in (0, 6, 11):
        assert leads[k] == pytest.approx(p - occluded(model, x, starts, length, leads=[k]),
                                         abs=1e-6)
    assert seconds[3] == pytest.approx(p - occluded(model, x, starts, length,
                                                    span=(300, 400)), abs=1e-6)
    assert len(seconds) == 10 and len(leads) == 12


def test_attributions_are_deterministic_and_match_the_scored_probability(model, tmp_path):
    for hea in HEAS[:2]:
        for ext in (".hea", ".dat"):
            shutil.copy(hea.with_suffix(ext), tmp_path)
    a = score_dir(tmp_path, model, options=ScoreOptions(explain=True))[0]
    b = score_dir(tmp_path, model, options=ScoreOptions(explain=True))[0]
    assert a.schema.equals(RESULTS_SCHEMA)
    cols = ["mi_probability", *(f"attr_{lead}" for lead in LEADS), "attr_seconds"]
    assert a.select(cols).equals(b.select(cols))  # bit for bit, run to run
    df = a.to_pandas().set_index("record_id")
    for rid, row in df.iterrows():
        x, starts, length = _signal(model, SAMPLE / "records100" / "00000" / f"{rid}.hea")
        p, leads, _ = occlusion(model, x, starts, length, model.contract.fs)
        assert row["mi_probability"] == pytest.approx(p, abs=1e-5)
        np.testing.assert_allclose([row[f"attr_{lead}"] for lead in LEADS], leads, atol=1e-5)
        assert len(row["attr_seconds"]) == 10
    plain = score_dir(tmp_path, model)[0].to_pandas()
    assert plain["attr_I"].isna().all() and plain["attr_seconds"].isna().all()


def test_plots_page_every_flagged_and_rejected_record(trained, tmp_path, monkeypatch):
    from infer.cli import cli

    folder = tmp_path / "in"
    folder.mkdir()
    for hea in HEAS:
        for ext in (".hea", ".dat"):
            shutil.copy(hea.with_suffix(ext), folder)
    pd.DataFrame(np.zeros((1000, 12)), columns=list(LEADS)).to_csv(folder / "flat.csv",
                                                                   index=False)
    pages = tmp_path / "pages"
    out = tmp_path / "r.parquet"
    r = CliRunner().invoke(cli, ["score", "--model", str(trained[2]), "--input", str(folder),
                                 "--out", str(out), "--plots", str(pages), "--explain"])
    assert r.exit_code == ExitCode.PARTIAL, r.output  # the flat record is an error
    df = pd.read_parquet(out).set_index("record_id")
    flagged = df["band"].isin(["MI", "borderline"]) | (df["quality"] == "unusable")
    assert flagged.sum() >= 2 and df.loc["flat", "page"]  # rejected records get a page too
    assert df.loc[flagged, "page"].notna().all() and df.loc[~flagged, "page"].isna().all()
    assert sorted(p.name for p in pages.iterdir()) == sorted(
        pd.Series(df.loc[flagged, "page"]).map(lambda p: p.rsplit("/", 1)[-1]))
    from PIL import Image

    from infer.plots import _INK_INDEX

    for rid in df.index[flagged & df["attr_seconds"].notna()]:
        page = np.asarray(Image.open(df.loc[rid, "page"]))  # palette indices
        assert page.shape[0] > 400 and page.shape[1] > 900
        assert (page == _INK_INDEX).sum() > 5000  # 13 traces, pulses and labels
        # the seconds that pushed the score up are shaded (indices past the plain colours)
        assert ((page > _INK_INDEX).any()) == (max(df.loc[rid, "attr_seconds"]) > 0)
    rgb = np.asarray(Image.open(df.loc["flat", "page"]).convert("RGB")) / 255
    assert rgb.std() > 0.05
    # --plots inside the input folder is refused before any work
    r = CliRunner().invoke(cli, ["score", "--model", str(trained[2]), "--input", str(folder),
                                 "--out", str(tmp_path / "x.parquet"), "--plots",
                                 str(folder / "pages")])
    assert r.exit_code == ExitCode.USAGE and "--plots lies inside the input" in r.output
    # a flag taken for the folder (`--plots -q`) is refused, and no folder "-q" is made
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["score", "--model", str(trained[2]), "--input", str(folder),
                                 "--out", "y.parquet", "--plots", "-q"])
    assert r.exit_code == ExitCode.USAGE and "--plots takes the folder" in r.output
    assert not Path("-q").exists() and not Path("y.parquet").exists()


def test_page_text_is_pillows_glyphs_at_pillows_places():
    """Page text is stamped from words and glyphs rendered once per process: every glyph
    Pillow draws for the string on a palette image, whole, on the same rows, drifting at most
    a pixel per 15 characters from where Pillow's layout of the whole line puts them; text
    running off the page is clipped, not an error."""
    from PIL import Image, ImageDraw

    from infer.plots import _INK_INDEX, _font, _put_ink, _text_ink

    for text, size, at in (("aVR +0.12", 13, (300.4, 21.7)),
                           ("V6 -1.00 clipped at the edge", 13, (380, 2)),
                           ("00042_lr   MI probability 0.731   band MI   quality poor", 14,
                            (8, 5))):
        want = Image.new("P", (420, 40), 0)
        ImageDraw.Draw(want).text((round(at[0]), round(at[1])), text, fill=_INK_INDEX,
                                  font=_font(size))
        want = np.asarray(want) == _INK_INDEX
        got = np.zeros((40, 420), np.uint8)
        _put_ink(got, _text_ink(at[0], at[1], text, size))
        got = got == _INK_INDEX
        assert want.sum() > 5 * len(text[: int(420 - at[0]) // 7])
        rows = [np.nonzero(m.any(axis=1))[0] for m in (got, want)]
        np.testing.assert_array_equal(rows[0], rows[1])
        cols = [np.nonzero(m.any(axis=0))[0] for m in (got, want)]
        assert cols[0][0] == cols[1][0]
        if at[0] < 100:  # whole on the canvas
            assert got.sum() == want.sum()  # every glyph, whole
            assert abs(cols[0][-1] - cols[1][-1]) <= len(text) // 15
        else:  # clipped at the canvas's edge
            assert 0.9 * want.sum() <= got.sum() <= 1.1 * want.sum()


def test_csv_results_carry_the_per_second_attributions_as_text(model, tmp_path):
    from infer.score import write_results

    for ext in (".hea", ".dat"):
        shutil.copy(HEAS[0].with_suffix(ext), tmp_path)
    table, _ = score_dir(tmp_path, model, options=ScoreOptions(explain=True))
    out = write_results(table, tmp_path / "r.csv")
    row = pd.read_csv(out).iloc[0]
    values = [float(v) for v in row["attr_seconds"].split(";")]
    np.testing.assert_allclose(values, table.column("attr_seconds").to_pylist()[0], rtol=1e-5,
                               atol=1e-6)
