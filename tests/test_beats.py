"""The ECG5000 beat system end to end on the shipped 500 beats: ingest (both layouts, bad rows),
features and beat cutting, repeated cross-validation, ONNX export with the contract, and
scoring of beat files and of 12-lead records with --beats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import REPO, SAMPLE, copy_records

from common.beatfiles import read_beats
from ingest.ecg5000 import convert_ecg5000, load_beats
from schemas import BEATS_SCHEMA, ERRORS_SCHEMA, RESULTS_SCHEMA, ExitCode, ModelContract
from signals.beats import BEAT_FEATURES, beat_features, cut_beats, znormalise

ECG5000 = REPO / "data" / "ecg5000" / "ECG5000_TRAIN.txt"
RAW = np.loadtxt(ECG5000)  # independent reader: numpy, not ours


# ----------------------------------------------------------------------------- ingest


def test_ucr_file_ingests_every_beat_with_its_class(tmp_path):
    summary = convert_ecg5000(ECG5000, tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "beats.parquet")
    assert table.schema.equals(BEATS_SCHEMA)
    assert summary.n_beats == table.num_rows == len(RAW) == 500 and summary.n_errors == 0
    assert table["class"].to_pylist() == RAW[:, 0].astype(int).tolist()
    assert table["abnormal"].to_pylist() == (RAW[:, 0] != 1).tolist()
    _, x, y = load_beats(tmp_path / "out")
    np.testing.assert_allclose(x, RAW[:, 1:], rtol=1e-6, atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["layout"] == "ucr" and manifest["counts"]["abnormal"] == int(y.sum()) == 208
    assert manifest["counts"]["classes"] == {"1": 292, "2": 177, "3": 10, "4": 19, "5": 2}


def test_tensorflow_layout_is_detected_by_content(tmp_path):
    """TensorFlow's ecg.csv: 140 values then 1 (normal) or 0 (abnormal), comma-separated."""
    path = tmp_path / "ecg.csv"
    label = (RAW[:, 0] == 1).astype(int)
    rows = [",".join(f"{v:.7e}" for v in r) + f",{lab}" for r, lab in zip(RAW[:50, 1:], label[:50],
                                                                        strict=True)]
    path.write_text("\n".join(rows) + "\n")
    beats = read_beats(path)
    assert beats.layout == "tensorflow" and len(beats) == 50
    assert beats.abnormal.tolist() == (label[:50] == 0).tolist()
    assert (beats.cls == 0).all()  # no class in this layout: null in the table
    convert_ecg5000(path, tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / "beats.parquet")["class"].null_count == 50


def test_bad_rows_become_error_rows_and_the_rest_converts(tmp_path):
    rows = [ln.split() for ln in ECG5000.read_text().splitlines()[:20]]
    rows[3] = rows[3][:-5]  # 5 values short
    rows[7][10] = "abc"
    rows[9][0] = "7.0"  # class 7
    rows[12][20] = "nan"
    lines = ["  ".join(r) for r in rows]
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    summary = convert_ecg5000(path, tmp_path / "out")
    assert summary.n_beats == 16 and summary.n_errors == 4
    errors = pq.read_table(tmp_path / "out" / "errors.parquet")
    assert errors.schema.equals(ERRORS_SCHEMA)
    by_line = dict(zip(errors["path"].to_pylist(), errors["message"].to_pylist(), strict=True))
    assert "136 values, a beat row has 141" in by_line[f"{path}:4"]
    assert "'abc' is not a number" in by_line[f"{path}:8"]
    assert "label 7 (the first value) is not one of [1, 2, 3, 4, 5]" in by_line[f"{path}:10"]
    assert "NaN or infinite" in by_line[f"{path}:13"]
    assert pq.read_table(tmp_path / "out" / "beats.parquet")["beat_id"].to_pylist() == [
        i for i in range(1, 21) if i not in (4, 8, 10, 13)]


