"""Hospital exports: DICOM, HL7 aECG, GE MUSE XML, Philips XML and EDF.

Files written from shipped PTB-XL records (tests/exports.py) must score as the WFDB records do;
real samples (pydicom's DICOM ECG, two Philips demo exports) must read and score; damaged
files must become error rows that say what is wrong.
"""

from __future__ import annotations

import base64
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import REPO, SAMPLE

sys.path.insert(0, str(Path(__file__).parent))
from exports import LEADS as EXPORT_LEADS  # noqa: E402
from exports import WRITERS, write_aecg, write_dicom, write_muse  # noqa: E402

from infer import Model, discover, score_dir  # noqa: E402
from infer.formats import read_export, sniff  # noqa: E402
from infer.readers import read_wfdb  # noqa: E402
from schemas import ExitCode  # noqa: E402

FORMATS_DIR = REPO / "data" / "formats"
#: two records of each rate, MI and not
HEAS = (sorted(SAMPLE.glob("records100/*/*.hea"))[:2]
        + sorted(SAMPLE.glob("records500/*/*.hea"))[2:4])


@pytest.fixture(scope="module")
def model(trained) -> Model:
    return Model(trained[2])


def _dicom_sample() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("waveform_ecg.dcm", download=False))


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_exports_of_shipped_records_read_back_exactly(fmt, tmp_path):
    write, ext = WRITERS[fmt]
    for hea in HEAS:
        path = write(hea, tmp_path / (hea.stem + ext))
        assert sniff(str(path)) == fmt
        raw = read_export(str(path))
        ref = read_wfdb(str(hea))
        assert raw.format == fmt and raw.fs == ref.fs
        assert [n.upper() for n in raw.names] == [n.upper() for n in ref.names]
        np.testing.assert_allclose(raw.signal, ref.signal, atol=1e-6)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_exports_score_like_the_wfdb_records(fmt, tmp_path, model):
    write, ext = WRITERS[fmt]
    wfdb_dir, export_dir = tmp_path / "wfdb", tmp_path / "export"
    wfdb_dir.mkdir()
    export_dir.mkdir()
    for hea in HEAS:
        for e in (".hea", ".dat"):
            shutil.copy(hea.with_suffix(e), wfdb_dir)
        write(hea, export_dir / (hea.stem + ext))
    a = score_dir(wfdb_dir, model)[0].to_pandas().set_index("record_id")
    b = score_dir(export_dir, model)[0].to_pandas().set_index("record_id")
    assert (b["format"] == fmt).all() and (b["status"] != "error").all()
    assert (a.loc[b.index, "quality"] == b["quality"]).all()
    np.testing.assert_allclose(b["mi_probability"], a.loc[b.index, "mi_probability"], atol=1e-4)


def test_real_dicom_sample_is_scored_from_its_rhythm_waveform(tmp_path, model):
    import pydicom

    src = _dicom_sample()
    raw = read_export(str(src))
    ds = pydicom.dcmread(src)
    rhythm = ds.WaveformSequence[0]
    assert rhythm.MultiplexGroupLabel == "RHYTHM" and raw.fs == 1000.0
    assert raw.signal.shape == (10000, 12)
    assert [n.upper() for n in raw.names] == [n.upper() for n in EXPORT_LEADS]
    # units from the file: 1.25 uV per unit on lead I, read independently of our reader
    ch = rhythm.ChannelDefinitionSequence[0]
    assert ch.ChannelSensitivityUnitsSequence[0].CodeValue == "uV"
    units = np.frombuffer(rhythm.WaveformData, dtype="<i2").reshape(10000, 12)[:, 0]
    expected = (units + float(getattr(ch, "ChannelBaseline", 0))) * float(
        ch.ChannelSensitivity) * float(getattr(ch, "ChannelSensitivityCorrectionFactor", 1)) / 1e3
    np.testing.assert_allclose(raw.signal[:, 0], expected, rtol=1e-5, atol=1e-6)
    # a DICOM file without an extension is found and scored too
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(src, folder / "ECG0001")
    row = score_dir(folder, model)[0].to_pandas().iloc[0]
    assert row["format"] == "dicom" and row["status"] in ("ok", "warning")
    assert row["quality"] in ("good", "poor") and 0 <= row["mi_probability"] <= 1


def test_real_philips_exports_read_with_their_resolution(model):
    for name, version in (("philips_1-04_demo.xml", "1.04"), ("philips_1-03_demo.xml", "1.03")):
        raw = read_export(str(FORMATS_DIR / name))
        assert raw.format == "philips" and raw.fs == 500.0 and version in raw.notes[0]
        assert [n.upper() for n in raw.names] == [n.upper() for n in EXPORT_LEADS]
        s = raw.signal
        # the XLI-decoded limb leads obey Einthoven's law, within the 5 uV resolution
        assert np.abs(s[:, 2] - (s[:, 1] - s[:, 0])).max() <= 0.0151
        assert 0.3 < np.ptp(s[:, 1]) < 10  # mV, not raw units
        assert any("calibration pulse" in n for n in raw.notes)
        assert 10.0 <= s.shape[0] / raw.fs < 11.0
    table, _ = score_dir(FORMATS_DIR, model)
    df = table.to_pandas()
    assert set(df["format"]) == {"philips"} and (df["status"] == "ok").all()


