"""Training, evaluation and export on the shipped sample (two epochs keep it quick)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from schemas import LEADS, MODEL_CONTRACT_KEYS, ModelContract
from train.dataset import SplitError, check_disjoint, load_split, parse_folds
from train.evaluate import (
    at_threshold,
    average_precision,
    bootstrap_auc_ci,
    choose_bands,
    evaluate,
    roc_auc,
)
from train.export import ExportError, export_onnx
from train.model import build_model

# ----------------------------------------------------------------------------- metrics


@pytest.fixture
def scores():
    rng = np.random.default_rng(7)
    y = rng.random(300) < 0.15
    # rounded so that there are many ties, which is where AUC implementations differ
    p = np.round(np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1), 2)
    return y, p


def test_metrics_agree_with_scikit_learn(scores):
    y, p = scores
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    for t in (0.2, 0.45, 0.7):
        m = at_threshold(y, p, t)
        pred = p >= t
        tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
        assert m["confusion_matrix"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
        assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
        assert m["specificity"] == pytest.approx(skm.recall_score(~y, ~pred))
        assert m["ppv"] == pytest.approx(skm.precision_score(y, pred))
        assert m["npv"] == pytest.approx(skm.precision_score(~y, ~pred))
        assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))


def test_bootstrap_interval_brackets_the_auc(scores):
    y, p = scores
    lo, hi = bootstrap_auc_ci(y, p, n_boot=300, seed=1)
    assert lo < roc_auc(y, p) < hi
    assert bootstrap_auc_ci(y, p, n_boot=300, seed=1) == (lo, hi)  # seeded


@pytest.mark.parametrize("seed", range(5))
def test_bands_are_ordered_and_meet_their_targets(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(200) < 0.2
    p = np.clip(rng.normal(0.35 + 0.25 * y, 0.15), 0, 1)
    bands = choose_bands(y, p, 0.95, 0.95)
    assert 0 <= bands.low <= bands.high <= 1
    assert at_threshold(y, p, bands.low)["sensitivity"] >= 0.95
    assert at_threshold(y, p, bands.high)["specificity"] >= 0.95
    # the tightest thresholds: moving either one inwards breaks its target
    assert at_threshold(y, p, np.nextafter(bands.low, 1))["sensitivity"] < 0.95
    assert at_threshold(y, p, np.nextafter(bands.high, 0))["specificity"] < 0.95


def test_bands_meet_in_the_middle_when_one_threshold_satisfies_both():
    y = np.array([0] * 20 + [1] * 20, dtype=bool)
    p = np.r_[np.linspace(0, 0.3, 20), np.linspace(0.7, 1, 20)]
    bands = choose_bands(y, p)
    assert bands.low == bands.high == pytest.approx(0.5, abs=0.21)
    result = evaluate(y, p, bands, n_boot=50)
    assert result["bands"]["borderline"]["records"] == 0


@pytest.mark.parametrize("confidence", [None, 0.95])
def test_referred_records_are_borderline_and_neither_missed_nor_falsely_called(confidence):
    """Records the scorer refers (a wide QRS of LBBB shape) are borderline whatever their
    score; the bands are chosen and judged with them counted so.  Referring the
    highest-scoring non-MI records lets the MI threshold fall, and a referred MI record
    below every threshold is no longer missed."""
    from train.evaluate import Bands, band_report, band_trade_off

    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.2
    p = np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0, 1)
    refer = np.zeros(len(y), bool)
    refer[np.argsort(np.where(y, -1, p))[-8:]] = True  # the 8 highest non-MI
    low_mi = np.flatnonzero(y)[np.argmin(p[y])]
    refer[low_mi] = True  # and the lowest MI
    plain = choose_bands(y, p, 0.9, 0.9, confidence=confidence)
    ref = choose_bands(y, p, 0.9, 0.9, confidence=confidence, refer=refer)
    assert ref.high < plain.high and ref.low >= plain.low
    got = ref.assign(p, refer)
    assert (got[refer] == "borderline").all()
    assert (got[~refer] == Bands(ref.low, ref.high).assign(p[~refer])).all()
    rep = band_report(y, p, ref, 0.9, 0.9, 0.95, refer=refer)
    # sensitivity counts MI not in normal, specificity non-MI not in MI, referred ones too
    assert rep["low"]["estimate"] == pytest.approx(np.mean(got[y] != "normal"))
    assert rep["high"]["estimate"] == pytest.approx(np.mean(got[~y] != "MI"))
    assert rep["referred"] == {"records": 9, "mi": 1}
    t = band_trade_off(y, p, 0.9, 0.9, confidence, refer=refer)
    assert t["borderline"] == pytest.approx(np.mean(got == "borderline"))
    assert t["referred"] == 9
    assert evaluate(y, p, ref, n_boot=20, refer=refer)["bands"]["borderline"]["records"] == (
        int((got == "borderline").sum()))


def test_band_report_says_whether_estimates_meet_their_targets():
    """Bands chosen on plain estimates (``confidence`` 0) are reported as such: per side
    whether the estimate meets the target (``met``) and, apart from it, whether the 95 %
    bound supports it; a fixed threshold that misses the target says NOT met."""
    from train.evaluate import Bands, band_report

    y = np.r_[np.ones(20, bool), np.zeros(80, bool)]
    p = np.r_[np.linspace(0.05, 0.95, 20), np.linspace(0.0, 0.6, 80)]
    # 18 of 20 MI at or above 0.14 (0.90), 76 of 80 non-MI below 0.57 (0.95)
    rep = band_report(y, p, Bands(0.14, 0.57), 0.90, 0.95, 0)
    assert rep["targets_as"] == "estimates" and rep["confidence"] == 0.95
    assert rep["low"]["estimate"] == pytest.approx(0.90) and rep["low"]["met"] is True
    assert rep["low"]["supported"] is False  # 18 of 20 proves about 0.72
    assert rep["low"]["statement"].startswith(
        "The sensitivity target of 0.90 is met as a plain estimate (0.900 on 20 MI records)")
    missed = band_report(y, p, Bands(0.5, 0.57), 0.90, 0.95, 0)
    assert missed["low"]["met"] is False
    assert "is NOT met as a plain estimate" in missed["low"]["statement"]
    bounds = band_report(y, p, Bands(0.14, 0.57), 0.90, 0.95, 0.95)
    assert bounds["targets_as"] == "bounds" and "met" not in bounds["low"]
    assert bounds["low"]["statement"].startswith("The sensitivity target of 0.90 is not "
                                                 "supported by the data: with 20 MI records")


# ----------------------------------------------------------------------------- data and models


def test_folds_parse_and_stay_patient_disjoint(data_100: Path):
    assert parse_folds("1-6") == (1, 2, 3, 4, 5, 6)
    assert parse_folds("1,3,5-6") == (1, 3, 5, 6)
    with pytest.raises(SplitError, match=r"folds must look like 1-8"):
        parse_folds("one")
    splits = {"train": load_split(data_100, (1, 2, 3, 4, 5, 6)),
              "validation": load_split(data_100, (7,)), "test": load_split(data_100, (8,))}
    check_disjoint(splits)  # PTB-XL keeps each patient in one fold
    with pytest.raises(SplitError, match=r"train and test folds overlap: \[6\]"):
        check_disjoint({"train": splits["train"], "test": load_split(data_100, (6, 8))})
    with pytest.raises(SplitError, match=r"no records in folds \[10\]; the dataset holds folds "
                       r"\[1, 2, 3, 4, 5, 6, 7, 8\]"):
        load_split(data_100, (10,))


def test_seed_architecture_is_the_reference_notebook_model():
    import keras

    model = build_model("seed", 1000, 100, np.zeros(12), np.ones(12))
    layers = [x for x in model.layers if not isinstance(x, keras.layers.InputLayer)]
    # normalisation is part of every model (so the export takes raw mV); the rest is the notebook
    assert [type(x).__name__ for x in layers] == [
        "Normalization", "Conv1D", "MaxPooling1D", "LSTM", "Dropout", "Dense",
    ]
    conv, pool, lstm, drop, dense = layers[1:]
    assert (conv.filters, conv.kernel_size, conv.activation.__name__) == (64, (3,), "relu")
    assert pool.pool_size == (2,)
    assert lstm.units == 50
    assert drop.rate == 0.2
    assert (dense.units, dense.activation.__name__) == (1, "sigmoid")
    assert type(model.optimizer).__name__ == "Adam"
    assert model.loss == "binary_crossentropy"
    from train.model import TRAINING_DEFAULTS

    assert TRAINING_DEFAULTS["seed"]["batch_size"] == 16
    assert TRAINING_DEFAULTS["seed"]["epochs"] == 10


# ----------------------------------------------------------------------------- fit and export


def test_run_folder_is_complete(trained):
    run_dir, run, _ = trained
    for name in ("model.keras", "run.json", "metrics.json", "history.csv", "train.log",
                 "predictions.parquet", "roc_pr.png", "confusion.png", "history.png",
                 "scores.png", "report.md"):
        assert (run_dir / name).is_file(), name
    assert run["epochs_run"] == 2
    assert run["records"] == {"train": 265, "validation": 44, "test": 44}
    assert "epoch 2:" in (run_dir / "train.log").read_text()
    report = (run_dir / "report.md").read_text()
    assert "![roc_pr](roc_pr.png)" in report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == 44 and metrics["test"]["n_mi"] == 8
    assert sum(b["records"] for b in metrics["test"]["bands"].values()) == 44


def test_calibration_lowers_the_brier_score_on_held_out_data(trained):
    """Class-weighted training leaves the scores uncalibrated; the chosen calibrator, fitted on
    some folds' out-of-fold scores, must lower the Brier score on the others and on the test
    folds it never saw (a reliability diagram shows it)."""
    run_dir, run, _ = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert cal["chosen"] == run["calibration"]["method"] != "none"
    held = cal["held_out"]
    assert held[cal["chosen"]]["brier"] < held["none"]["brier"]
    assert cal["test"]["brier"] < cal["test"]["brier_raw"]
    assert cal["test"]["ece"] < cal["test"]["ece_raw"]
    assert (run_dir / "reliability.png").is_file()
    report = (run_dir / "report.md").read_text()
    assert "## Calibration" in report and "Brier" in report and "reliability.png" in report


def test_bands_hold_as_confidence_bounds_on_out_of_fold_predictions(trained):
    """Bands are chosen on the calibrated out-of-fold predictions of the cross-fitted models:
    the low threshold is the highest whose exact 95 % lower bound of sensitivity meets the
    target (or, when no threshold can, the widest), and the bounds the run reports equal an
    independent Clopper-Pearson computation (scipy's exact binomial interval)."""
    from scipy.stats import binomtest

    from train.evaluate import clopper_pearson_lower

    run_dir, run, _ = trained
    pred = pq.read_table(run_dir / "predictions.parquet").to_pandas()
    oof = pred[pred["split"] == "out_of_fold"]
    assert len(oof) == 309 and set(oof["ecg_id"]) == set(pred[pred["split"].isin(
        ["train", "validation"])]["ecg_id"])  # every non-test record, once
    y, p = oof["mi"].to_numpy(), oof["mi_probability"].to_numpy()
    low, high = run["bands"]["low"], run["bands"]["high"]
    achieved = run["bands"]["achieved"]
    k, n = int((p[y] >= low).sum()), int(y.sum())
    m, n_neg = int((p[~y] < high).sum()), int((~y).sum())
    for got, (kk, nn) in ((achieved["low"], (k, n)), (achieved["high"], (m, n_neg))):
        independent = binomtest(kk, nn).proportion_ci(0.90, method="exact").low if kk else 0.0
        assert got["lower_bound"] == pytest.approx(independent, abs=1e-9)
        assert got["n"] == nn
    # 41 MI records cannot show 95 % sensitivity at 95 % confidence: said in plain words,
    # and the widest low threshold is used
    assert n == 41 and not achieved["low"]["supported"]
    assert "not supported by the data" in achieved["low"]["statement"]
    assert "59 MI records are needed" in achieved["low"]["statement"]
    assert low <= p[y].min() or low == pytest.approx(high)
    # the high threshold is the lowest that shows the specificity target
    if achieved["high"]["supported"] and low < high:
        below = np.nextafter(np.max(p[~y][p[~y] < high]), -1)
        assert clopper_pearson_lower(int((p[~y] <= below).sum()), n_neg) < 0.95
    assert "not supported by the data" in (run_dir / "report.md").read_text()


def test_onnx_metadata_is_complete_and_outputs_match_keras(trained, data_100):
    import keras

    run_dir, run, path = trained
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert {f"mi_screen.{k}" for k in MODEL_CONTRACT_KEYS} <= set(props)
    contract = ModelContract.from_metadata(props)
    assert contract.leads == LEADS and contract.fs == 100
    assert contract.input_samples == run["input_samples"] == run["window"]["length"]
    assert (contract.window_stride, contract.aggregation) == (run["window"]["stride"],
                                                              run["window"]["aggregation"])
    assert (contract.band_low, contract.band_high) == (run["bands"]["low"], run["bands"]["high"])
    assert contract.data_manifest_sha256 == run["data_manifest_sha256"]
    assert contract.metrics["test_n"] == 44
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    assert inp.name == contract.input_name and inp.shape[1:] == [contract.input_samples, 12]
    split = load_split(data_100, (1, 8))
    x, _ = split.windows(contract.windows)
    onnx_p = session.run(None, {inp.name: x})[0].reshape(-1)
    keras_p = keras.models.load_model(run_dir / "model.keras").predict(x, verbose=0).reshape(-1)
    # the graph ends with the run's calibration map, computed with ONNX operators
    from train.calibrate import Calibrator

    np.testing.assert_allclose(onnx_p, Calibrator(**run["calibration"])(keras_p), atol=1e-4)
    assert contract.calibration == run["calibration"]
    assert contract.band_bounds == run["bands"]["achieved"]
    card = (path.parent / "model_card.md").read_text()
    assert "Not a medical device" in card and "ROC AUC" in card


def test_export_that_disagrees_with_keras_fails_and_writes_nothing(trained, tmp_path):
    run_dir, _, _ = trained
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"onnxruntime and Keras differ by .* the export is not "
                       r"written"):
        export_onnx(run_dir, out, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_train_cli_help_teaches():
    from click.testing import CliRunner

    from train.cli import cli

    for command in ("fit", "export"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output


def test_ensemble_export_is_the_mean_of_the_fold_models(trained, data_100, tmp_path):
    """The alternative export: the cross-fitted fold models averaged in one graph, then the
    same calibration; onnxruntime agrees with Keras, and metrics.json compares it with the
    final model on the test folds."""
    import keras

    from train.calibrate import Calibrator
    from train.export import export_onnx

    run_dir, run, _ = trained
    folds = sorted((run_dir / "fold_models").glob("fold_*.keras"))
    assert len(folds) == 7
    out = tmp_path / "ens.onnx"
    result = export_onnx(run_dir, out, ensemble=True)
    assert result["max_abs_diff"] < 1e-4
    split = load_split(data_100, (8,))
    x, _ = split.windows(ModelContract.from_metadata(
        {p.key: p.value for p in onnx.load(out).metadata_props}).windows)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_p = session.run(None, {"ecg_mv": x})[0].reshape(-1)
    mean = np.mean([keras.models.load_model(f).predict(x, verbose=0).reshape(-1)
                    for f in folds], axis=0)
    np.testing.assert_allclose(onnx_p, Calibrator(**run["calibration"])(mean), atol=1e-4)
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert "mean of 7 cross-fitted fold models" in props["mi_screen.architecture"]
    ens = json.loads((run_dir / "metrics.json").read_text())["ensemble"]
    assert ens["models"] == 7 and 0 <= ens["test_roc_auc"] <= 1