def test_ingest_cli_exit_codes(tmp_path):
    from ingest.cli import cli

    ok = CliRunner().invoke(cli, ["ecg5000", "--input", str(ECG5000), "--out",
                                  str(tmp_path / "o")])
    assert ok.exit_code == 0 and "500 beats (208 abnormal" in ok.output
    again = CliRunner().invoke(cli, ["ecg5000", "--input", str(ECG5000), "--out",
                                     str(tmp_path / "o")])
    assert again.exit_code == ExitCode.OUTPUT_EXISTS
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    r = CliRunner().invoke(cli, ["ecg5000", "--input", str(empty), "--out", str(tmp_path / "e")])
    assert r.exit_code == ExitCode.FATAL and "empty" in r.output
    junk = tmp_path / "junk.txt"
    junk.write_text("1 2 3\n4 5 6\n")
    r = CliRunner().invoke(cli, ["ecg5000", "--input", str(junk), "--out", str(tmp_path / "j")])
    assert r.exit_code == ExitCode.FATAL and "none of its 2 rows is a beat" in r.output
    assert not (tmp_path / "j").exists()
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join(ECG5000.read_text().splitlines()[:5] + ["1 2 3"]) + "\n")
    r = CliRunner().invoke(cli, ["ecg5000", "--input", str(partial), "--out",
                                 str(tmp_path / "p")])
    assert r.exit_code == ExitCode.PARTIAL and "5 beats" in r.output


# ----------------------------------------------------------------------------- signals


def test_features_read_the_waves_of_real_beats():
    f = beat_features(RAW[:, 1:])
    assert f.shape == (500, len(BEAT_FEATURES)) and np.isfinite(f).all()
    col = {n: f[:, i] for i, n in enumerate(BEAT_FEATURES)}
    normal = RAW[:, 0] == 1
    # every beat has a tallest wave; a z-scored beat's peaks lie within its range
    assert (col["n_r_peaks"] >= 1).all()
    assert (col["r_amp_mean"] <= RAW[:, 1:].max(axis=1) + 1e-6).all()
    # the features tell classes apart (what the feature model relies on): normal beats have a
    # narrower main deflection than ventricular (class 2-3) ones, on average
    assert col["qrs_duration"][normal].mean() != pytest.approx(
        col["qrs_duration"][~normal].mean(), rel=0.05)


def test_cut_beats_of_a_real_record_look_like_ecg5000_beats():
    from common.records import read_record
    from signals.measure import ecg_peaks

    rec = read_record(sorted(SAMPLE.glob("records500/*/*.hea"))[0].with_suffix(""))
    lead_ii = rec.to_millivolts()[:, 1]
    peaks = ecg_peaks(lead_ii, rec.fs)
    beats, starts = cut_beats(lead_ii, peaks)
    assert beats.shape == (len(peaks) - 1, 140) and (starts == peaks[:-1]).all()
    np.testing.assert_allclose(beats.mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(beats.std(axis=1, ddof=1), 1, atol=1e-9)
    # each beat starts at an R peak: its first sample is near its maximum
    assert (beats[:, 0] > np.quantile(beats, 0.9, axis=1)).mean() > 0.8
    assert cut_beats(lead_ii, peaks[:1])[0].shape == (0, 140)
    np.testing.assert_allclose(znormalise(RAW[:, 1:]), RAW[:, 1:], atol=0.02)  # UCR z-scored


# ----------------------------------------------------------------------------- train, export


@pytest.fixture(scope="module")
def beat_runs(tmp_path_factory):
    """Both beat models, cross-validated (3 folds x 1 repeat, few epochs) and exported."""
    from train.beats import BeatConfig, fit_beats
    from train.export import export_onnx

    root = tmp_path_factory.mktemp("beats")
    convert_ecg5000(ECG5000, root / "data")
    out = {}
    for arch, epochs in (("beatcnn", 8), ("seed003", 15)):
        run = fit_beats(root / "data", root / arch, BeatConfig(arch=arch, folds=3, repeats=1,
                                                               epochs=epochs))
        export_onnx(root / arch, root / f"{arch}.onnx")
        out[arch] = (root / arch, run, root / f"{arch}.onnx")
    return out


def test_cross_validation_is_stratified_and_reproducible():
    from train.beats import stratified_folds

    y = (RAW[:, 0] != 1).astype(int)
    f = stratified_folds(y, 5, seed=0)
    for k in range(5):
        assert abs(y[f == k].mean() - y.mean()) < 0.02 and abs((f == k).sum() - 100) <= 1
    assert (stratified_folds(y, 5, seed=0) == f).all()
    assert (stratified_folds(y, 5, seed=1) != f).any()


@pytest.mark.parametrize("arch", ["beatcnn", "seed003"])
def test_beat_run_reports_cross_validated_metrics(beat_runs, arch):
    from sklearn import metrics as skm

    run_dir, run, _ = beat_runs[arch]
    m = json.loads((run_dir / "metrics.json").read_text())["cross_validation"]
    pred = pq.read_table(run_dir / "predictions.parquet").to_pandas()
    assert len(pred) == 500 and m["n"] == 500 and m["n_abnormal"] == 208
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(pred["abnormal"], pred["repeat_1"]))
    assert m["recall"] == pytest.approx(
        skm.recall_score(pred["abnormal"], pred["repeat_1"] >= 0.5))
    assert m["roc_auc_ci95"][0] <= m["roc_auc"] <= m["roc_auc_ci95"][1]
    assert m["roc_auc"] > 0.8  # ECG5000 is easy; a broken pipeline is at 0.5
    report = (run_dir / "report.md").read_text()
    assert "one patient" in report and "roc_pr.png" in report
    assert run["task"] == "beats" and run["bands"]["low"] <= run["bands"]["high"]


