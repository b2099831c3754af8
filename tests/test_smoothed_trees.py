"""The smoothed trees and the blend learner (train.criteria): the smoothing is the exact mean of
the hard trees over Gaussian noise on the measurements, the graph computes it operation for
operation, and the blend is the stated weighted sum of its parts.  Fitted on the shipped
records' measurements."""

from __future__ import annotations

import pickle

import numpy as np
import onnxruntime as ort
import pytest

from signals.criteria import FEATURE_NAMES, FEATURES_VERSION


@pytest.fixture(scope="module")
def features(data_100):
    """Measurements and labels of the shipped records in folds 1-6 (training) and 7-8."""
    from train.criteria import split_features
    from train.dataset import load_split

    train, other = load_split(data_100, (1, 2, 3, 4, 5, 6)), load_split(data_100, (7, 8))
    return split_features(train), train.y.astype(int), split_features(other)


def _session(model):
    return ort.InferenceSession(model.to_onnx().SerializeToString(),
                                providers=["CPUExecutionProvider"])


def _edge_rows(f: np.ndarray) -> np.ndarray:
    """Records as measured, one with nothing measured, and measurements far out of range."""
    return np.vstack([f[:3], np.full((1, f.shape[1]), np.nan, np.float32),
                      f[:1] * 1e3, -np.abs(f[1:2]) * 1e3]).astype(np.float32)


def test_smoothed_trees_are_the_mean_over_noise(features):
    """Scored smoothed, the trees give what the hard trees give on average when every
    measurement is jittered by N(0, sigma): checked by Monte Carlo on shipped records (a
    split read the wrong way round, a leaf on the wrong path or noise of the wrong size
    would miss by far more than the sampling error)."""
    from train.criteria import CriteriaModel

    f, y, other = features
    soft = CriteriaModel.fit_features(f, y, 100, bags=1, smoothing=0.3)
    hard = CriteriaModel(soft.estimators, 100)  # the same trees, steps kept
    assert soft.smoothed and not hard.smoothed
    rng = np.random.default_rng(0)
    rows = other[[0, 5, 11, 17]]
    draws = 4000
    for x in rows:
        jittered = (x[None] + rng.standard_normal((draws, len(x))) * soft.sigma).astype(
            np.float32)
        z = hard.log_odds(jittered)  # scikit-learn's own prediction
        err = 5 * z.std() / np.sqrt(draws) + 1e-3
        got = soft.log_odds(x[None])[0]
        assert abs(got - z.mean()) < err, (got, z.mean(), err)
    # the smoothing does something: the records' soft and hard scores are not all equal,
    # and without noise the model is scikit-learn's hard trees exactly
    assert np.abs(soft.log_odds(other) - hard.log_odds(other)).max() > 0.01
    sk = np.mean([e._raw_predict(other)[:, 0] for e in soft.estimators], axis=0)
    assert np.array_equal(hard.log_odds(other), sk)


def test_noise_scales_with_each_measurement(features):
    """sigma is the smoothing times each measurement's spread over the training records, and
    smoothing 0 keeps the hard steps (the TreeEnsemble graph)."""
    from train.criteria import TREE_SMOOTHING, CriteriaModel

    f, y, _ = features
    model = CriteriaModel.fit_features(f, y, 100, bags=1)
    spread = np.nan_to_num(np.nanstd(f.astype(np.float64), axis=0))
    np.testing.assert_allclose(model.sigma, TREE_SMOOTHING * spread, rtol=1e-6)
    assert model.sigma[FEATURE_NAMES.index("st60_mv_V2")] < model.sigma[
        FEATURE_NAMES.index("qrs_ms")]  # millivolts against milliseconds
    hard = CriteriaModel.fit_features(f, y, 100, bags=1, smoothing=0)
    assert not hard.smoothed
    ops = [n.op_type for n in hard.to_onnx().graph.node]
    assert ops == ["TreeEnsembleRegressor", "Sigmoid"]
    with pytest.raises(ValueError, match="smoothing"):
        CriteriaModel.fit_features(f, y, 100, bags=1, smoothing=-0.1)


