"""The measurement models: a learner on the ECG's own MI criteria.

``train fit --arch criteria`` trains on :func:`signals.criteria.mi_features` (Q waves, R, S,
ST at J and J+60 ms, T per lead; QRS duration, heart rate; criteria counts per lead group;
poor R progression) of each record, at the data's rate, with one of two learners
(``--learner``):

- ``trees`` (:class:`CriteriaModel`): the mean log-odds of :data:`BAGS` scikit-learn
  ``HistGradientBoostingClassifier`` models on bootstrap samples.  Settings fixed before any
  comparison (depth 3, learning rate 0.05, 200 rounds, at least 20 records a leaf, L2 1.0),
  not tuned on the folds.  Missing measurements (NaN) go down the branch the trees learned
  for them.  Trees are step functions: a measurement a hair's breadth from a split moves the
  score by a whole step.
- ``additive`` (:class:`AdditiveModel`): a generalised additive model, the log-odds a sum of
  one smooth curve per measurement (cubic B-splines, :data:`ADDITIVE_SETTINGS`, an L2-penalised
  logistic regression on them).  A small change in a measurement makes a small change in the
  score, so a record scores nearly the same from its 100 Hz and its 500 Hz file; and each
  measurement's curve can be read on its own.  Missing measurements take the training
  records' median.

Either goes through the same cross-fitting, calibration and bands as the networks, and exports
as one ONNX graph (the trees as an ``ai.onnx.ml`` TreeEnsembleRegressor, the curves as
tables read by linear interpolation; a sigmoid, then the calibration).  The scorer computes
the graph's input with the very function training used (the contract names it and its
version).
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from common.io import atomic_write_bytes
from signals.criteria import FEATURE_NAMES, FEATURES_VERSION, STEP_FEATURES, mi_features

#: The graph's input: one row of FEATURE_NAMES per record.
FEATURES_INPUT = "mi_features"
#: Records whose features are computed at once (bounds memory at 500 Hz).
FEATURE_BATCH = 64

TREE_SETTINGS = {"max_depth": 3, "learning_rate": 0.05, "max_iter": 200,
                 "min_samples_leaf": 20, "l2_regularization": 1.0}
#: Boosted models, each fitted on a bootstrap sample of the training records; the model is
#: the mean of their log-odds.  One boosted model is a step function whose steps a
#: measurement a hair's breadth from a split can cross (a record's 100 Hz and 500 Hz files
#: then score apart); the mean of ten is smoother, and scored better too (benchmarks/
#: EXPERIMENTS.md, "criteria" against "criteria-single").
BAGS = 10

#: The additive learner: per measurement a cubic B-spline on ``n_knots`` knots spread evenly
#: over the training records' range (linear beyond it), the splines' weights by a logistic
#: regression with L2 penalty ``1 / C``.  Chosen on the shipped sample's out-of-fold figures
#: among 3-6 knots, degree 1 or 3 and C 0.005-0.04 (benchmarks/EXPERIMENTS.md, "A smooth
#: learner"); the neighbours score within 0.01 AUC.
ADDITIVE_SETTINGS = {"n_knots": 4, "degree": 3, "C": 0.01}
#: Each measurement's curve is kept as its values at this many evenly spaced points over the
#: training range (a multiple of the knot intervals plus one, so the knots are grid points),
#: read by linear interpolation, and extended beyond the range by its end segments: this
#: table *is* the model, in numpy and in the graph alike.
GRID_POINTS = 61


def split_features(split, index=slice(None)) -> np.ndarray:
    """:func:`signals.criteria.mi_features` of a split's records, in batches."""
    idx = np.arange(len(split))[index]
    parts = [mi_features(split.millivolts(idx[i : i + FEATURE_BATCH]), split.fs)
             for i in range(0, len(idx), FEATURE_BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, len(FEATURE_NAMES)), np.float32)