def test_beat_models_carry_a_beat_contract_and_match_keras(beat_runs):
    import keras
    import onnx
    import onnxruntime as ort

    from train.beats import model_inputs
    from train.calibrate import Calibrator

    for arch, (run_dir, run, path) in beat_runs.items():
        props = {p.key: p.value for p in onnx.load(path).metadata_props}
        c = ModelContract.from_metadata(props)
        assert c.task == "beats" and c.beat["inputs"] == run["inputs"]
        assert c.input_samples == (140 if arch == "beatcnn" else len(BEAT_FEATURES))
        x = model_inputs(RAW[:64, 1:], arch, c.beat["denoiser"])
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        onnx_p = s.run(None, {c.input_name: x})[0].reshape(-1)
        keras_p = keras.models.load_model(run_dir / "model.keras").predict(x, verbose=0)
        np.testing.assert_allclose(onnx_p, Calibrator(**run["calibration"])(keras_p.reshape(-1)),
                                   atol=1e-4)
        card = (path.parent / f"{arch}_card.md").read_text()
        assert "one patient" in card and "not a validated detector" in card


def test_beat_contract_is_checked(beat_runs):
    import dataclasses

    import onnx

    from schemas import ModelContractError

    path = beat_runs["beatcnn"][2]
    c = ModelContract.from_metadata({p.key: p.value for p in onnx.load(path).metadata_props})
    for change, match in [({"beat": {**c.beat, "inputs": "spectrum"}}, "beat inputs 'spectrum'"),
                          ({"input_samples": 139}, "input holds 140 values, the contract says "
                                                   "139"),
                          ({"beat": {**c.beat, "lead": "X9"}}, "beat lead 'X9'"),
                          ({"task": "eeg"}, "task 'eeg'")]:
        bad = dataclasses.replace(c, **change)
        with pytest.raises(ModelContractError, match=match):
            ModelContract.from_metadata(bad.to_metadata())
    with pytest.raises(ModelContractError, match=r"the graph takes \[.*\], a beat model takes"):
        c.validate("m", input_shape=["batch", 140, 1])


# ----------------------------------------------------------------------------- scoring


