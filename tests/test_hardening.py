"""Misuse and odd input, one test per class of defect found by the hardening review (issue 9):
no data loss, no whole-batch crash or hang, no silent omission, no garbage accepted as data,
no residue after a kill, exit codes a scheduler can act on.  Every case is built here, from the
shipped records."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pyarrow.parquet as pq
import pytest
import wfdb
from click.testing import CliRunner
from conftest import REPO, SAMPLE, make_corpus

from common.records import read_record
from infer import Model, ScoreOptions, score_dir
from infer.cli import cli as infer_cli
from ingest.cli import cli as ingest_cli
from schemas import LEADS, ExitCode, band_for
from signals.windows import window_starts

DB = pd.read_csv(SAMPLE / "ptbxl_database.csv")
HEA100 = SAMPLE / (DB.iloc[0]["filename_lr"] + ".hea")
HEA500 = SAMPLE / (DB.iloc[0]["filename_hr"] + ".hea")


@pytest.fixture(scope="module")
def model(trained) -> Model:
    return Model(trained[2])


def _copy(dst: Path, hea: Path = HEA100, name: str | None = None) -> Path:
    """Copy a shipped record into ``dst`` (optionally renamed); return its header path."""
    dst.mkdir(parents=True, exist_ok=True)
    stem = name or hea.stem
    text = hea.read_text().replace(hea.stem, stem)
    (dst / f"{stem}.hea").write_text(text)
    shutil.copy(hea.with_suffix(".dat"), dst / f"{stem}.dat")
    return dst / f"{stem}.hea"


def _write_record(dst: Path, name: str, d: np.ndarray, fs: float, gain: float = 1000.0,
                  baseline: int = 0, units: str = "mV", names=LEADS, fmt: str = "16",
                  fs_text: str | None = None) -> Path:
    """A WFDB format-16 record written by hand from int16 samples ``d`` (n, leads)."""
    dst.mkdir(parents=True, exist_ok=True)
    d = np.asarray(d, dtype="<i2")
    d.tofile(dst / f"{name}.dat")
    sums = d.sum(axis=0, dtype=np.int64) & 0xFFFF
    fs_part = f" {fs:g} {len(d)}" if fs_text is None else fs_text
    lines = [f"{name} {d.shape[1]}{fs_part}"]
    for i, lead in enumerate(names):
        first = int(d[0, i]) if len(d) else 0
        lines.append(f"{name}.dat {fmt} {gain:g}({baseline})/{units} 16 0 {first} "
                     f"{int(sums[i])} 0 {lead}")
    (dst / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return dst / f"{name}.hea"


def _rows(folder: Path, model: Model, **kwargs) -> pd.DataFrame:
    table, _ = score_dir(folder, model, **kwargs)
    return table.to_pandas().set_index("record_id")


def _invoke(cli, args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# ----------------------------------------------------------------------------- data loss


def test_ingest_refuses_an_output_that_is_contains_or_lies_inside_the_input(tmp_path):
    root = make_corpus(tmp_path / "corpus", n_records=3)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    link = tmp_path / "link"
    link.symlink_to(root)
    for out in (root, tmp_path, root / "records100" / "out", link):
        r = _invoke(ingest_cli, ["ptbxl", "--root", root, "--out", out, "--overwrite"])
        assert r.exit_code == ExitCode.USAGE, r.output
        assert "could destroy the input (refused whatever --overwrite says)" in r.output
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_scorer_refuses_to_write_over_its_inputs_or_model(tmp_path, trained):
    folder = tmp_path / "in"
    hea = _copy(folder)
    model = tmp_path / "m.onnx"
    shutil.copy(trained[2], model)
    snapshot = {p: p.read_bytes() for p in (hea, hea.with_suffix(".dat"), model)}
    for out in (hea, hea.with_suffix(".dat"), folder / "results.csv", model, folder):
        r = _invoke(infer_cli, ["score", "--input", folder, "--model", model, "--out", out,
                                "--overwrite"])
        assert r.exit_code == ExitCode.USAGE, (out, r.output)
        assert "refused whatever --overwrite says" in r.output or "Invalid value" in r.output
    assert all(p.read_bytes() == b for p, b in snapshot.items())


def test_export_never_replaces_a_model_card_silently(tmp_path, trained):
    from train.cli import cli as train_cli

    run_dir, _, _ = trained
    card = tmp_path / "m_card.md"
    card.write_text("hand-written notes")
    r = _invoke(train_cli, ["export", "--run", run_dir, "--out", tmp_path / "m.onnx"])
    assert r.exit_code == ExitCode.OUTPUT_EXISTS, r.output
    assert "m_card.md: output exists" in r.output
    assert card.read_text() == "hand-written notes" and not (tmp_path / "m.onnx").exists()


def test_nothing_under_the_input_is_silently_left_out(tmp_path, model, monkeypatch):
    top = tmp_path / "in"
    _copy(top / "plain")
    _copy(tmp_path / "elsewhere", name="linked")
    (top / "via-link").symlink_to(tmp_path / "elsewhere")  # followed
    (top / "plain" / "loop").symlink_to(top)  # a loop: reported, not followed forever
    _copy(top / ".hidden-folder", name="in_hidden")
    _copy(top, name=".hidden_record")
    locked = top / "locked"
    _copy(locked, name="in_locked")
    real_scandir = os.scandir

    def scandir(path):  # root reads anything; simulate a folder this user cannot read
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    df = _rows(top, model)
    scored = set(df.index[df["status"].isin(["ok", "warning"])])
    assert {"00001_lr", "linked"} <= scored
    skipped = df[df["status"] == "skipped"]["message"]
    text = "\n".join(skipped)
    assert "hidden folder" in text and "hidden file" in text
    assert "folder cannot be read (Permission denied)" in text
    assert "already searched" in text
    assert len(skipped) == 4


# ------------------------------------------------------------------- one input, whole batch


def test_a_file_name_that_is_not_utf8_gets_its_row(tmp_path, model):
    folder = tmp_path / "in"
    _copy(folder)
    rec = read_record(HEA100.with_suffix(""))
    bad = os.fsencode(folder) + b"/bad\xff.csv"
    pd.DataFrame(rec.to_millivolts(), columns=list(LEADS)).to_csv(os.fsdecode(bad), index=False)
    out = tmp_path / "r.parquet"
    r = _invoke(infer_cli, ["score", "--input", folder, "--model", model.path, "--out", out])
    assert r.exit_code == ExitCode.OK, r.output
    df = pd.read_parquet(out).set_index("record_id")
    assert df.loc["bad\\xff", "status"] in ("ok", "warning")
    assert df.loc["bad\\xff", "path"].endswith("bad\\xff.csv")


def test_long_records_are_scored_in_bounded_memory(tmp_path, model):
    """Hour-long records: memory follows one chunk of them, not the batch's total duration
    (30 one-hour records once peaked at 2.24 GB against 285 MB for one), and each record's
    windows are views scored batch by batch, never all copied at once."""
    from schemas import RESULTS_SCHEMA

    assert str(RESULTS_SCHEMA.field("n_windows").type) == "int32"  # 45 h overflowed int16
    rec = read_record(HEA100.with_suffix(""))
    hour = np.tile(rec.signal, (360, 1))
    one, few, many = tmp_path / "one", tmp_path / "few", tmp_path / "many"
    _write_record(one, "h0", hour, 100)
    for i in range(12):
        if i < 4:
            _write_record(few, f"h{i}", hour, 100)
        _write_record(many, f"h{i}", hour, 100)

    def peak(folder):
        tracemalloc.start()
        table, _ = score_dir(folder, model, n_jobs=1)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, table.to_pylist()

    peak_one, rows = peak(one)
    peak_few, _ = peak(few)
    peak_many, rows_many = peak(many)
    assert rows[0]["status"] in ("ok", "warning") and rows[0]["n_windows"] == 719
    assert len(rows_many) == 12 and {r["n_windows"] for r in rows_many} == {719}
    # 12 hours of records take what 4 hours take: memory is flat in the batch's duration
    assert peak_many < 1.2 * peak_few, (peak_one / 1e6, peak_few / 1e6, peak_many / 1e6)
    # one hour's windows copied at once would be 35 MB more than the record as float32 (17 MB)
    assert peak_one < 150e6, peak_one / 1e6


def test_readers_cap_what_they_load(tmp_path, model):
    folder = tmp_path / "in"
    _copy(folder)
    # a header claiming 25 hours is refused before anything is read
    _write_record(folder, "day", np.zeros((10, 12)), 100, fs_text=f" 100 {25 * 3600 * 100}")
    (folder / "zero.csv").symlink_to("/dev/zero")  # would be read until memory runs out
    df = _rows(folder, model)
    assert df.loc["day", "status"] == "error"
    assert "records longer than 24 h are not read (split the recording)" in df.loc["day",
                                                                                     "message"]
    assert df.loc["zero", "status"] == "skipped"
    assert "not a regular file" in df.loc["zero", "message"]


def test_folders_nested_1100_deep(tmp_path, model):
    deep = tmp_path / "in"
    deep.mkdir()
    chain = [deep]
    for _ in range(1100):  # os.makedirs itself recurses: build it one level at a time
        chain.append(chain[-1] / "d")
        chain[-1].mkdir()
    _copy(chain[-1])
    try:
        df = _rows(deep, model)
        assert list(df["status"]) in (["ok"], ["warning"])
    finally:  # shutil.rmtree (pytest's cleanup) recurses too: take the tree down bottom-up
        for folder in reversed(chain):
            for f in folder.iterdir():
                if not f.is_dir():
                    f.unlink()
            folder.rmdir()


def test_fifos_never_block_the_batch(tmp_path, model):
    folder = tmp_path / "in"
    _copy(folder)
    os.mkfifo(folder / "pipe.csv")
    os.mkfifo(folder / "pipe.hea")
    other = _copy(folder, name="to_pipe")
    other.with_suffix(".dat").unlink()
    os.mkfifo(other.with_suffix(".dat"))  # a header naming a FIFO as its signal file
    signal.alarm(60)  # a hang fails the test instead of stalling the suite
    try:
        df = _rows(folder, model)
    finally:
        signal.alarm(0)
    assert df.loc["pipe", "status"].tolist() == ["skipped", "skipped"]
    assert df.loc["to_pipe", "status"] == "error"
    assert "not a regular file" in df.loc["to_pipe", "message"]
    assert df.loc["00001_lr", "status"] in ("ok", "warning")


@pytest.mark.parametrize("key,value,message", [
    ("leads", "I,II,III,AVR,AVL,AVF,V1,V2,V3,V4,V5", "the graph takes 12 leads per input, the "
                                                     "contract says 11"),
    ("input_samples", "5000", "the graph takes 1000 samples per input, the contract says 5000"),
    ("units", "furlong", "units 'furlong' are not a voltage"),
    ("leads", "I,I,III,AVR,AVL,AVF,V1,V2,V3,V4,V5,V6", "must be distinct standard lead names"),
    ("input_samples", "0", "input length 0 samples is not plausible"),
])
def test_a_contract_that_disagrees_with_its_graph_is_refused_at_load(tmp_path, trained, key,
                                                                      value, message):
    m = onnx.load(str(trained[2]))
    for prop in m.metadata_props:
        if prop.key == f"mi_screen.{key}":
            prop.value = value
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    folder = tmp_path / "in"
    _copy(folder)
    r = _invoke(infer_cli, ["score", "--input", folder, "--model", path, "--out",
                            tmp_path / "r.parquet"])
    assert r.exit_code == ExitCode.FATAL, r.output
    assert message in r.output and "re-export the model" in r.output


def _score_cli(tmp_path, model, out):
    folder = tmp_path / "in"
    if not folder.exists():
        _copy(folder)
    return _invoke(infer_cli, ["score", "--input", folder, "--model", model.path, "--out", out])


def test_output_parent_is_a_file(tmp_path, model):
    (tmp_path / "afile").write_text("x")
    r = _score_cli(tmp_path, model, tmp_path / "afile" / "r.parquet")
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "a parent of the output is a file, not a folder" in r.output
    assert r.output.count("\n") == 1 or "Error:" in r.output.splitlines()[-1]


@pytest.mark.parametrize("err,fix", [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"),
])
def test_output_failures_are_one_line_with_their_own_code(tmp_path, model, monkeypatch, err, fix):
    import pyarrow.parquet

    def fail(*a, **k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(pyarrow.parquet, "write_table", fail)
    if err == errno.EROFS:  # on a read-only file system the cleanup fails too
        monkeypatch.setattr(Path, "unlink", fail)
    out = tmp_path / "out" / "r.parquet"
    r = _score_cli(tmp_path, model, out)
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {out}: cannot write the output: {fix}")
    monkeypatch.undo()
    assert not out.exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] in ([], [p.name for p in (
        tmp_path / "out").iterdir() if ".tmp-" in p.name and err == errno.EROFS])


def test_ingest_disk_full_leaves_nothing(tmp_path, monkeypatch):
    import ingest.convert

    root = make_corpus(tmp_path / "corpus", n_records=3)

    def fail(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ingest.convert.pq, "write_table", fail)
    out = tmp_path / "data"
    r = _invoke(ingest_cli, ["ptbxl", "--root", root, "--out", out, "--n-jobs", "1"])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "no space left on the device; free space or choose another --out" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_ingest_bad_cells_are_error_rows(tmp_path):
    root = make_corpus(tmp_path / "corpus", n_records=6)
    db = pd.read_csv(root / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    db.loc[0, "scp_codes"] = "[" * 100_000 + "]" * 100_000  # RecursionError in json
    db.loc[1, "ecg_id"] = str(2**40)
    db.loc[2, "ecg_id"] = "1e20"
    db.to_csv(root / "ptbxl_database.csv", index=False)
    out = tmp_path / "data"
    r = _invoke(ingest_cli, ["ptbxl", "--root", root, "--out", out, "--n-jobs", "1"])
    assert r.exit_code == ExitCode.PARTIAL, r.output
    errors = pq.read_table(out / "errors.parquet").to_pandas()
    assert len(errors) == 3 and set(errors["kind"]) == {"bad_metadata"}
    text = "\n".join(errors["message"])
    assert "scp_codes = '[[[[" in text and "characters) is not a non-empty dict" in text
    assert f"field ecg_id = '{2**40}' is out of range" in text
    assert "field ecg_id = '1e20' is out of range" in text


def test_n_jobs_zero_is_a_usage_error(tmp_path):
    root = make_corpus(tmp_path / "corpus", n_records=2)
    r = _invoke(ingest_cli, ["ptbxl", "--root", root, "--out", tmp_path / "o", "--n-jobs", "0"])
    assert r.exit_code == ExitCode.USAGE
    assert "must be a positive number of workers, or -1 for one per core" in r.output


# ----------------------------------------------------------------------------- garbage as data


def test_missing_value_sentinel_is_missing_not_data(tmp_path, model):
    rec = read_record(HEA100.with_suffix(""))
    folder = tmp_path / "in"
    dead = rec.signal.copy()
    dead[:, LEADS.index("V3")] = -32768  # a dead lead
    _write_record(folder, "dead", dead, 100, gain=2000)
    drop = rec.signal.copy()
    drop[300:400, 1] = -32768  # a dropout
    _write_record(folder, "dropout", drop, 100)
    df = _rows(folder, model)
    assert df.loc["dead", "status"] == "error"
    assert "missing leads V3" in df.loc["dead", "message"]
    assert "--allow-missing-leads" in df.loc["dead", "message"]
    assert df.loc["dropout", "status"] == "error"
    assert "samples missing (WFDB's missing value) in leads II (100)" in df.loc["dropout",
                                                                                "message"]
    df = _rows(folder, model, options=ScoreOptions(allow_missing_leads=True))
    assert df.loc["dead", "status"] == "warning" and df.loc["dead", "leads_filled"] == "V3"


def test_an_inverted_lead_is_turned_back(tmp_path, model):
    mv = read_record(HEA100.with_suffix("")).to_millivolts()
    folder = tmp_path / "in"
    folder.mkdir()
    names = list(LEADS)
    pd.DataFrame(mv, columns=names).to_csv(folder / "plain.csv", index=False)
    cabrera = mv.copy()
    cabrera[:, LEADS.index("AVR")] *= -1
    names[LEADS.index("AVR")] = "-aVR"
    pd.DataFrame(cabrera, columns=names).to_csv(folder / "cabrera.csv", index=False)
    df = _rows(folder, model)
    assert df.loc["cabrera", "mi_probability"] == pytest.approx(df.loc["plain",
                                                                       "mi_probability"], abs=1e-6)


def test_implausible_units_are_refused_with_the_fix(tmp_path, model):
    rec = read_record(HEA100.with_suffix(""))
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame(rec.to_millivolts() / 1000, columns=list(LEADS)).to_csv(folder / "volts.csv",
                                                                          index=False)
    _write_record(folder, "uv_gain", rec.signal, 100, units="uV")
    _write_record(folder, "huge_gain", rec.signal, 100, gain=1e300)
    (folder / "huge_gain.hea").write_text((folder / "huge_gain.hea").read_text().replace(
        "1e+300", "1e999"))
    _write_record(folder, "negative", rec.signal, 100, gain=-1000)
    df = _rows(folder, model)
    assert "if the file is in volts pass --csv-units V" in df.loc["volts", "message"]
    assert "check the gains and units in the header" in df.loc["uv_gain", "message"]
    for name in ("huge_gain", "negative"):
        assert "is not a positive finite number" in df.loc[name, "message"], name
    assert (df["status"] == "error").all()
    assert df.loc["volts", "status"] == "error"
    df = _rows(folder, model, options=ScoreOptions(csv_units="V"), pattern="*.csv")
    assert df.loc["volts", "status"] in ("ok", "warning")


def test_rates_say_what_was_assumed_and_refuse_what_is_too_low(tmp_path, model):
    rec = read_record(HEA500.with_suffix(""))
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame(rec.to_millivolts(), columns=list(LEADS)).to_csv(folder / "at500.csv",
                                                                   index=False)
    lr = read_record(HEA100.with_suffix(""))
    _write_record(folder, "no_fs", lr.signal, 100, fs_text="")
    _write_record(folder, "slow", lr.signal[::10], 10)
    df = _rows(folder, model)
    # 500 Hz read as the model's 100 Hz: said, with the rate it probably is
    assert "100 Hz (the model's) assumed, which makes it 50 s long" in df.loc["at500", "message"]
    assert "pass --csv-fs 500" in df.loc["at500", "message"]
    assert "default 250 Hz assumed" in df.loc["no_fs", "message"]
    assert df.loc["slow", "status"] == "error" and "below the model's 100 Hz" in df.loc[
        "slow", "message"]
    right = _rows(folder, model, options=ScoreOptions(csv_fs=500), pattern="*.csv")
    assert right.loc["at500", "status"] in ("ok", "warning")
    assert "assumed" not in right.loc["at500", "message"]


def test_wfdb_fallback_is_as_strict_as_the_fast_path(tmp_path):
    rec = read_record(HEA100.with_suffix(""))
    folder = tmp_path / "w"
    folder.mkdir()
    wfdb.wrsamp("r212", fs=100, units=["mV"] * 12, sig_name=list(LEADS), d_signal=rec.signal,
                fmt=["212"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                write_dir=str(folder))
    assert read_record(folder / "r212").signal.shape == (1000, 12)
    dat = folder / "r212.dat"
    data = dat.read_bytes()
    dat.write_bytes(data + data[:300])  # longer than the header says
    with pytest.raises(Exception, match="longer than its header says"):
        read_record(folder / "r212")
    flipped = bytearray(data)
    flipped[100] ^= 0xFF  # same length, wrong samples
    dat.write_bytes(bytes(flipped))
    with pytest.raises(Exception, match="checksum of lead"):
        read_record(folder / "r212")
    hea = folder / "r212.hea"
    hea.write_text(hea.read_text().replace("r212.dat 212", "r212.dat 212x2", 1))
    with pytest.raises(Exception, match="multi-frequency record"):
        read_record(folder / "r212")


def test_ingest_reads_stay_inside_the_root(tmp_path):
    root = make_corpus(tmp_path / "corpus", n_records=3)
    db = pd.read_csv(root / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    db.loc[0, "filename_lr"] = "../elsewhere/00001_lr"
    db.loc[1, "filename_lr"] = str(SAMPLE / db.loc[1, "filename_lr"])
    db.to_csv(root / "ptbxl_database.csv", index=False)
    summary = __import__("ingest").convert_ptbxl(root, tmp_path / "data", n_jobs=1)
    errors = pq.read_table(tmp_path / "data" / "errors.parquet").to_pandas()
    assert summary.n_converted == 1 and len(errors) == 2
    assert all("points outside --root" in m for m in errors["message"])


def test_unexpected_failures_say_the_cause_and_the_fix(tmp_path, model, monkeypatch):
    import infer.score

    folder = tmp_path / "in"
    _copy(folder)
    for exc, text in ((MemoryError(), "too large to hold in memory; split the record"),
                      (PermissionError(13, "Permission denied"), "permission denied; make the "
                                                                 "file readable"),
                      (RuntimeError("boom"), "could not be read (RuntimeError: boom); the file "
                                             "may be damaged")):
        def boom(*a, _exc=exc, **k):
            raise _exc

        monkeypatch.setattr(infer.score, "read_wfdb", boom)
        df = _rows(folder, model)
        assert text in df.loc["00001_lr", "message"]
        assert "unexpected" not in df.loc["00001_lr", "message"].split(".hea: ", 1)[1]


def test_training_names_the_records_of_another_length():
    import pyarrow as pa

    from ingest import signals_from_table

    table = pa.table({"ecg_id": [7, 8, 9],
                      "signal": [[0] * 12000, [0] * 12000, [0] * 36000]})
    with pytest.raises(ValueError, match=r"ecg_id 9 \(3000 samples\) differ from the usual 1000"):
        signals_from_table(table)


def test_reads_stay_inside_the_input(tmp_path, model):
    outside = tmp_path / "outside"
    _copy(outside, name="secret")
    folder = tmp_path / "in"
    folder.mkdir()
    for name, target in (("up", "../outside/secret.dat"), ("abs", str(outside / "secret.dat"))):
        text = (outside / "secret.hea").read_text().replace("secret.dat", target)
        (folder / f"{name}.hea").write_text(text.replace("secret ", f"{name} ", 1))
    df = _rows(folder, model)
    for name in ("up", "abs"):
        assert df.loc[name, "status"] == "error"
        assert "lies outside" in df.loc[name, "message"]


@pytest.mark.parametrize("case,message", [
    ("short", "3000 samples (30 s); PTB-XL records are 10 s, 1000 samples at 100 Hz"),
    ("empty", "0 samples (0 s); PTB-XL records are 10 s"),
    ("zeros", "the signal is constant on every lead (no ECG in it)"),
    ("sentinel", "samples missing (WFDB value -32768)"),
])
def test_ingest_refuses_implausible_signals(tmp_path, case, message):
    root = make_corpus(tmp_path / "corpus", n_records=3)
    rel = pd.read_csv(root / "ptbxl_database.csv")["filename_lr"][0]
    stem = Path(rel).name
    d = read_record(root / rel).signal
    d = {"short": np.tile(d, (3, 1)), "empty": d[:0], "zeros": np.zeros_like(d),
         "sentinel": np.full_like(d, -32768)}[case]
    _write_record((root / rel).parent, stem, d, 100)
    out = tmp_path / "data"
    convert = __import__("ingest").convert_ptbxl
    summary = convert(root, out, n_jobs=1)
    assert summary.n_converted == 2
    errors = pq.read_table(out / "errors.parquet").to_pandas()
    assert message in errors["message"][0]


@pytest.mark.parametrize("field,value,message", [
    ("age", "1e40", "field age = 1e+40 is not plausible (expected 0-120, or 300 for ages"),
    ("weight", "-5", "field weight = -5.0 is not plausible (expected 1-350)"),
    ("strat_fold", "11", "field strat_fold = '11' is out of range (PTB-XL folds are 1-10)"),
    ("strat_fold", "1e2", "field strat_fold = '1e2' is out of range (PTB-XL folds are 1-10)"),
    ("scp_codes", "{'NORM': 1e999}", "is not a non-empty dict of code -> likelihood (a number"),
    ("scp_codes", '{"NORM": true}', "is not a non-empty dict of code -> likelihood (a number"),
])
def test_ingest_refuses_implausible_metadata(tmp_path, field, value, message):
    root = make_corpus(tmp_path / "corpus", n_records=3)
    db = pd.read_csv(root / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    db.loc[0, field] = value
    db.to_csv(root / "ptbxl_database.csv", index=False)
    out = tmp_path / "data"
    summary = __import__("ingest").convert_ptbxl(root, out, n_jobs=1)
    assert summary.n_converted == 2
    errors = pq.read_table(out / "errors.parquet").to_pandas()
    assert message in errors["message"][0], errors["message"][0]


# ----------------------------------------------------------------------------- kills


def test_sigterm_leaves_nothing_and_stale_temps_are_removed(tmp_path):
    root = make_corpus(tmp_path / "corpus", n_records=None, rates=(500,))
    out = tmp_path / "data"
    cmd = [str(Path(sys.executable).parent / "ingest"), "ptbxl", "--root", str(root), "--out",
           str(out), "--rate", "500", "--n-jobs", "2", "--measurements"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".data.tmp-*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # workers are busy now
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
    deadline = time.time() + 15  # workers and loky's resource trackers wind down in a moment
    while time.time() < deadline:
        left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
        if not left.stdout.strip():
            break
        time.sleep(0.2)
    assert not left.stdout.strip(), "worker processes outlived the command by 15 s"
    # a run killed with SIGKILL leaves its temporary folder; the next run removes it
    stale = tmp_path / ".data.tmp-999999999-x"
    stale.mkdir()
    (stale / "part.parquet").write_bytes(b"partial")
    r = _invoke(ingest_cli, ["ptbxl", "--root", make_corpus(tmp_path / "c2", n_records=2),
                             "--out", out, "--n-jobs", "1"])
    assert r.exit_code == 0, r.output
    assert not stale.exists()
    assert "left by a run that was killed (pid 999999999)" in r.output


# ----------------------------------------------------------------------------- exit codes


def test_all_records_failing_is_nothing_done(tmp_path, model):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("")
    (folder / "b.csv").write_bytes(b"\x00\x01")
    out = tmp_path / "r.parquet"
    r = _invoke(infer_cli, ["score", "--input", folder, "--model", model.path, "--out", out])
    assert r.exit_code == ExitCode.FATAL, r.output
    assert "none of the 2 records could be scored" in r.output
    assert len(pd.read_parquet(out)) == 2  # the rows say why
    root = make_corpus(tmp_path / "corpus", n_records=2)
    for rel in pd.read_csv(root / "ptbxl_database.csv")["filename_lr"]:
        (root / (rel + ".dat")).unlink()
    r = _invoke(ingest_cli, ["ptbxl", "--root", root, "--out", tmp_path / "d", "--n-jobs", "1"])
    assert r.exit_code == ExitCode.FATAL, r.output
    assert "none of the 2 records could be converted; nothing written" in r.output
    assert not (tmp_path / "d").exists()


def test_tables_that_are_not_ecgs_are_skipped_not_failed(tmp_path, model):
    folder = tmp_path / "in"
    _copy(folder)
    out = tmp_path / "first.csv"
    _invoke(infer_cli, ["score", "--input", folder, "--model", model.path, "--out", out])
    shutil.copy(out, folder / "results.csv")  # yesterday's results inside tonight's input
    pd.DataFrame({"ID": [1, 2], "Sex": ["M", "F"], "Age": [50, 60],
                  "Rhythms": ["Sinus", "AF"]}).to_csv(folder / "ludb.csv", index=False)
    r = _invoke(infer_cli, ["score", "--input", folder, "--model", model.path, "--out",
                            tmp_path / "second.csv"])
    assert r.exit_code == ExitCode.OK, r.output
    df = pd.read_csv(tmp_path / "second.csv", keep_default_na=False).set_index("record_id")
    assert df.loc["results", "status"] == "skipped" and df.loc["ludb", "status"] == "skipped"
    assert "not an ECG table: no column is a lead" in df.loc["ludb", "message"]
    assert "2 skipped" in r.output


def test_messages_are_capped_and_headers_decoded(tmp_path, model):
    from common.records import parse_header
    from infer.score import _cap

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "huge.hea").write_text("huge 1000000 100 1000\n" + "x.dat 16 1000 16 0 0 0 0 I\n")
    rec = read_record(HEA100.with_suffix(""))
    hea = _write_record(folder, "UPPER", rec.signal, 100)
    text = hea.read_text() + "# Patient M\u00fcller, Ableitung \u2162\n"
    hea.unlink()
    (folder / "UPPER.HEA").write_bytes(text.encode("utf-8"))  # R.HEA is a header too
    df = _rows(folder, model)
    assert "1000000 signals; an ECG record has 1-64" in df.loc["huge", "message"]
    assert len(df.loc["huge", "message"]) < 300
    assert df.loc["UPPER", "status"] in ("ok", "warning"), df.loc["UPPER", "message"]
    assert len(_cap("x" * 10**6)) < 1100 and _cap("x" * 10**6).endswith("999000 more characters)")
    # lead names are UTF-8, with Latin-1 as the fallback; never mojibake
    line = "r 1 100 10\nr.dat 16 1000 16 0 0 0 0 {}\n"
    for encoding in ("utf-8", "latin-1"):
        (tmp_path / "n.hea").write_bytes(line.format("\u00c4VR").encode(encoding))
        assert parse_header(tmp_path / "n.hea").sig_names == ("\u00c4VR",)


# --------------------------------------------------------------- tests that let bugs through


def test_baseline_is_applied(tmp_path):
    """Every shipped record has baseline 0; real WFDB records often do not (format 212 with
    baseline 1024).  The physical signal must equal wfdb's, baseline subtracted."""
    rec = read_record(HEA100.with_suffix(""))
    d = (rec.signal // 4).astype(np.int64) + 1024
    wfdb.wrsamp("b", fs=100, units=["mV"] * 12, sig_name=list(LEADS), d_signal=d,
                fmt=["212"] * 12, adc_gain=[250.0] * 12, baseline=[1024] * 12,
                write_dir=str(tmp_path))
    ours = read_record(tmp_path / "b").to_millivolts()
    theirs = wfdb.rdrecord(str(tmp_path / "b")).p_signal
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert np.abs(ours).max() < 10  # 1024 ADC units of offset would be 4 mV everywhere


def test_a_multi_window_record_aggregates_its_windows_as_the_contract_says(tmp_path, model):
    mv = read_record(HEA100.with_suffix("")).to_millivolts()
    # 25 s whose windows differ: the record, the record with every lead inverted, its start
    long = np.concatenate([mv, -mv, mv[:500]])
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame(long, columns=list(LEADS)).to_csv(folder / "r.csv", index=False)
    w = model.contract.windows
    starts = window_starts(len(long), w.length, w.stride)
    assert starts[0] == 0 and starts[-1] == len(long) - w.length
    assert (np.diff(starts)[:-1] == w.stride).all()
    single = model.predict(np.stack([long[s : s + w.length] for s in starts])).astype(np.float64)
    logit = np.log(single) - np.log1p(-single)  # computed here, not with signals.windows
    expected = {"mean": single.mean(), "max": single.max(),
                "logit_mean": 1 / (1 + np.exp(-logit.mean()))}[w.aggregation]
    df = _rows(folder, model)
    assert df.loc["r", "n_windows"] == len(starts)
    assert df.loc["r", "mi_probability"] == pytest.approx(float(expected), abs=1e-6)
    # and not the first window alone
    assert abs(single[0] - expected) > 1e-4


def test_resampling_keeps_length_duration_and_shape():
    from infer.preprocess import resample

    hr = read_record(HEA500.with_suffix("")).to_millivolts()
    lr = read_record(HEA100.with_suffix("")).to_millivolts()
    ours = resample(hr, 500, 100)
    assert ours.shape == lr.shape == (1000, 12)
    # PTB-XL made its 100 Hz files with its own filter: close, lead by lead, sample by sample
    for j in range(12):
        assert np.corrcoef(ours[:, j], lr[:, j])[0, 1] > 0.95
    # a 1 % error in the ratio would stretch the record by 10 samples and show up here
    lag = np.argmax(np.correlate(ours[:, 1] - ours[:, 1].mean(),
                                 lr[:, 1] - lr[:, 1].mean(), "full")) - 999
    assert lag == 0


def test_band_boundaries():
    low, high = 0.2, 0.6
    assert band_for(high, low, high) == "MI"
    assert band_for(np.nextafter(high, 0), low, high) == "borderline"
    assert band_for(low, low, high) == "borderline"
    assert band_for(np.nextafter(low, 0), low, high) == "normal"


def test_readme_lists_every_exit_code():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("### Exit codes"):]
    for code in ExitCode:
        assert f"| {int(code)} |" in table, code
    assert "| 143 |" in table
    assert "## Failure modes" in readme