class _MeasurementModel:
    """What both learners share: the interface training uses for networks
    (``predict_on_batch`` of windows, ``predict``, ``save``) on top of ``log_odds`` of
    feature rows."""

    learner = ""
    #: the contract's architecture, and what the model card says of it
    architecture = ""
    #: the model card: what a missing measurement does, and how the model answers a
    #: measurement that moves between a record's files at two rates
    missing_text = ""
    rate_text = ""
    #: the section of benchmarks/RESULTS.md that measures it (benchmarks/run.py)
    results_section = "The criteria model"

    def __init__(self, fs: int):
        self.fs = int(fs)

    def log_odds(self, f: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_features(self, f: np.ndarray) -> np.ndarray:
        """MI probability ``(n,)`` from a feature matrix ``(n, len(FEATURE_NAMES))``."""
        if len(f) == 0:
            return np.zeros(0, np.float32)
        return (1.0 / (1.0 + np.exp(-self.log_odds(f)))).astype(np.float32)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of windows ``(n, samples, 12)`` mV (each measured on its own)."""
        return self.predict_features(mi_features(x, self.fs))

    def predict(self, x: np.ndarray, batch_size: int = FEATURE_BATCH, verbose: int = 0
                ) -> np.ndarray:
        """``(n, 1)`` probabilities of windows (3-d) or of feature rows (2-d)."""
        if x.ndim == 2:
            return self.predict_features(x)[:, None]
        out = [self.predict_on_batch(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return (np.concatenate(out) if out else np.zeros(0, np.float32))[:, None]

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_bytes(path, pickle.dumps({"fs": self.fs, "learner": self.learner,
                                               "features": FEATURES_VERSION, **self._state()}),
                           overwrite=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CriteriaModel | AdditiveModel:
        """A saved model of either learner (a pickle: load only run folders you made
        yourself)."""
        with open(path, "rb") as f:
            data = pickle.load(f)  # noqa: S301  our own run folder
        if data.get("features") != FEATURES_VERSION:
            raise ValueError(f"{path}: trained on features {data.get('features')!r}, this "
                             f"version computes {FEATURES_VERSION!r}; train it again")
        learner = data.pop("learner", "trees")  # runs before the additive learner: trees
        data.pop("features")
        return MODELS[learner](**data)


def fit_learner(learner: str, train, seed: int = 0, bags: int | None = None
                ) -> CriteriaModel | AdditiveModel:
    """``learner`` (one of :data:`LEARNERS`) on a split's measurements."""
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {LEARNERS}, got {learner!r}")
    if learner == "additive":
        return AdditiveModel.fit(train)
    return CriteriaModel.fit(train, seed=seed, bags=bags or BAGS)


def load_model(path: str | os.PathLike[str]) -> CriteriaModel | AdditiveModel:
    """A model saved by :meth:`_MeasurementModel.save`, whichever its learner."""
    return _MeasurementModel.load(path)


class CriteriaModel(_MeasurementModel):
    """Trees on the measurements: the mean log-odds of ``estimators`` (boosted models on
    bootstrap samples, :data:`BAGS`)."""

    learner = "trees"
    #: what the export is checked against
    reference = "scikit-learn"
    architecture = "criteria (gradient-boosted trees on signals.criteria measurements)"
    missing_text = "the trees have a branch for it"
    rate_text = (", and trees are step functions of them: a measurement at a split (a Q "
                 "duration a sample from a threshold, an ST level a hundredth of a millivolt "
                 "from one) moves the score by a whole step, so the same ECG scored from a "
                 "file at another rate can cross a band threshold")

    def __init__(self, estimators: list, fs: int):
        super().__init__(fs)
        self.estimators = list(estimators)

    @classmethod
    def fit(cls, train, seed: int = 0, bags: int = BAGS) -> CriteriaModel:
        return cls.fit_features(split_features(train), train.y, train.fs, seed, bags)

    @classmethod
    def fit_features(cls, f: np.ndarray, y: np.ndarray, fs: int, seed: int = 0,
                     bags: int = BAGS) -> CriteriaModel:
        """The model on feature rows ``f`` (``mi_features``) with labels ``y``."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        y = np.asarray(y).astype(int)
        rng = np.random.default_rng(seed)
        estimators = []
        for b in range(bags):
            idx = np.arange(len(y)) if bags == 1 else rng.choice(len(y), len(y))
            if y[idx].min() == y[idx].max():  # a sample of one class: draw again
                idx = np.concatenate([idx, np.flatnonzero(y != y[idx][0])[:1]])
            est = HistGradientBoostingClassifier(**TREE_SETTINGS, early_stopping=False,
                                                 random_state=seed * 1000 + b)
            estimators.append(est.fit(f[idx], y[idx]))
        return cls(estimators, fs)

    def log_odds(self, f: np.ndarray) -> np.ndarray:
        """The mean of the boosted models' log-odds, ``(n,)`` float64."""
        f = np.asarray(f, np.float32)
        return np.mean([e._raw_predict(f)[:, 0] for e in self.estimators], axis=0)

    def _state(self) -> dict[str, Any]:
        return {"estimators": self.estimators}

    def describe(self, seed: int) -> str:
        """The model card's sentence on what the model is."""
        return (f"The mean log-odds of {len(self.estimators)} gradient-boosted tree models "
                "(scikit-learn HistGradientBoostingClassifier, settings fixed in "
                f"train.criteria.TREE_SETTINGS) fitted on bootstrap samples, seed {seed}; most "
                "used measurements: "
                + ", ".join(f"`{n}` ({k} splits)" for n, k in self.importances(10)) + ".")

    def importances(self, top: int = 15) -> list[tuple[str, int]]:
        """How often each feature is split on, most used first (what the trees look at)."""
        counts = np.zeros(len(FEATURE_NAMES), np.int64)
        for est in self.estimators:
            for (tree,) in est._predictors:
                nodes = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
                np.add.at(counts, nodes["feature_idx"], 1)
        order = np.argsort(-counts, kind="stable")[:top]
        return [(FEATURE_NAMES[i], int(counts[i])) for i in order if counts[i]]

    def to_onnx(self, opset: int = 17) -> Any:
        """The trees as one ONNX graph: ``mi_features`` float32 ``[batch, F]`` ->
        ``mi_probability`` float32 ``[batch, 1]`` (before calibration)."""
        from onnx import TensorProto, helper

        attrs: dict[str, list] = {k: [] for k in (
            "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
            "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
            "target_treeids", "target_nodeids", "target_ids", "target_weights")}
        trees = [tree for est in self.estimators for (tree,) in est._predictors]
        scale = 1.0 / len(self.estimators)  # the mean of the models' sums
        for t, tree in enumerate(trees):
            for i, node in enumerate(tree.nodes):
                leaf = bool(node["is_leaf"])
                attrs["nodes_treeids"].append(t)
                attrs["nodes_nodeids"].append(i)
                attrs["nodes_featureids"].append(0 if leaf else int(node["feature_idx"]))
                attrs["nodes_values"].append(0.0 if leaf else _float32_at_most(
                    float(node["num_threshold"])))
                attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
                attrs["nodes_truenodeids"].append(0 if leaf else int(node["left"]))
                attrs["nodes_falsenodeids"].append(0 if leaf else int(node["right"]))
                attrs["nodes_missing_value_tracks_true"].append(
                    0 if leaf else int(bool(node["missing_go_to_left"])))
                if leaf:
                    attrs["target_treeids"].append(t)
                    attrs["target_nodeids"].append(i)
                    attrs["target_ids"].append(0)
                    attrs["target_weights"].append(float(node["value"]) * scale)
        base = float(np.mean([np.asarray(e._baseline_prediction).reshape(-1)[0]
                              for e in self.estimators]))
        ensemble = helper.make_node(
            "TreeEnsembleRegressor", [FEATURES_INPUT], ["raw_log_odds"], domain="ai.onnx.ml",
            n_targets=1, aggregate_function="SUM", post_transform="NONE", base_values=[base],
            **attrs)
        sig = helper.make_node("Sigmoid", ["raw_log_odds"], ["mi_probability"])
        graph = helper.make_graph(
            [ensemble, sig], "criteria_trees",
            [helper.make_tensor_value_info(FEATURES_INPUT, TensorProto.FLOAT,
                                           ["batch", len(FEATURE_NAMES)])],
            [helper.make_tensor_value_info("mi_probability", TensorProto.FLOAT, ["batch", 1])])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                       helper.make_opsetid("ai.onnx.ml", 3)])