def test_scoring_a_beat_file_gives_one_row_per_beat(beat_runs, tmp_path):
    from infer import Model, score_dir

    folder = tmp_path / "in"
    folder.mkdir()
    lines = ECG5000.read_text().splitlines()[:30]
    lines[5] = "1 2 3"
    (folder / "beats.txt").write_text("\n".join(lines) + "\n")
    model = Model(beat_runs["beatcnn"][2])
    table, summary = score_dir(folder, model)
    assert table.schema.equals(RESULTS_SCHEMA)
    df = table.to_pandas()
    assert len(df) == 30 and summary.status == {"ok": 29, "warning": 0, "error": 1,
                                                "skipped": 0}
    assert df["beat_index"].tolist() == list(range(1, 31))
    bad = df.set_index("beat_index").loc[6]
    assert bad["status"] == "error" and "line 6: 3 values" in bad["message"]
    ok = df[df["status"] == "ok"]
    assert ok["abnormal_probability"].between(0, 1).all() and ok["mi_probability"].isna().all()
    assert set(ok["band"]) <= {"normal", "borderline", "abnormal"}
    # the same probabilities as the exported graph on those beats
    from train.beats import model_inputs

    rows = [i for i in range(30) if i != 5]
    x = model_inputs(RAW[rows, 1:], "beatcnn")
    np.testing.assert_allclose(ok["abnormal_probability"], model.predict(x), atol=1e-6)


def test_beats_cli_cuts_records_and_reports_fractions(beat_runs, tmp_path):
    from infer.cli import cli

    folder = copy_records(tmp_path / "rec", 6, rate=500)
    model = str(beat_runs["seed003"][2])
    out = tmp_path / "r.parquet"
    r = CliRunner().invoke(cli, ["score", "--model", model, "--input", str(folder), "--out",
                                 str(out), "--beats"])
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out)
    assert len(df) == 6 and (df["status"] != "error").all()
    assert (df["beats_scored"] >= 5).all()  # 10 s of sinus rhythm
    np.testing.assert_allclose(df["abnormal_fraction"], df["abnormal_beats"] / df["beats_scored"])
    assert df["message"].str.contains("beats of lead II").all()
    # without --beats a 12-lead record with a beat model is an error that says what to do
    r = CliRunner().invoke(cli, ["score", "--model", model, "--input", str(folder), "--out",
                                 str(tmp_path / "x.parquet")])
    assert r.exit_code == ExitCode.FATAL
    assert "pass --beats" in pd.read_parquet(tmp_path / "x.parquet")["message"][0]
    # --beats with an MI model, or an unknown lead, is a usage error
    r = CliRunner().invoke(cli, ["score", "--model", model, "--input", str(folder), "--out",
                                 str(tmp_path / "y.parquet"), "--beats", "--beat-lead", "Q7"])
    assert r.exit_code == ExitCode.USAGE and "not a lead name" in r.output


def test_beats_flag_needs_a_beat_model(trained, tmp_path):
    from infer.cli import cli

    r = CliRunner().invoke(cli, ["score", "--model", str(trained[2]), "--input",
                                 str(SAMPLE / "records100" / "00000"), "--out",
                                 str(tmp_path / "z.parquet"), "--beats"])
    assert r.exit_code == ExitCode.USAGE and "--beats needs a beat model" in r.output


def test_beat_architectures_listed_by_the_cli_exist():
    from train.beats import BEAT_ARCHITECTURES
    from train.cli import BEAT_ARCHITECTURES as CLI_LIST

    assert sorted(CLI_LIST) == sorted(BEAT_ARCHITECTURES)


def test_data_readme_cites_the_sources():
    text = (REPO / "data" / "ecg5000" / "README.md").read_text()
    for needle in ("UCR Time Series", "Dau", "BIDMC", "chf07", "Goldberger", "one patient"):
        assert needle in text
    assert Path(ECG5000).stat().st_size > 1_000_000


def test_beat_export_refuses_an_ensemble(beat_runs, tmp_path):
    from train.export import ExportError, export_onnx

    run_dir = next(iter(beat_runs.values()))[0]
    with pytest.raises(ExportError, match="no fold models to average.*without --ensemble"):
        export_onnx(run_dir, tmp_path / "e.onnx", ensemble=True)
    assert not (tmp_path / "e.onnx").exists()