def test_muse_with_eight_leads_derives_the_limb_leads(tmp_path):
    hea = HEAS[0]
    path = write_muse(hea, tmp_path / "m.xml", leads=["I", "II", "V1", "V2", "V3", "V4", "V5",
                                                      "V6"], per_bit=4.88)
    raw = read_export(str(path))
    assert sorted(raw.names) == sorted(["I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III",
                                        "aVR", "aVL", "aVF"])
    assert "III, aVR, aVL, aVF derived from I and II" in raw.notes
    col = {n: raw.signal[:, k] for k, n in enumerate(raw.names)}
    np.testing.assert_allclose(col["III"], col["II"] - col["I"], atol=1e-6)
    np.testing.assert_allclose(col["aVF"], col["II"] - col["I"] / 2, atol=1e-6)
    ref = read_wfdb(str(hea)).signal
    # 4.88 uV per bit (MUSE's usual resolution): the values are the record's within a step
    assert np.abs(col["I"] - ref[:, 0]).max() <= 0.00245


def _bad(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_damaged_exports_become_error_rows_that_say_why(tmp_path, model):
    hea = HEAS[0]
    folder = tmp_path / "in"
    folder.mkdir()
    good = write_aecg(hea, tmp_path / "a.xml").read_text()
    _bad(folder, "truncated.xml", good[: len(good) // 2])
    _bad(folder, "units.xml", good.replace('unit="uV"', 'unit="furlong"'))
    eleven = write_aecg(hea, tmp_path / "b.xml", leads=EXPORT_LEADS[:11]).read_text()
    _bad(folder, "eleven.xml", eleven)
    muse = write_muse(hea, tmp_path / "m.xml").read_text()
    b64 = muse.split("<WaveFormData>")[2].split("</WaveFormData>")[0]
    _bad(folder, "base64.xml", muse.replace(b64, "!!" + b64[2:], 1))
    first = b64
    shorter = base64.b64encode(base64.b64decode(first)[:-20]).decode()
    _bad(folder, "count.xml", muse.replace(first, shorter, 1))
    _bad(folder, "notecg.xml", "<?xml version='1.0'?><invoice><total>3</total></invoice>")
    dcm = write_dicom(hea, tmp_path / "d.dcm").read_bytes()
    _bad(folder, "cut.dcm", dcm[: len(dcm) // 3])
    df = score_dir(folder, model)[0].to_pandas().set_index("record_id")
    msg = df["message"]
    assert (df.drop("notecg")["status"] == "error").all()
    assert "the XML is damaged" in msg["truncated"]
    assert "gives units 'furlong', not a voltage" in msg["units"]
    assert "missing leads V6" in msg["eleven"]
    assert "not valid base64" in msg["base64"]
    assert "holds 1980 bytes, LeadSampleCountTotal says 1000 samples" in msg["count"]
    assert df.loc["notecg", "status"] == "skipped" and "root <invoice>" in msg["notecg"]
    assert "cut.dcm" in msg["cut"] and df.loc["cut", "format"] == "dicom"
    for rid in df.index:
        assert str(folder) in msg[rid]  # every message names its file


def test_missing_extra_names_the_pip_command(tmp_path, monkeypatch):
    path = write_dicom(HEAS[0], tmp_path / "x.dcm")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    from infer.formats import FormatExtraMissing

    with pytest.raises(FormatExtraMissing, match=r"pip install 'mi-screen\[formats\]'"):
        read_export(str(path))


def test_other_files_are_reported_once_in_the_summary(tmp_path, trained):
    from infer.cli import cli

    folder = tmp_path / "in"
    folder.mkdir()
    write_aecg(HEAS[0], folder / "r.xml")
    for name in ("notes.md", "scan.pdf", "export.scp", "other.pdf"):
        (folder / name).write_text("x")
    found = discover(folder)
    assert found.inputs == [(str(folder / "r.xml"), "export")]
    assert found.ignored == {".pdf": 2, ".md": 1, ".scp": 1}
    r = CliRunner().invoke(cli, ["score", "--model", str(trained[2]), "--input", str(folder),
                                 "--out", str(tmp_path / "o.parquet")])
    assert r.exit_code == ExitCode.OK, r.output
    assert "not ECG inputs, not scored: 2 .pdf, 1 .md, 1 .scp files" in r.output
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 1