class AdditiveModel(_MeasurementModel):
    """A generalised additive model on the measurements: log-odds = ``intercept`` + the sum
    over measurements of a curve of each (:data:`ADDITIVE_SETTINGS`), every curve tabulated on
    :data:`GRID_POINTS` points from ``lo`` in steps of ``step`` (``table`` ``(F, G)``) and read
    by linear interpolation; NaN takes the training median (``median``).  ``spread`` is each
    curve's range over the training records (how far that measurement moves the log-odds).
    The counts of leads meeting a criterion (:data:`STEP_FEATURES`) get no curve: they step by
    a whole lead, and the measurements they count are columns of their own."""

    learner = "additive"
    #: what the export is checked against
    reference = "numpy"
    architecture = "criteria (additive model: one smooth curve per signals.criteria measurement)"
    missing_text = "the training records' median stands in"
    results_section = "The criteria model, additive learner"
    rate_text = ("; the additive model is smooth in them and reads no count of leads, so the "
                 "same ECG from a file at another rate scores within a few hundredths, though "
                 "a beat kept at one rate and dropped at the other still moves the median beat")

    def __init__(self, median, lo, step, table, intercept: float, spread, fs: int):
        super().__init__(fs)
        self.median = np.asarray(median, np.float32)
        self.lo = np.asarray(lo, np.float32)
        self.step = np.asarray(step, np.float32)
        self.table = np.asarray(table, np.float32)
        self.intercept = float(intercept)
        self.spread = np.asarray(spread, np.float64)

    @classmethod
    def fit(cls, train) -> AdditiveModel:
        return cls.fit_features(split_features(train), train.y, train.fs)

    @classmethod
    def fit_features(cls, f: np.ndarray, y: np.ndarray, fs: int) -> AdditiveModel:
        """The model on feature rows ``f`` (``mi_features``) with labels ``y`` (deterministic:
        no seed, no bagging)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import SplineTransformer

        f = np.asarray(f, np.float32)
        y = np.asarray(y).astype(int)
        n_feat = f.shape[1]
        with np.errstate(all="ignore"):
            median = np.nan_to_num(np.nanmedian(f, axis=0), nan=0.0).astype(np.float32)
        x = np.where(np.isnan(f), median, f)
        lo, hi = x.min(axis=0), x.max(axis=0)
        varies = hi > lo
        step = np.where(varies, (hi - lo) / (GRID_POINTS - 1), 1.0).astype(np.float32)
        table = np.zeros((n_feat, GRID_POINTS), np.float32)
        intercept, spread = 0.0, np.zeros(n_feat)
        if n_feat != len(FEATURE_NAMES):
            raise ValueError(f"expected {len(FEATURE_NAMES)} mi_features columns, got {n_feat}")
        # the measurements only: a curve on a count of leads would be a step again
        cols = np.flatnonzero(varies & ~np.isin(np.asarray(FEATURE_NAMES), STEP_FEATURES))
        if cols.size and y.min() != y.max():
            settings = dict(ADDITIVE_SETTINGS)
            c = settings.pop("C")
            spline = SplineTransformer(**settings, knots="uniform", extrapolation="linear")
            basis = spline.fit_transform(x[:, cols])
            lr = LogisticRegression(C=c, max_iter=5000).fit(basis, y)
            per = basis.shape[1] // cols.size
            w = lr.coef_[0].reshape(cols.size, per)
            grid = lo[cols] + step[cols] * np.arange(GRID_POINTS)[:, None]  # (G, F')
            curves = (spline.transform(grid).reshape(GRID_POINTS, cols.size, per)
                      * w).sum(axis=2).T  # (F', G)
            table[cols] = curves
            # centre each curve on the training records (the intercept takes the level), so
            # a curve reads as "this measurement raises or lowers the odds from the usual"
            centre = _terms(x, median, lo, step, table).mean(axis=0)
            table -= centre[:, None]
            intercept = float(lr.intercept_[0] + centre.sum())
            terms = _terms(x, median, lo, step, table)
            spread = terms.max(axis=0) - terms.min(axis=0)
        elif y.size:
            p = np.clip(y.mean(), 1e-6, 1 - 1e-6)
            intercept = float(np.log(p / (1 - p)))
        return cls(median, lo, step, table, intercept, spread, fs)

    def _contributions(self, f: np.ndarray) -> np.ndarray:
        """Each measurement's term of the log-odds, ``(n, F)`` float32."""
        return _terms(f, self.median, self.lo, self.step, self.table)

    def log_odds(self, f: np.ndarray) -> np.ndarray:
        """``intercept`` + the sum of the curves, ``(n,)`` float64."""
        return self.intercept + self._contributions(f).sum(axis=1, dtype=np.float64)

    def _state(self) -> dict[str, Any]:
        return {"median": self.median, "lo": self.lo, "step": self.step, "table": self.table,
                "intercept": self.intercept, "spread": self.spread}

    def describe(self, seed: int) -> str:
        """The model card's sentence on what the model is."""
        return ("A generalised additive model: the log-odds are a sum of one curve per "
                "measurement (cubic B-splines, logistic regression, settings fixed in "
                "train.criteria.ADDITIVE_SETTINGS), each tabulated on "
                f"{GRID_POINTS} points and read by linear interpolation; the measurements that "
                "move the log-odds most across the training records: "
                + ", ".join(f"`{n}` ({v:.2f})" for n, v in self.importances(10)) + ".")

    def importances(self, top: int = 15) -> list[tuple[str, float]]:
        """Each measurement's reach: how far its curve moves the log-odds across the training
        records (max minus min), largest first."""
        order = np.argsort(-self.spread, kind="stable")[:top]
        return [(FEATURE_NAMES[i], round(float(self.spread[i]), 3)) for i in order
                if self.spread[i] > 0]

    def to_onnx(self, opset: int = 17) -> Any:
        """The curves as one ONNX graph: ``mi_features`` float32 ``[batch, F]`` ->
        ``mi_probability`` float32 ``[batch, 1]`` (before calibration), the operations of
        :meth:`_contributions` in the same order."""
        from onnx import TensorProto, helper, numpy_helper

        n_feat, g = self.table.shape
        consts = {
            "median": self.median, "lo": self.lo, "step": self.step,
            "zero": np.array(0.0, np.float32), "top": np.array(g - 2, np.float32),
            "row_start": (np.arange(n_feat) * g).astype(np.int64),
            "one": np.array(1, np.int64), "table_flat": self.table.reshape(-1),
            "intercept": np.array([[self.intercept]], np.float32),
        }
        init = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in consts.items()]
        n = helper.make_node
        nodes = [
            n("IsNaN", [FEATURES_INPUT], ["missing"]),
            n("Where", ["missing", "median", FEATURES_INPUT], ["x"]),
            n("Sub", ["x", "lo"], ["x_lo"]),
            n("Div", ["x_lo", "step"], ["s"]),
            n("Floor", ["s"], ["s_floor"]),
            n("Clip", ["s_floor", "zero", "top"], ["i_float"]),
            n("Sub", ["s", "i_float"], ["frac"]),
            n("Cast", ["i_float"], ["i"], to=TensorProto.INT64),
            n("Add", ["i", "row_start"], ["k0"]),
            n("Add", ["k0", "one"], ["k1"]),
            n("Gather", ["table_flat", "k0"], ["v0"], axis=0),
            n("Gather", ["table_flat", "k1"], ["v1"], axis=0),
            n("Sub", ["v1", "v0"], ["dv"]),
            n("Mul", ["frac", "dv"], ["fdv"]),
            n("Add", ["v0", "fdv"], ["terms"]),
            n("ReduceSum", ["terms", "axes"], ["sum_terms"], keepdims=1),
            n("Add", ["sum_terms", "intercept"], ["raw_log_odds"]),
            n("Sigmoid", ["raw_log_odds"], ["mi_probability"]),
        ]
        init.append(numpy_helper.from_array(np.array([1], np.int64), name="axes"))
        graph = helper.make_graph(
            nodes, "criteria_additive",
            [helper.make_tensor_value_info(FEATURES_INPUT, TensorProto.FLOAT,
                                           ["batch", n_feat])],
            [helper.make_tensor_value_info("mi_probability", TensorProto.FLOAT, ["batch", 1])],
            initializer=init)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


