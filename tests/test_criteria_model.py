"""The criteria model end to end on the shipped sample: the default learner (the blend of the
additive curves and the smoothed trees on the measured MI criteria), and the additive learner,
cross-fitted, calibrated, exported as one ONNX graph, scored without scikit-learn or TensorFlow.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from infer.cli import cli
from infer.score import Model, score_dir
from schemas import CRITERIA_FIELDS, ModelContract, ModelContractError
from signals.criteria import FEATURE_NAMES, FEATURES_VERSION
from tests.conftest import REPO, SAMPLE, SAMPLE_FOLDS


@pytest.fixture(scope="module")
def criteria_run(data_100, tmp_path_factory):
    from train.export import export_onnx
    from train.fit import FitConfig, fit

    run_dir = tmp_path_factory.mktemp("criteria") / "run"
    run = fit(data_100, run_dir, FitConfig(arch="criteria", **SAMPLE_FOLDS))
    onnx_path = run_dir.parent / "criteria.onnx"
    export_onnx(run_dir, onnx_path)
    return run_dir, run, onnx_path


def _score(folder, onnx_path, out) -> None:
    """Score a folder into ``out`` as ``infer score`` does."""
    table, _ = score_dir(folder, Model(onnx_path, threads=1))
    pq.write_table(table, out)


def _scores(path) -> dict[str, dict]:
    t = pq.read_table(path).to_pylist()
    return {r["record_id"].split("_")[0].lstrip("0"): r for r in t}


def test_one_graph_with_the_contract(criteria_run):
    run_dir, run, onnx_path = criteria_run
    proto = onnx.load(onnx_path)
    assert [i.name for i in proto.graph.input] == ["mi_features"]
    ops = [n.op_type for n in proto.graph.node]
    # the default learner: the curves' table look-ups and the smoothed trees' Erf, no hard
    # tree ensemble; the probability, then the calibration
    assert run["config"]["learner"] == "blend"
    assert "TreeEnsembleRegressor" not in ops and {"Erf", "Floor", "Gather"} <= set(ops)
    assert "Sigmoid" in ops
    model = Model(onnx_path)
    assert model.contract.features["function"] == FEATURES_VERSION
    assert model.contract.features["names"] == list(FEATURE_NAMES)
    assert run["features"]["fs"] == 100
    card = (onnx_path.parent / "criteria_card.md").read_text()
    assert "ONNX vs numpy" in card and "the trees' most used" in card
    assert "generalised additive model" in card and "scored smoothed" in card
    limits = card.split("## Limitations")[1]
    assert "both parts are smooth" in limits and "step functions" not in limits
    assert '"The criteria model, blend learner"' in card


def test_scorer_reproduces_training(criteria_run, tmp_path):
    """The scorer's probabilities of the test-fold records equal training's (same features,
    same trees, same calibration) within 1e-5."""
    run_dir, run, onnx_path = criteria_run
    pred = pq.read_table(run_dir / "predictions.parquet").to_pylist()
    test = {str(r["ecg_id"]): r["mi_probability"] for r in pred if r["split"] == "test"}
    assert len(test) == run["records"]["test"]
    out = tmp_path / "r.parquet"
    _score(SAMPLE / "records100", onnx_path, out)
    scored = _scores(out)
    diffs = [abs(scored[k]["mi_probability"] - p) for k, p in test.items()]
    assert max(diffs) < 1e-5


def test_results_carry_the_criteria(criteria_run, tmp_path):
    """Every scored record gets the criteria columns, and they say what the ECG shows: records
    with inferior pathological Q waves name inferior leads, and the words match the columns."""
    out = tmp_path / "r.parquet"
    _score(SAMPLE / "records100", criteria_run[2], out)
    rows = pq.read_table(out).to_pylist()
    assert all(r["mi_criteria"] for r in rows if r["status"] != "error")
    names = {f.name for f in CRITERIA_FIELDS}
    assert names <= set(pq.read_schema(out).names)
    q_inferior = [r for r in rows if r["q_leads"] and
                  len(set(r["q_leads"].split(",")) & {"II", "III", "AVF"}) >= 2]
    assert q_inferior and all("pathological Q inferior" in r["mi_criteria"] for r in q_inferior)
    # records meeting criteria score higher than records meeting none
    hit = [r["mi_probability"] for r in rows if "none in two" not in r["mi_criteria"]]
    none = [r["mi_probability"] for r in rows if "none in two" in r["mi_criteria"]]
    assert np.median(hit) > 2 * np.median(none)
    assert all(r["st_max_mv"] >= r["st_min_mv"] for r in rows if r["st_max_mv"] is not None)


def test_lbbb_shape_is_referred(criteria_run, tmp_path):
    """A wide QRS of LBBB shape is borderline whatever its probability, and the row says
    why: the shipped complete LBBB ECGs, which the criteria read as infarcts, go to review;
    every other record keeps the band of its probability.  Training chose the bands the
    same way and says so in the contract."""
    import pandas as pd

    run_dir, run, onnx_path = criteria_run
    model = Model(onnx_path)
    assert model.contract.features["referral"] == run["bands"]["referral"]
    assert run["bands"]["achieved"]["referred"]["records"] >= 5
    assert "left bundle branch block" in (run_dir / "report.md").read_text()
    out = tmp_path / "r.parquet"
    _score(SAMPLE / "records100", onnx_path, out)
    rows = _scores(out)
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv", index_col="ecg_id")
    clbbb = [str(i) for i, c in db["scp_codes"].items() if "'CLBBB'" in c]
    assert len(clbbb) >= 5
    from infer.plots import page_title

    low, high = model.contract.band_low, model.contract.band_high
    for r in rows.values():
        if r["lbbb_pattern"]:
            assert r["band"] == "borderline"
            assert "left bundle branch block" in r["message"]
            assert r["mi_criteria"].startswith("criteria do not apply")
            assert "band borderline (referred: LBBB shape)" in page_title(r)
        elif r["mi_probability"] is not None:
            want = "MI" if r["mi_probability"] >= high else (
                "normal" if r["mi_probability"] < low else "borderline")
            assert r["band"] == want and "referred" not in page_title(r)
    assert all(rows[k]["lbbb_pattern"] for k in clbbb)
    # without the rule in its contract (a model exported before it) no band is changed
    proto = onnx.load(onnx_path)
    for p in proto.metadata_props:
        if p.key == "mi_screen.features":
            f = json.loads(p.value)
            del f["referral"]
            p.value = json.dumps(f)
    old = tmp_path / "old.onnx"
    onnx.save(proto, old)
    _score(SAMPLE / "records100", old, tmp_path / "old.parquet")
    before = _scores(tmp_path / "old.parquet")
    assert any(before[k]["band"] != "borderline" for k in clbbb)
    assert all(before[k]["lbbb_pattern"] for k in clbbb)
    assert not any("referred" in page_title(r) for r in before.values())
    # the batch report shows what drove each verdict, the referral too
    from infer.report import write_report

    page = tmp_path / "report.html"
    write_report(out, page)
    text = page.read_text()
    assert ">mi_criteria<" in text
    shown = [tr for tr in text.split("<tr")[1:] if "criteria do not apply: wide QRS" in tr]
    assert len(shown) == sum(r["lbbb_pattern"] for r in rows.values())


def test_500hz_model_reproduces_training(data_500, tmp_path):
    """A criteria model trained at 500 Hz: the scorer, measuring the 500 Hz files with the
    same band-limited timing as training, gives training's probabilities within 1e-5, and
    refers the complete LBBB ECGs."""
    import pandas as pd

    from train.export import export_onnx
    from train.fit import FitConfig, fit

    run_dir = tmp_path / "run"
    run = fit(data_500, run_dir, FitConfig(arch="criteria", **SAMPLE_FOLDS))
    assert run["fs"] == 500 and run["bands"]["referral"]
    onnx_path = tmp_path / "m500.onnx"
    export_onnx(run_dir, onnx_path)
    out = tmp_path / "r.parquet"
    _score(SAMPLE / "records500", onnx_path, out)
    scored = _scores(out)
    pred = pq.read_table(run_dir / "predictions.parquet").to_pylist()
    test = {str(r["ecg_id"]): r["mi_probability"] for r in pred if r["split"] == "test"}
    assert max(abs(scored[k]["mi_probability"] - p) for k, p in test.items()) < 1e-5
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv", index_col="ecg_id")
    clbbb = [str(i) for i, c in db["scp_codes"].items() if "'CLBBB'" in c]
    assert all(scored[k]["lbbb_pattern"] and scored[k]["band"] == "borderline" for k in clbbb)


def test_rates_agree(criteria_run, data_100, tmp_path):
    """The 500 Hz files, resampled by the scorer, against the 100 Hz files, for the default
    learner (the blend).  Measured on 2026-12-07 with mi_features/3: median 0.0003, 95th
    percentile 0.0066, largest 0.045, 2 records over 0.02, 1 band change, and the 88
    records of the validation and test folds, which the model did not train on, within
    0.0097: the band target (at most one change) is met, and the 0.02 one on every record
    the model has not seen; the two over it are training records (a Q in aVF read 0.04 mV
    deep in one file and 0.06 in the other, at a split the trees learned from that record).
    With mi_features/2 (the clinical QRS onset for the model too): 0.069, 3 over 0.02, and
    0.041 on the unseen records.  The hard trees, the default before, measured 0.026, 0.13,
    22 and 4 (the additive learner alone meets both targets, test_additive_rates_agree).
    With the resampler's 44.6 Hz cut-off (2026-12-07, mi_features/5): median 0.0001, 95th
    percentile 0.0020, largest 0.019, none over 0.02, 1 band change; through the former
    45 Hz cut-off 0.0003, 0.0052, 0.016, none and none, which the median's and the 95th
    percentile's bounds refuse."""
    from train.dataset import load_split

    onnx_path = criteria_run[2]
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _score(SAMPLE / "records100", onnx_path, a)
    _score(SAMPLE / "records500", onnx_path, b)
    ra, rb = _scores(a), _scores(b)
    assert ra.keys() == rb.keys() and len(ra) == 353
    d = np.array([abs(ra[k]["mi_probability"] - rb[k]["mi_probability"]) for k in ra])
    changed = sum(ra[k]["band"] != rb[k]["band"] for k in ra)
    print(f"100 vs 500 Hz: median {np.median(d):.4f}, p95 {np.percentile(d, 95):.4f}, "
          f"max {d.max():.3f}, {int((d > 0.02).sum())} over 0.02, {changed} band changes")
    assert np.median(d) < 0.0002
    assert np.percentile(d, 95) < 0.0035
    assert d.max() < 0.025, sorted(d)[-5:]
    assert (d > 0.02).sum() <= 1
    assert changed <= 1
    unseen = {str(int(i)) for i in load_split(data_100, SAMPLE_FOLDS["val_folds"]
                                              + SAMPLE_FOLDS["test_folds"]).ecg_id}
    d_unseen = np.array([abs(ra[k]["mi_probability"] - rb[k]["mi_probability"])
                         for k in ra if k in unseen])
    assert len(d_unseen) == 88 and d_unseen.max() < 0.02, sorted(d_unseen)[-3:]


