"""``ingest ptbxl`` on the shipped records: counts, labels, signals, determinism, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import wfdb
from click.testing import CliRunner
from conftest import SAMPLE, make_corpus

from ingest import OutputExistsError, convert_ptbxl, open_dataset, signals_from_table
from ingest.cli import cli
from schemas import ERRORS_SCHEMA, LEADS, PARTITION_SCHEMA, RECORD_SCHEMA, ExitCode


@pytest.fixture(scope="module")
def converted_100(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ingest") / "ptbxl-100"
    convert_ptbxl(SAMPLE, out, rate=100, n_jobs=1)
    return out


def test_counts_labels_and_manifest(converted_100: Path):
    table = open_dataset(converted_100).to_table()
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv")
    assert table.num_rows == len(db) == 353
    assert sorted(table.column("ecg_id").to_pylist()) == sorted(db["ecg_id"])
    assert sum(table.column("mi").to_pylist()) == 49
    # fold of every record as in the database
    folds = dict(zip(db["ecg_id"], db["strat_fold"], strict=True))
    got = dict(zip(table.column("ecg_id").to_pylist(), table.column("strat_fold").to_pylist(),
                   strict=True))
    assert got == folds
    manifest = json.loads((converted_100 / "manifest.json").read_text())
    assert manifest["counts"]["converted"] == 353
    assert manifest["counts"]["mi"] == 49
    assert sum(f["mi"] for f in manifest["counts"]["per_fold"].values()) == 49
    assert len(manifest["checksums"]["inputs_sha256"]["ptbxl_database.csv"]) == 64
    assert pq.read_table(converted_100 / "errors.parquet").num_rows == 0


def test_schema_equals_the_contract(converted_100: Path):
    files = sorted((converted_100 / "records").rglob("*.parquet"))
    assert len(files) == 8  # one per fold at this size
    for f in files:
        assert pq.read_schema(f).equals(RECORD_SCHEMA, check_metadata=True)
    assert open_dataset(converted_100).schema.equals(
        RECORD_SCHEMA.append(PARTITION_SCHEMA.field("strat_fold"))
    )
    assert pq.read_schema(converted_100 / "errors.parquet").equals(ERRORS_SCHEMA)


def test_signals_equal_wfdb(converted_100: Path):
    table = open_dataset(converted_100).to_table()
    signals = signals_from_table(table)
    assert signals.shape == (353, 1000, 12) and signals.dtype == np.int16
    for i, filename in enumerate(table.column("filename").to_pylist()):
        ref = wfdb.rdrecord(str(SAMPLE / filename), physical=False)
        assert ref.sig_name == list(LEADS)
        np.testing.assert_array_equal(signals[i], ref.d_signal)
    assert set(table.column("adc_gain").to_pylist()) == {1000.0}


def test_500hz_path(tmp_path: Path):
    corpus = make_corpus(tmp_path / "c", n_records=12, rates=(500,))
    convert_ptbxl(corpus, tmp_path / "out", rate=500, n_jobs=1)
    table = open_dataset(tmp_path / "out").to_table()
    signals = signals_from_table(table)
    assert signals.shape == (12, 5000, 12)
    assert set(table.column("fs").to_pylist()) == {500}
    ref = wfdb.rdrecord(str(corpus / table.column("filename")[0].as_py()), physical=False)
    np.testing.assert_array_equal(signals[0], ref.d_signal)


def test_output_is_identical_for_any_n_jobs(tmp_path: Path, converted_100: Path):
    out2 = tmp_path / "jobs2"
    convert_ptbxl(SAMPLE, out2, rate=100, n_jobs=2, chunk_size=20)
    out1 = tmp_path / "jobs1"
    convert_ptbxl(SAMPLE, out1, rate=100, n_jobs=1, chunk_size=20)
    files1 = sorted(p.relative_to(out1) for p in out1.rglob("*.parquet"))
    files2 = sorted(p.relative_to(out2) for p in out2.rglob("*.parquet"))
    assert files1 == files2 and len(files1) > 8
    for rel in files1:
        assert (out1 / rel).read_bytes() == (out2 / rel).read_bytes(), rel
    m1 = json.loads((out1 / "manifest.json").read_text())
    m2 = json.loads((out2 / "manifest.json").read_text())
    assert m1["checksums"] == m2["checksums"]


def test_existing_output_is_never_silently_replaced(tmp_path: Path, small_corpus: Path):
    out = tmp_path / "out"
    convert_ptbxl(small_corpus, out, n_jobs=1)
    before = (out / "manifest.json").read_text()
    with pytest.raises(OutputExistsError, match=r"out: output exists; pass --overwrite"):
        convert_ptbxl(small_corpus, out, n_jobs=1)
    assert (out / "manifest.json").read_text() == before
    convert_ptbxl(small_corpus, out, n_jobs=1, overwrite=True)
    assert open_dataset(out).count_rows() == 24
    # nothing but the output is left beside it (no temporary or old folders)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ptbxl"]


def _row(corpus: Path, i: int) -> tuple[pd.DataFrame, Path]:
    db = pd.read_csv(corpus / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    return db, corpus / db.loc[i, "filename_lr"]


def _set_field(field: str, value: str):
    def mutate(corpus: Path) -> None:
        db, _ = _row(corpus, 3)
        db.loc[3, field] = value
        db.to_csv(corpus / "ptbxl_database.csv", index=False)

    return mutate


def _delete_dat(corpus: Path) -> None:
    _, rec = _row(corpus, 3)
    rec.with_suffix(".dat").unlink()


def _delete_both(corpus: Path) -> None:
    _, rec = _row(corpus, 3)
    rec.with_suffix(".dat").unlink()
    rec.with_suffix(".hea").unlink()


def _truncate_dat(corpus: Path) -> None:
    _, rec = _row(corpus, 3)
    dat = rec.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:10000])


def _corrupt_header(corpus: Path) -> None:
    _, rec = _row(corpus, 3)
    hea = rec.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("1000.0(0)/mV", "1000.0(0/mV", 1))


def _point_at_500hz(corpus: Path) -> None:
    """A mislabelled row: filename_lr names a 500 Hz record."""
    db, rec = _row(corpus, 3)
    hr = db.loc[3, "filename_hr"]
    for ext in (".hea", ".dat"):
        target = corpus / (hr + ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((SAMPLE / (hr + ext)).read_bytes())
    db.loc[3, "filename_lr"] = hr
    db.to_csv(corpus / "ptbxl_database.csv", index=False)


BAD_INPUTS = {
    "missing-record": (_delete_both, "missing_file", r"_lr\.hea: header file not found"),
    "missing-dat": (_delete_dat, "missing_file", r"_lr\.dat: signal file not found"),
    "truncated-dat": (_truncate_dat, "truncated_signal", r"_lr\.dat: holds 416 samples per lead "
                      r"but 00004_lr\.hea says 1000; the file is truncated, re-download"),
    "corrupt-header": (_corrupt_header, "corrupt_header", r"_lr\.hea: line 2: ADC gain"),
    "unknown-scp-code": (_set_field("scp_codes", "{'NORM': 100.0, 'XYZ': 50.0}"),
                         "unknown_scp_code", r"row 5 \(ecg_id 4\): SCP code\(s\) XYZ not in "
                         r"scp_statements\.csv"),
    "malformed-scp-codes": (_set_field("scp_codes", "NORM=100"), "bad_metadata",
                            r"scp_codes = 'NORM=100' is not a non-empty dict"),
    "empty-strat-fold": (_set_field("strat_fold", ""), "bad_metadata",
                         r"row 5 \(ecg_id 4\): field strat_fold = '' must be an integer and is "
                         r"required"),
    "malformed-age": (_set_field("age", "fifty"), "bad_metadata",
                      r"field age = 'fifty' is not a number; fix the row in ptbxl_database\.csv"),
    "malformed-date": (_set_field("recording_date", "yesterday"), "bad_metadata",
                       r"recording_date = 'yesterday' is not YYYY-MM-DD HH:MM:SS"),
    "empty-filename": (_set_field("filename_lr", ""), "bad_metadata", r"filename_lr is empty"),
    "wrong-rate": (_point_at_500hz, "wrong_rate", r"_hr\.hea: sampling rate is 500 Hz but this "
                   r"run converts 100 Hz records"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_record_becomes_an_error_row_and_the_rest_arrive(
    case: str, small_corpus: Path, tmp_path: Path
):
    mutate, kind, message = BAD_INPUTS[case]
    mutate(small_corpus)
    summary = convert_ptbxl(small_corpus, tmp_path / "out", n_jobs=1)
    errors = pq.read_table(tmp_path / "out" / "errors.parquet").to_pylist()
    assert len(errors) == 1, errors
    assert errors[0]["ecg_id"] == 4
    assert errors[0]["kind"] == kind
    assert re.search(message, errors[0]["message"]), errors[0]["message"]
    ids = open_dataset(tmp_path / "out").to_table().column("ecg_id").to_pylist()
    listed = pd.read_csv(small_corpus / "ptbxl_database.csv")["ecg_id"].tolist()
    assert sorted(ids) == [i for i in listed if i != 4]
    assert summary.n_converted == 23 and summary.n_errors == 1


def test_cli_exit_codes_and_messages(small_corpus: Path, tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(cli, ["ptbxl", "--root", str(small_corpus), "--out", str(out),
                                 "--n-jobs", "1"])
    assert result.exit_code == ExitCode.OK, result.output
    # no MI in the first 24; the gate finds them all good
    assert "24/24 records converted (0 MI; quality: 24 good), 0 errors" in result.output
    result = runner.invoke(cli, ["ptbxl", "--root", str(small_corpus), "--out", str(out)])
    assert result.exit_code == ExitCode.OUTPUT_EXISTS
    assert f"Error: {out}: output exists; pass --overwrite to replace it" in result.output
    _truncate_dat(small_corpus)
    result = runner.invoke(cli, ["ptbxl", "--root", str(small_corpus), "--out", str(out),
                                 "--overwrite", "--n-jobs", "1"])
    assert result.exit_code == ExitCode.PARTIAL
    assert "23/24 records converted (0 MI; quality: 23 good), 1 errors" in result.output
    (small_corpus / "scp_statements.csv").unlink()
    result = runner.invoke(cli, ["ptbxl", "--root", str(small_corpus), "--out",
                                 str(tmp_path / "new")])
    assert result.exit_code == ExitCode.FATAL
    assert "scp_statements.csv: the SCP statement table not found" in result.output
    assert not (tmp_path / "new").exists()
    result = runner.invoke(cli, ["ptbxl", "--root", str(small_corpus), "--out", str(out),
                                 "--rate", "250"])
    assert result.exit_code == ExitCode.USAGE


def test_help_teaches():
    result = CliRunner().invoke(cli, ["ptbxl", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "--rate" in result.output