#: the learners by name (``train fit --learner``), as saved in a model's pickle
MODELS: dict[str, type[_MeasurementModel]] = {m.learner: m for m in (CriteriaModel,
                                                                     AdditiveModel)}
LEARNERS = tuple(MODELS)


def _terms(f: np.ndarray, median: np.ndarray, lo: np.ndarray, step: np.ndarray,
           table: np.ndarray) -> np.ndarray:
    """The additive model's terms ``(n, F)`` float32: each curve (a row of ``table``, values
    at ``lo + step * k``) read by linear interpolation at its measurement (NaN: ``median``),
    extended by its end segments; what the graph computes, operation for operation."""
    f = np.asarray(f, np.float32)
    x = np.where(np.isnan(f), median, f)
    s = (x - lo) / step
    i_float = np.clip(np.floor(s), 0, table.shape[1] - 2)
    frac = s - i_float
    i = i_float.astype(np.int64)
    rows = np.arange(table.shape[0])
    v0 = table[rows, i]
    return v0 + frac * (table[rows, i + 1] - v0)


def _float32_at_most(v: float) -> float:
    """The largest float32 not above ``v``: for float32 inputs ``x <= v`` then holds exactly
    when ``x <= float32`` does, so the graph takes scikit-learn's branch every time."""
    f = np.float32(v)
    if float(f) > v:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)