def test_scoring_needs_neither_sklearn_nor_tensorflow(criteria_run, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for hea in sorted((SAMPLE / "records100").glob("*/*.hea"))[:3]:
        shutil.copy(hea, inp)
        shutil.copy(hea.with_suffix(".dat"), inp)
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from infer.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['score', '--input', {str(inp)!r}, '--out', "
        f"{str(tmp_path / 'r.parquet')!r}, '--model', {str(criteria_run[2])!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', "
        "'sklearn', 'scipy', 'pandas'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_contract_refuses_other_measurements(criteria_run, tmp_path):
    """A model trained on another version of the measurements is refused before any record
    is read, with what to do."""
    proto = onnx.load(criteria_run[2])
    props = {p.key: p.value for p in proto.metadata_props}
    features = json.loads(props["mi_screen.features"])
    features["function"] = "signals.criteria.mi_features/0"
    props["mi_screen.features"] = json.dumps(features)
    with pytest.raises(ModelContractError, match="train the model again"):
        ModelContract.from_metadata(props, source="old.onnx")
    features["function"], features["names"] = FEATURES_VERSION, features["names"][:-1]
    props["mi_screen.features"] = json.dumps(features)
    with pytest.raises(ModelContractError, match="measurement columns"):
        ModelContract.from_metadata(props, source="old.onnx")
    features["names"] = list(FEATURE_NAMES)
    features["referral"] = "signals.criteria.lbbb_like/0"
    props["mi_screen.features"] = json.dumps(features)
    with pytest.raises(ModelContractError, match="send records to borderline by the rule"):
        ModelContract.from_metadata(props, source="old.onnx")


def test_help_names_the_columns():
    text = CliRunner().invoke(cli, ["score", "--help"]).output
    for name in ("mi_criteria", "q_leads", "st_max_mv", "lbbb_pattern"):
        assert name in text


def test_ensemble_export_refused(criteria_run, tmp_path):
    from train.export import ExportError, export_onnx

    with pytest.raises(ExportError, match="without --ensemble"):
        export_onnx(criteria_run[0], tmp_path / "e.onnx", ensemble=True)


def test_confidence_zero_treats_the_targets_as_estimates(criteria_run, data_100, tmp_path):
    """``--confidence 0``: the bands meet the targets as out-of-fold estimates, which the
    sample can show where it cannot prove them; fewer records are borderline than with 95 %
    bounds, and the bounds are still reported at 95 %."""
    from train.cli import cli as train_cli

    out = tmp_path / "estimates"
    folds = [arg for key, value in SAMPLE_FOLDS.items()
             for arg in (f"--{key.replace('_', '-')}", ",".join(map(str, value)))]
    result = CliRunner().invoke(train_cli, ["fit", "--data", str(data_100), "--out", str(out),
                                            "--min-sensitivity", "0.90", "--confidence", "0",
                                            *folds, "-q"])
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert "INFO" not in result.output  # -q: warnings only, though train.log takes INFO
    assert "INFO" in (out / "train.log").read_text()
    assert summary.startswith("criteria (blend): test ROC AUC") and "epochs" not in summary
    bands = json.loads((out / "run.json").read_text())["bands"]
    achieved = bands["achieved"]
    assert bands["confidence"] == 0 and achieved["confidence"] == 0.95
    assert achieved["low"]["estimate"] >= 0.90 and achieved["high"]["estimate"] >= 0.95
    # what was chosen on is recorded, and each side says whether its estimate meets the
    # target; the 41 MI records cannot prove 0.90 as a bound, and the statement says both
    assert achieved["targets_as"] == "estimates"
    assert achieved["low"]["met"] is True and achieved["low"]["supported"] is False
    assert achieved["low"]["statement"].startswith(
        "The sensitivity target of 0.90 is met as a plain estimate (")
    assert "but not supported as a bound: the 95% lower confidence bound" in (
        achieved["low"]["statement"])
    default_achieved = criteria_run[1]["bands"]["achieved"]
    assert default_achieved["targets_as"] == "bounds" and "met" not in default_achieved["low"]
    assert "| met |" in (out / "report.md").read_text()
    oof = pq.read_table(out / "predictions.parquet").to_pandas().query("split == 'out_of_fold'")
    default = pq.read_table(criteria_run[0] / "predictions.parquet").to_pandas()
    default = default.query("split == 'out_of_fold'")
    default_bands = criteria_run[1]["bands"]

    def borderline(p, b):
        return float(((p >= b["low"]) & (p < b["high"])).mean())

    assert (borderline(oof.mi_probability, bands)
            < borderline(default.mi_probability, default_bands))
    from train.export import export_onnx

    export_onnx(out, tmp_path / "estimates.onnx")
    card = (tmp_path / "estimates_card.md").read_text()
    assert "plain estimate on the out-of-fold records" in card
    assert "lower confidence bound." not in card.split("## Data")[0].split("Targets:")[1]
    assert "(target 0.90: met as an estimate, NOT supported as a bound)" in card
    # the scorer's summary line says the targets are estimates, with the bound beside them
    result = CliRunner().invoke(cli, [
        "score", "--input", str(SAMPLE / "records100" / "00000"), "--model",
        str(tmp_path / "estimates.onnx"), "--out", str(tmp_path / "r.parquet")])
    assert result.exit_code == 0, result.output
    low = achieved["low"]
    assert (f"sensitivity {low['estimate']:.2f} (target 0.90 as an estimate met; lower bound "
            f"{low['lower_bound']:.2f} on 41 records)") in result.output


@pytest.mark.parametrize("level", ["0.3", "1"])
def test_confidence_between_zero_and_a_half_is_a_usage_error(data_100, tmp_path, level):
    from schemas import ExitCode
    from train.cli import cli as train_cli

    result = CliRunner().invoke(train_cli, ["fit", "--data", str(data_100), "--out",
                                            str(tmp_path / "r"), "--confidence", level])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--confidence" in result.output
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def additive_run(data_100, tmp_path_factory):
    from train.export import export_onnx
    from train.fit import FitConfig, fit

    run_dir = tmp_path_factory.mktemp("additive") / "run"
    run = fit(data_100, run_dir, FitConfig(arch="criteria", learner="additive", **SAMPLE_FOLDS))
    onnx_path = run_dir.parent / "additive.onnx"
    export_onnx(run_dir, onnx_path)
    return run_dir, run, onnx_path


def test_additive_graph_reproduces_training(additive_run, tmp_path):
    """The additive learner (`train fit --learner additive`): one graph of table look-ups, no
    tree node; the scorer's probabilities equal training's; the card says what it is."""
    run_dir, run, onnx_path = additive_run
    ops = [n.op_type for n in onnx.load(onnx_path).graph.node]
    assert "TreeEnsembleRegressor" not in ops and "Gather" in ops
    assert run["config"]["learner"] == "additive"
    pred = pq.read_table(run_dir / "predictions.parquet").to_pylist()
    test = {str(r["ecg_id"]): r["mi_probability"] for r in pred if r["split"] == "test"}
    out = tmp_path / "r.parquet"
    _score(SAMPLE / "records100", onnx_path, out)
    scored = _scores(out)
    assert max(abs(scored[k]["mi_probability"] - p) for k, p in test.items()) < 1e-5
    card = (onnx_path.parent / "additive_card.md").read_text()
    assert "ONNX vs numpy" in card and "generalised additive model" in card
    assert "step functions" not in card
    # the card points at the benchmark section that measured this learner
    assert '"The criteria model, additive learner"' in card
    # out of fold it separates MI from the rest on the shipped records
    oof = [r for r in pred if r["split"] == "out_of_fold"]
    from train.evaluate import roc_auc
    assert roc_auc(np.array([r["mi"] for r in oof]),
                   np.array([r["mi_probability"] for r in oof])) > 0.75


def test_additive_model_is_smooth_and_round_trips(additive_run, data_100, tmp_path):
    """The tables in numpy and in onnxruntime agree on the shipped records' measurements and
    on edge cases (NaN, beyond the training range); a small change in one measurement makes a
    proportionally small change in the log-odds (no steps); save/load keeps the model."""
    import onnxruntime as ort

    from train.criteria import (
        GRID_POINTS,
        AdditiveModel,
        CriteriaModel,
        load_model,
        split_features,
    )
    from train.dataset import load_split

    run_dir, run, _ = additive_run
    model = load_model(run_dir / "model.pkl")
    assert isinstance(model, AdditiveModel)
    f = split_features(load_split(data_100, (1, 2)))
    edge = np.vstack([f[:2], np.full((1, f.shape[1]), np.nan, np.float32),
                      model.lo - 10 * model.step * GRID_POINTS,
                      model.lo + 10 * model.step * GRID_POINTS])
    sess = ort.InferenceSession(model.to_onnx().SerializeToString(),
                                providers=["CPUExecutionProvider"])
    for rows in (f, edge.astype(np.float32)):
        got = sess.run(None, {"mi_features": rows})[0][:, 0]
        assert np.max(np.abs(got - model.predict_features(rows))) < 1e-5
    # smooth: a nudge of 1 % of a measurement's range moves the log-odds by at most 1 % of
    # that measurement's whole reach (times the steepest slope's share), never a step
    base = model.log_odds(f)
    slopes = np.abs(np.diff(model.table, axis=1)).max(axis=1)
    for i in np.flatnonzero(model.spread > 0)[:20]:
        g = f.copy()
        g[:, i] += 0.01 * model.step[i] * 60
        moved = np.abs(model.log_odds(g) - base)
        assert np.nanmax(moved) <= slopes[i] * 0.6 + 1e-6, (i, np.nanmax(moved))
    model.save(tmp_path / "m.pkl")
    again = load_model(tmp_path / "m.pkl")
    assert np.array_equal(again.predict_features(f), model.predict_features(f))
    # a run folder from before the additive learner (no "learner" key) loads as trees
    import pickle
    trees = CriteriaModel.fit_features(f, np.arange(len(f)) % 2, 100, bags=1)
    state = {"fs": 100, "estimators": trees.estimators, "features": FEATURES_VERSION}
    (tmp_path / "old.pkl").write_bytes(pickle.dumps(state))
    assert isinstance(load_model(tmp_path / "old.pkl"), CriteriaModel)


def test_learner_is_for_the_criteria_arch(data_100, tmp_path):
    from train.cli import cli as train_cli

    r = CliRunner().invoke(train_cli, ["fit", "--data", str(data_100), "--out",
                                       str(tmp_path / "r"), "--arch", "cnnlstm", "--learner",
                                       "additive"])
    assert r.exit_code == 2 and "--learner additive is for --arch criteria" in r.output


def test_additive_rates_agree(additive_run, tmp_path):
    """The 500 Hz files, resampled by the scorer, against the 100 Hz files, for the additive
    learner: the issue's target, every record within 0.02 and at most one band change.
    Measured on 2026-12-07 with mi_features/3 and the curves on the measurements only (no
    counts of leads): 95th percentile 0.0051, largest 0.015, none over 0.02, one band change
    (mi_features/2: 0.0055, 0.015, none, none).  With mi_features/5 and the resampler's
    44.6 Hz cut-off: 0.0016, 0.006, none, none; through the former 45 Hz cut-off 0.0035,
    0.009, none, none, which the 95th percentile's bound refuses.
    (On 2026-12-05, with mi_features/1 and the counts: largest 0.24, 6 over 0.02, 1 band
    change, from two records read as QS at one rate and rS at the other, and from counts
    stepping by a lead.)"""
    onnx_path = additive_run[2]
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _score(SAMPLE / "records100", onnx_path, a)
    _score(SAMPLE / "records500", onnx_path, b)
    ra, rb = _scores(a), _scores(b)
    d = np.array([abs(ra[k]["mi_probability"] - rb[k]["mi_probability"]) for k in ra])
    changed = sum(ra[k]["band"] != rb[k]["band"] for k in ra)
    print(f"additive 100 vs 500 Hz: p95 {np.percentile(d, 95):.4f}, max {d.max():.3f}, "
          f"{int((d > 0.02).sum())} over 0.02, {changed} band changes")
    assert np.percentile(d, 95) < 0.0025
    assert d.max() < 0.02, sorted(d)[-5:]
    assert changed <= 1
