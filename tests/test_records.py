"""The fast WFDB reader against wfdb.rdrecord, and its errors on damaged records."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb
from conftest import SAMPLE

from ingest import HeaderError, RecordError, parse_header, read_record

ALL_RECORDS = sorted(str(p)[:-4] for p in SAMPLE.glob("records*/*/*.hea"))


def test_every_shipped_record_is_there():
    # 353 records at each of the two rates
    assert len(ALL_RECORDS) == 706


def test_fast_reader_matches_wfdb_on_every_shipped_record():
    """Every shipped record, both rates: identical ADC samples, gain, baseline, rate, leads."""
    mismatches = []
    for path in ALL_RECORDS:
        ours = read_record(path)
        ref = wfdb.rdrecord(path, physical=False)
        if not (
            np.abs(ours.signal.astype(np.int32) - ref.d_signal).max() <= 1
            and ours.fs == ref.fs
            and list(ours.sig_names) == ref.sig_name
            and ours.adc_gain.tolist() == ref.adc_gain
            and ours.baseline.tolist() == ref.baseline
        ):
            mismatches.append(path)
    assert mismatches == []


def test_millivolts_match_wfdb_physical_signal():
    path = ALL_RECORDS[0]
    ours = read_record(path).to_millivolts()
    ref = wfdb.rdrecord(path).p_signal
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_other_formats_go_through_wfdb(tmp_path: Path):
    """A real record re-written as format 212 (not covered by the fast path) reads the same."""
    src = wfdb.rdrecord(ALL_RECORDS[0], physical=False)
    wfdb.wrsamp(
        "rec212", fs=src.fs, units=src.units, sig_name=src.sig_name, d_signal=src.d_signal,
        fmt=["212"] * 12, adc_gain=src.adc_gain, baseline=src.baseline, write_dir=str(tmp_path),
    )
    assert parse_header(tmp_path / "rec212.hea").signals[0].fmt == "212"
    rec = read_record(tmp_path / "rec212")
    np.testing.assert_array_equal(rec.signal, src.d_signal)
    assert rec.fs == src.fs


def _copy(tmp_path: Path, path: str = ALL_RECORDS[0]) -> Path:
    for ext in (".hea", ".dat"):
        shutil.copy(path + ext, tmp_path / ("r" + ext))
    hea = tmp_path / "r.hea"
    hea.write_text(hea.read_text().replace(Path(path).name + ".dat", "r.dat"))
    return tmp_path / "r"


def test_truncated_dat(tmp_path: Path):
    rec = _copy(tmp_path)
    dat = rec.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: 24 * 900])
    with pytest.raises(RecordError, match=r"r\.dat: holds 900 samples per lead but r\.hea says "
                       r"1000; the file is truncated, re-download the record") as e:
        read_record(rec)
    assert e.value.kind == "truncated_signal"


def test_corrupt_dat_of_right_length_fails_checksum(tmp_path: Path):
    rec = _copy(tmp_path)
    dat = rec.with_suffix(".dat")
    data = bytearray(dat.read_bytes())
    data[1000:1010] = b"\x7f" * 10
    dat.write_bytes(bytes(data))
    with pytest.raises(RecordError, match=r"checksum of lead .* the signal file is corrupt") as e:
        read_record(rec)
    assert e.value.kind == "checksum_mismatch"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", r"r\.hea: empty header"),
        ("r 12 100 1000\nr.dat 16 1000.0(0)/mV 16 0\n", r"record line says 12 signals but 1 "
         r"signal lines follow; the header is truncated"),
        ("r twelve 100 1000\n", r"line 1: signal count 'twelve' is not an integer"),
        ("r 1 abc 1000\nr.dat 16 1000/mV\n", r"sampling frequency 'abc' is not a number"),
        ("r 1 100 1000\nr.dat 16 1000.0(0/mV\n", r"line 2: ADC gain '1000.0\(0/mV' is not of the "
         r"form GAIN\(BASELINE\)/UNITS"),
        ("r 1 100 1000\nr.dat 1z6 1000/mV\n", r"line 2: signal format '1z6' is not valid"),
    ],
)
def test_corrupt_headers(tmp_path: Path, header: str, message: str):
    rec = _copy(tmp_path)
    rec.with_suffix(".hea").write_text(header)
    with pytest.raises(HeaderError, match=message) as e:
        read_record(rec)
    assert str(rec.with_suffix(".hea")) in str(e.value)
    assert e.value.kind == "corrupt_header"


def test_missing_dat_and_missing_header(tmp_path: Path):
    rec = _copy(tmp_path)
    rec.with_suffix(".dat").unlink()
    with pytest.raises(RecordError, match=r"r\.dat: signal file not found"):
        read_record(rec)
    with pytest.raises(RecordError, match=r"nope\.hea: header file not found"):
        read_record(tmp_path / "nope")


def test_challenge_mat_layout_is_read_on_the_fast_path(tmp_path, monkeypatch):
    """PhysioNet/Challenge records keep format-16 samples in a .mat file after a 24-byte
    MATLAB header (format ``16+24``): the fast path reads them, identical to wfdb."""
    import common.records as records

    for hea in sorted(SAMPLE.glob("records500/*/*.hea"))[:3]:
        rec = read_record(hea.with_suffix(""))
        stem = hea.stem
        header = hea.read_text().splitlines()
        out = [header[0]]
        for line in header[1:]:
            parts = line.split()
            if parts and parts[0].endswith(".dat"):
                parts[0], parts[1] = f"{stem}.mat", "16+24"
                line = " ".join(parts)
            out.append(line)
        (tmp_path / f"{stem}.hea").write_text("\n".join(out) + "\n")
        (tmp_path / f"{stem}.mat").write_bytes(
            b"MATLAB 5.0 MAT-file....." + rec.signal.astype("<i2").tobytes())
        def slow_path(*args, **kwargs):
            pytest.fail("the .mat record went to wfdb")

        monkeypatch.setattr(records, "_read_with_wfdb", slow_path)
        ours = read_record(tmp_path / stem)
        monkeypatch.undo()
        np.testing.assert_array_equal(ours.signal, rec.signal)
        theirs = wfdb.rdrecord(str(tmp_path / stem), physical=False)
        np.testing.assert_array_equal(ours.signal, theirs.d_signal)
        # a .mat cut short is refused with the usual message
        data = (tmp_path / f"{stem}.mat").read_bytes()
        (tmp_path / f"{stem}.mat").write_bytes(data[:-100])
        with pytest.raises(RecordError, match="the file is truncated"):
            read_record(tmp_path / stem)
