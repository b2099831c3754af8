"""``infer score`` on the shipped records: agreement with training, CSV layouts, bad input,
the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pyarrow.parquet as pq
import pytest
import wfdb
from click.testing import CliRunner
from conftest import REPO, SAMPLE
from scipy.signal import resample_poly

from infer import Model, ScoreOptions, discover, score_dir, score_inputs
from infer.cli import cli
from schemas import LEADS, RESULTS_SCHEMA, ExitCode

# 40 records of each class mix: the first 40 of the sample
RECORDS = sorted(SAMPLE.glob("records100/*/*.hea"))[:40]


@pytest.fixture(scope="module")
def model(trained) -> Model:
    return Model(trained[2])


def _copy_records(dst: Path, heas: list[Path]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for hea in heas:
        for ext in (".hea", ".dat"):
            shutil.copy(hea.with_suffix(ext), dst / hea.with_suffix(ext).name)
    return dst


def _score(folder: Path, model: Model, **kwargs) -> pd.DataFrame:
    table, _ = score_dir(folder, model, **kwargs)
    assert table.schema.equals(RESULTS_SCHEMA)
    return table.to_pandas().set_index("record_id")


# ----------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("which", ["trained", "trained_windowed"])
def test_scores_equal_keras_predictions(which, request, data_100):
    """The scorer's whole path (read WFDB, mV, lead order, windows, ONNX with calibration,
    aggregation) gives what training's evaluation gives on the ingested records (Keras, the
    same windows, aggregation, then the calibrator): no train/serve skew.  For the default
    model (whole records) and a windowed one (2.5 s windows, maximum)."""
    import keras

    from signals.windows import WindowSpec
    from train.calibrate import Calibrator
    from train.dataset import load_split
    from train.fit import predict

    run_dir, run, path = request.getfixturevalue(which)
    model = Model(path)
    split = load_split(data_100, (8,))
    window = run["window"]
    spec = WindowSpec(window["length"], window["stride"], window["aggregation"])
    assert model.contract.windows == spec  # the contract carries training's windows
    keras_p = Calibrator(**run["calibration"])(
        predict(keras.models.load_model(run_dir / "model.keras"), split, spec))
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv", index_col="ecg_id")
    inputs = [(str(SAMPLE / (db.loc[i, "filename_lr"] + ".hea")), "wfdb") for i in split.ecg_id]
    table, summary = score_inputs(inputs, model)
    # every record is scored; a few are "poor" (wander, pops) and scored with a warning
    assert summary.status["ok"] + summary.status["warning"] == len(split) == 44
    assert set(table.column("n_windows").to_pylist()) == {len(spec.starts(1000))}
    if which == "trained_windowed":
        assert spec == WindowSpec(250, 125, "max") and len(spec.starts(1000)) == 7
    np.testing.assert_allclose(table.column("mi_probability").to_numpy(), keras_p, atol=1e-4)
    # the record predictions training saved (predictions.parquet, split "test") are these too
    saved = pq.read_table(run_dir / "predictions.parquet").to_pandas()
    saved = saved[saved["split"] == "test"].set_index("ecg_id").loc[split.ecg_id]
    np.testing.assert_allclose(saved["mi_probability"], keras_p, atol=1e-6)


def test_100hz_and_500hz_copies_score_alike(tmp_path, model):
    """PTB-XL's 100 Hz files were downsampled by its authors with their own filter; the scorer
    resamples the 500 Hz files with a polyphase filter.  The two signals differ by filter
    ripple only, so scores may differ slightly: we allow 0.05 per record (a tenth of the
    probability range that separates the bands in practice) and require the same ranking."""
    lr = _score(_copy_records(tmp_path / "lr", RECORDS), model)
    hr_heas = [SAMPLE / "records500" / h.parent.name / h.name.replace("_lr", "_hr")
               for h in RECORDS]
    hr = _score(_copy_records(tmp_path / "hr", hr_heas), model)
    hr.index = hr.index.str.replace("_hr", "_lr")
    assert (hr["input_fs"] == 500).all() and (hr["status"] == "ok").all()
    assert hr["message"].str.contains("resampled from 500 Hz to 100 Hz").all()
    diff = (lr["mi_probability"] - hr.loc[lr.index, "mi_probability"]).abs()
    assert diff.max() <= 0.05, diff.max()
    rho = np.corrcoef(lr["mi_probability"].rank(),
                      hr.loc[lr.index, "mi_probability"].rank())[0, 1]
    assert rho > 0.95


def _write_csvs(folder: Path, hea: Path) -> dict[str, Path]:
    rec = wfdb.rdrecord(str(hea.with_suffix("")))
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rec.p_signal, columns=rec.sig_name)
    paths = {"pandas": folder / "pandas_default.csv", "noindex": folder / "no_index.csv",
             "headerless": folder / "headerless.csv", "aliases": folder / "aliases.csv",
             "semicolon": folder / "semicolon.csv"}
    df.to_csv(paths["pandas"])  # with pandas' unnamed index column
    df.to_csv(paths["noindex"], index=False)
    df.to_csv(paths["headerless"], index=False, header=False)
    shuffled = df[list(reversed(df.columns))]  # other order, other spellings
    shuffled.columns = [{"AVR": "aVR", "AVL": "aVL", "AVF": "aVF", "II": "MLII"}.get(c, c.lower())
                        for c in shuffled.columns]
    shuffled.to_csv(paths["aliases"], index=False)
    df.to_csv(paths["semicolon"], index=False, sep=";")
    return paths


def test_csv_written_from_a_record_scores_like_the_record(tmp_path, model):
    hea = RECORDS[5]
    wfdb_p = _score(_copy_records(tmp_path / "w", [hea]), model)["mi_probability"].iloc[0]
    _write_csvs(tmp_path / "csv", hea)
    got = _score(tmp_path / "csv", model)
    assert (got["status"] == "ok").all(), got["message"].tolist()
    assert len(got) == 5
    np.testing.assert_allclose(got["mi_probability"], wfdb_p, atol=1e-5)
    assert (got["leads_found"] == ",".join(LEADS)).all()


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(folder: Path) -> dict[str, tuple[str, str]]:
    """One file per kind of bad input, with the expected (status, message pattern)."""
    folder.mkdir(parents=True, exist_ok=True)
    rec = wfdb.rdrecord(str(RECORDS[0].with_suffix("")))
    df = pd.DataFrame(rec.p_signal, columns=rec.sig_name)
    cases = {}
    (folder / "empty.csv").write_bytes(b"")
    cases["empty"] = ("error", r"empty\.csv: the file is empty")
    (folder / "garbage.csv").write_bytes(bytes(range(256)) * 20)
    cases["garbage"] = ("error", r"garbage\.csv: binary content, not a CSV text file")
    df.iloc[:, :11].to_csv(folder / "leads11.csv", index=False)
    cases["leads11"] = ("error", r"leads11\.csv: missing leads V6; pass --allow-missing-leads")
    df.iloc[:, :11].to_csv(folder / "headerless11.csv", index=False, header=False)
    cases["headerless11"] = ("error", r"headerless11\.csv: 11 columns and no header; expected 12")
    nan = df.copy()
    nan.iloc[100:110, 3] = np.nan
    nan.to_csv(folder / "nan.csv", index=False)
    cases["nan"] = ("error", r"nan\.csv: 10 rows have empty or NaN values \(columns AVR\)")
    text = df.copy().astype(object)
    text.iloc[50, 2] = "lead-off"
    text.to_csv(folder / "text.csv", index=False)
    cases["text"] = ("error", r"text\.csv: column 'III' holds text \('lead-off'\)")
    unknown = df.copy()
    unknown.columns = [f"ch{i}" for i in range(12)]
    unknown.to_csv(folder / "unknown.csv", index=False)
    cases["unknown"] = ("error", r"unknown\.csv: missing leads I,II,.*unknown column names "
                        r"'ch0'")
    df.iloc[:300].to_csv(folder / "short.csv", index=False)
    cases["short"] = ("error", r"short\.csv: 3\.0 s long, shorter than the model's 10 s input; "
                      r"pass --pad-short")
    _copy_records(folder, [RECORDS[1]])
    (folder / RECORDS[1].with_suffix(".dat").name).unlink()
    cases[RECORDS[1].stem] = ("error", r"_lr\.dat: signal file not found")
    _copy_records(folder, [RECORDS[2]])
    hea = folder / RECORDS[2].name
    hea.write_text(hea.read_text().replace(" 100 1000", " 100 1200", 1))
    cases[RECORDS[2].stem] = ("error", r"_lr\.dat: holds 1000 samples per lead but .* says 1200; "
                              r"the file is truncated")
    for fs in (250, 360):
        sig = resample_poly(rec.p_signal, fs, 100, axis=0)
        wfdb.wrsamp(f"at{fs}hz", fs=fs, units=rec.units, sig_name=rec.sig_name, p_signal=sig,
                    fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    write_dir=str(folder))
        cases[f"at{fs}hz"] = ("ok", rf"resampled from {fs} Hz to 100 Hz")
    os.symlink(folder / "nowhere.csv", folder / "unreadable.csv")
    cases["unreadable"] = ("error", r"unreadable\.csv: the CSV file is a link to .*nowhere\.csv, "
                           r"which does not exist; fix or remove the link")
    _copy_records(folder, [RECORDS[3]])
    cases[RECORDS[3].stem] = ("ok", r"^$")
    return cases


def test_bad_input_gets_a_row_and_the_batch_completes(tmp_path, model):
    cases = _bad_inputs(tmp_path / "in")
    got = _score(tmp_path / "in", model)
    assert sorted(got.index) == sorted(cases)
    for rid, (status, pattern) in cases.items():
        row = got.loc[rid]
        assert row["status"] == status, (rid, row["message"])
        assert pd.Series([row["message"]]).str.contains(pattern, regex=True).iloc[0], (
            rid, row["message"])
        if status == "error":
            assert pd.isna(row["mi_probability"]) and pd.isna(row["band"])
        else:
            assert 0 <= row["mi_probability"] <= 1 and row["band"] in ("normal", "borderline", "MI")


def test_resampled_records_score_like_the_original(tmp_path, model):
    _bad_inputs(tmp_path / "in")
    got = _score(tmp_path / "in", model)
    original = _score(_copy_records(tmp_path / "o", [RECORDS[0]]), model)["mi_probability"]
    for rid in ("at250hz", "at360hz"):
        assert abs(got.loc[rid, "mi_probability"] - original.iloc[0]) <= 0.05


def test_pad_short_and_missing_leads_are_opt_in_warnings(tmp_path, model):
    _bad_inputs(tmp_path / "in")
    got = _score(tmp_path / "in", model, pattern="*.csv",
                 options=ScoreOptions(pad_short=True, allow_missing_leads=True))
    assert set(got["format"]) == {"csv"}  # --pattern kept the WFDB records out
    assert got.loc["short", "status"] == "warning"
    assert "3.0 s record padded with zeros to 10 s (--pad-short)" in got.loc["short", "message"]
    assert got.loc["leads11", "status"] == "warning"
    assert got.loc["leads11", "leads_filled"] == "V6"
    assert got.loc["unknown", "status"] == "error"  # unknown names are never guessed


def test_discovery_pattern_and_recursion(tmp_path):
    _copy_records(tmp_path / "a" / "b", RECORDS[:2])
    (tmp_path / "a" / "x.csv").write_text("I,II\n")
    (tmp_path / "a" / ".hidden.csv").write_text("")
    (tmp_path / "a" / "notes.txt").write_text("")
    found = discover(tmp_path / "a").inputs
    assert [(Path(p).name, f) for p, f in found] == [
        (RECORDS[0].name, "wfdb"), (RECORDS[1].name, "wfdb"), ("x.csv", "csv")]
    assert [Path(p).name for p, _ in discover(tmp_path / "a", recursive=False).inputs] == ["x.csv"]
    assert [Path(p).name for p, _ in discover(tmp_path / "a", pattern="b/*").inputs] == [
        RECORDS[0].name, RECORDS[1].name]


def test_long_record_is_scored_in_windows(tmp_path, model):
    rec = wfdb.rdrecord(str(RECORDS[0].with_suffix("")))
    long = np.concatenate([rec.p_signal, rec.p_signal, rec.p_signal[:500]])  # 25 s
    pd.DataFrame(long, columns=rec.sig_name).to_csv(tmp_path / "long.csv", index=False)
    got = _score(tmp_path, model)
    w = model.contract.windows
    assert got.loc["long", "n_windows"] == len(w.starts(2500)) > 1
    assert w.starts(2500)[-1] == 2500 - w.length  # the last window ends with the record
    assert got.loc["long", "duration_s"] == 25.0


# ----------------------------------------------------------------------------- command line


def test_scoring_imports_nothing_heavy(trained, tmp_path):
    """The hot path of `infer score` on 100 Hz WFDB records (a cold start) imports no
    TensorFlow, and none of what only some records or options need: pandas (odd CSV files),
    scipy (resampling), matplotlib, Dask, fsspec, importlib.metadata (package versions for
    manifests; 0.09 s of a cold start).  pandas still works afterwards."""
    _copy_records(tmp_path / "in", RECORDS[:3])
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from infer.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['score', '--input', {str(tmp_path / 'in')!r}, "
        f"'--out', {str(tmp_path / 'r.parquet')!r}, '--model', {str(trained[2])!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', "
        "'tf2onnx', 'pandas', 'scipy', 'matplotlib', 'distributed', 'dask', 'fsspec'} "
        "| ({'importlib.metadata'} & set(sys.modules)))\n"
        "import pyarrow.parquet as pq\n"
        f"df = pq.read_table({str(tmp_path / 'r.parquet')!r}).to_pandas()\n"
        "print(heavy, len(df), type(df).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] 3 DataFrame"


def test_cli_exit_codes_and_messages(trained, tmp_path):
    runner = CliRunner()
    model = str(trained[2])
    inp = _copy_records(tmp_path / "in", RECORDS[:4])
    out = tmp_path / "r.parquet"
    args = ["score", "--input", str(inp), "--model", model]
    result = runner.invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == ExitCode.OK, result.output
    assert "4 inputs: 4 ok, 0 warnings, 0 errors, 0 skipped; bands:" in result.output
    # the summary says what the bands achieve, with their bounds, from the contract
    assert ("sensitivity 1.00 (lower bound 0.93 on 41 records, target 0.95 NOT supported)"
            in result.output)
    assert pq.read_table(out).num_rows == 4
    # never silently overwritten
    before = out.read_bytes()
    result = runner.invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == ExitCode.OUTPUT_EXISTS
    assert result.output == (f"Error: {out}: output exists; pass --overwrite to replace it, or "
                             "choose another --out\n")
    assert out.read_bytes() == before
    # partial failure: exit 1, results still written, CSV when asked
    (inp / "empty.csv").write_text("")
    csv_out = tmp_path / "r.csv"
    result = runner.invoke(cli, [*args, "--out", str(csv_out)])
    assert result.exit_code == ExitCode.PARTIAL
    assert "5 inputs: 4 ok, 0 warnings, 1 errors, 0 skipped" in result.output
    assert len(pd.read_csv(csv_out)) == 5
    # --fail-on-error: fatal, nothing written
    result = runner.invoke(cli, [*args, "--out", str(tmp_path / "f.parquet"), "--fail-on-error"])
    assert result.exit_code == ExitCode.FATAL
    assert "empty.csv: the file is empty; re-export the record (--fail-on-error: nothing " \
           "written)" in result.output
    assert not (tmp_path / "f.parquet").exists()
    # usage errors
    result = runner.invoke(cli, [*args, "--out", str(tmp_path / "u.parquet"), "--bands", "0.8,0.2"])
    assert result.exit_code == ExitCode.USAGE
    assert "need 0 <= LOW <= HIGH <= 1; got '0.8,0.2'" in result.output


def test_cli_refuses_a_model_without_contract_and_an_empty_folder(trained, tmp_path):
    proto = onnx.load(trained[2])
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, bare)
    inp = _copy_records(tmp_path / "in", RECORDS[:1])
    runner = CliRunner()
    result = runner.invoke(cli, ["score", "--input", str(inp), "--model", str(bare), "--out",
                                 str(tmp_path / "r.parquet")])
    assert result.exit_code == ExitCode.FATAL
    assert result.output.startswith(f"Error: {bare}: not an mi-screen model: metadata_props lacks "
                                    "mi_screen.contract_version")
    assert "export the model with `train export`" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["score", "--input", str(tmp_path / "empty"), "--model",
                                 str(trained[2]), "--out", str(tmp_path / "r.parquet")])
    assert result.exit_code == ExitCode.FATAL
    assert result.output == f"Error: {tmp_path / 'empty'}: no .hea or .csv files to score\n"
    assert not (tmp_path / "r.parquet").exists()


def test_help_teaches():
    result = CliRunner().invoke(cli, ["score", "--help"])
    assert result.exit_code == 0
    for text in ("Example:", "--pad-short", "--allow-missing-leads", "--csv-fs", "--bands"):
        assert text in result.output


@pytest.mark.parametrize("variant", ["index", "no-index", "semicolon", "tab", "no-header",
                                     "spaces", "crlf", "blank-first-line", "time-column",
                                     "gap", "text-cell", "ragged", "repeated-name"])
def test_csv_fast_path_reads_what_pandas_reads(tmp_path, variant):
    """Numbers-only tables take numpy.loadtxt; everything else goes to pandas, which says
    what is wrong.  Both must give the same signal, names and errors."""
    from infer.readers import InputError, _parse_numeric, _parse_with_pandas, read_csv

    rec = wfdb.rdrecord(str(RECORDS[3].with_suffix("")))
    df = pd.DataFrame(rec.p_signal, columns=rec.sig_name)
    sep = {"semicolon": ";", "tab": "\t"}.get(variant, ",")
    if variant == "time-column":
        df.insert(0, "time", np.arange(len(df)) / 100)
    text = df.to_csv(sep=sep, index=variant == "index", header=variant != "no-header",
                     float_format="%.4f")
    if variant == "spaces":
        text = text.replace(",", ", ")
    elif variant == "crlf":
        text = text.replace("\n", "\r\n")
    elif variant == "blank-first-line":
        text = "\n" + text
    elif variant == "gap":
        text = text.replace("\n0.", "\n,", 1)
    elif variant == "text-cell":
        text = text.replace("\n0.", "\nabc,", 1)
    elif variant == "ragged":  # a data row with one value too many
        lines = text.split("\n")
        lines[3] += f"{sep}1"
        text = "\n".join(lines)
    elif variant == "repeated-name":
        text = text.replace("III", "II", 1)
    path = tmp_path / "r.csv"
    path.write_text(text)
    first = text.lstrip().split("\n", 1)[0]
    tokens = [t.strip().strip('"').strip("'") for t in first.split(sep)]
    has_header = variant != "no-header"
    fast, names = _parse_numeric(text, sep, tokens if has_header else None)
    try:
        slow, slow_names = _parse_with_pandas(str(path), text, sep, has_header)
    except InputError as e:
        assert fast is None, f"pandas refuses it ({e}) but the fast path read it"
        with pytest.raises(InputError):
            read_csv(str(path), fs=100)
        return
    if variant in ("gap",):  # read, then refused for the gap by read_csv
        assert fast is None
        with pytest.raises(InputError, match="rows have empty or NaN values"):
            read_csv(str(path), fs=100)
        return
    if fast is None:  # only tables that are not plain numbers may take the slow path
        assert variant in ("crlf", "repeated-name"), variant
    else:
        np.testing.assert_array_equal(fast, slow)
        assert names == slow_names
    got = read_csv(str(path), fs=100)
    np.testing.assert_array_equal(got.signal, slow)
    assert got.names == slow_names