def test_a_measurement_without_spread_keeps_its_step(features):
    """A measurement that never varies where it is measured (only whether it is measured
    tells) has no spread to jitter by: its splits stay hard steps, in numpy and in the graph
    alike."""
    from train.criteria import CriteriaModel

    f, y, other = features
    f = f.copy()
    j = FEATURE_NAMES.index("st60_mv_V2")
    f[:, j] = np.where(y == 1, np.nan, 0.1)  # measured only in non-MI records, always 0.1
    model = CriteriaModel.fit_features(f, y, 100, bags=2)
    assert model.sigma[j] == 0 and model._soft_arrays()["hard"].any()
    ops = [n.op_type for n in model.to_onnx().graph.node]
    assert "LessOrEqual" in ops
    rows = np.vstack([other[:5], other[:5]]).astype(np.float32)
    rows[5:, j] = np.nan
    got = _session(model).run(None, {"mi_features": rows})[0][:, 0]
    assert np.max(np.abs(got - model.predict_features(rows))) < 1e-5
    # the split on whether it was measured is a step: NaN and 0.1 score far apart
    assert np.abs(model.log_odds(rows[:5]) - model.log_odds(rows[5:])).min() > 0.5


def test_smoothed_graph_reproduces_numpy(features):
    """onnxruntime and numpy agree on the shipped records, on a record with nothing measured
    (every split takes the trees' missing-value branch) and far out of range."""
    from train.criteria import CriteriaModel

    f, y, other = features
    model = CriteriaModel.fit_features(f, y, 100)
    ops = [n.op_type for n in model.to_onnx().graph.node]
    assert "Erf" in ops and "TreeEnsembleRegressor" not in ops
    sess = _session(model)
    for rows in (other, _edge_rows(other)):
        got = sess.run(None, {"mi_features": rows})[0][:, 0]
        assert np.max(np.abs(got - model.predict_features(rows))) < 1e-5
    # nothing measured: the score is the hard trees' missing-value path, smoothed or not
    nan = np.full((1, f.shape[1]), np.nan, np.float32)
    assert model.log_odds(nan)[0] == pytest.approx(
        CriteriaModel(model.estimators, 100).log_odds(nan)[0], abs=1e-9)


def test_smoothed_trees_move_little_with_a_measurement(features):
    """A nudge of a hundredth of a measurement's spread moves the smoothed trees' log-odds far
    less than it moves the hard trees' largest step."""
    from train.criteria import CriteriaModel

    f, y, other = features
    soft = CriteriaModel.fit_features(f, y, 100)
    hard = CriteriaModel(soft.estimators, 100)
    base_s, base_h = soft.log_odds(other), hard.log_odds(other)
    moved_s, moved_h = [], []
    for name in ("st60_mv_V2", "qd_ms_III", "tb_mv_V4", "qrs_ms"):
        i = FEATURE_NAMES.index(name)
        for sign in (-1, 1):
            g = other.copy()
            g[:, i] += sign * 0.01 * soft.sigma[i] / 0.3
            moved_s.append(np.nanmax(np.abs(soft.log_odds(g) - base_s)))
            moved_h.append(np.nanmax(np.abs(hard.log_odds(g) - base_h)))
    assert max(moved_s) < 0.05
    assert max(moved_s) < 0.5 * max(moved_h), (moved_s, moved_h)


def test_blend_is_the_weighted_sum_of_its_parts(features, tmp_path):
    """The blend's log-odds are (1 - w) times the additive model's plus w times the smoothed
    trees', in numpy and in its one graph; it saves and loads; a trees run folder from before
    the smoothing (no sigma) loads with its hard steps."""
    from train.criteria import BLEND_WEIGHT, AdditiveModel, BlendModel, CriteriaModel, load_model

    f, y, other = features
    blend = BlendModel.fit_features(f, y, 100)
    assert blend.weight == BLEND_WEIGHT and blend.trees.smoothed
    additive = AdditiveModel.fit_features(f, y, 100)
    trees = CriteriaModel.fit_features(f, y, 100)
    want = (1 - BLEND_WEIGHT) * additive.log_odds(other) + BLEND_WEIGHT * trees.log_odds(other)
    np.testing.assert_allclose(blend.log_odds(other), want, rtol=0, atol=1e-9)
    ops = [n.op_type for n in blend.to_onnx().graph.node]
    assert "Erf" in ops and "Floor" in ops and ops[-1] == "Sigmoid"
    sess = _session(blend)
    for rows in (other, _edge_rows(other)):
        got = sess.run(None, {"mi_features": rows})[0][:, 0]
        assert np.max(np.abs(got - blend.predict_features(rows))) < 1e-5
    blend.save(tmp_path / "blend.pkl")
    again = load_model(tmp_path / "blend.pkl")
    assert isinstance(again, BlendModel)
    assert np.array_equal(again.predict_features(other), blend.predict_features(other))
    state = {"fs": 100, "learner": "trees", "estimators": trees.estimators,
             "features": FEATURES_VERSION}
    (tmp_path / "old.pkl").write_bytes(pickle.dumps(state))
    old = load_model(tmp_path / "old.pkl")
    assert isinstance(old, CriteriaModel) and not old.smoothed
