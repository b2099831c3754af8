"""The measurement models: a learner on the ECG's own MI criteria.

``train fit --arch criteria`` trains on :func:`signals.criteria.mi_features` (Q waves, R, S,
ST at J and J+60 ms, T per lead; QRS duration, heart rate; criteria counts per lead group;
poor R progression) of each record, at the data's rate, with one of three learners
(``--learner``):

- ``trees`` (:class:`CriteriaModel`): the mean log-odds of :data:`BAGS` scikit-learn
  ``HistGradientBoostingClassifier`` models on bootstrap samples.  Settings fixed before any
  comparison (depth 3, learning rate 0.05, 200 rounds, at least 20 records a leaf, L2 1.0),
  not tuned on the folds.  Missing measurements (NaN) go down the branch the trees learned
  for them.  Trees are step functions: a measurement a hair's breadth from a split moves the
  score by a whole step.  So they are scored smoothed (:data:`TREE_SMOOTHING`): each split's
  step becomes the chance that the measurement, jittered by Gaussian noise of a fraction of
  its spread, falls on the split's side, which is exactly the trees' mean over that noise.
- ``additive`` (:class:`AdditiveModel`): a generalised additive model, the log-odds a sum of
  one smooth curve per measurement (cubic B-splines, :data:`ADDITIVE_SETTINGS`, an L2-penalised
  logistic regression on them).  A small change in a measurement makes a small change in the
  score, so a record scores nearly the same from its 100 Hz and its 500 Hz file; and each
  measurement's curve can be read on its own.  Missing measurements take the training
  records' median.
- ``blend`` (:class:`BlendModel`, the default): 0.75 times the additive model's log-odds
  plus 0.25 times the smoothed trees' (:data:`BLEND_WEIGHT`): the trees' ranking, the
  curves' steadiness (benchmarks/EXPERIMENTS.md, "Smoothed trees and the blend").

Each goes through the same cross-fitting, calibration and bands as the networks, and exports
as one ONNX graph (the smoothed trees as per-split ``Erf`` and per-leaf products of the
splits' chances, hard trees as an ``ai.onnx.ml`` TreeEnsembleRegressor, the curves as tables
read by linear interpolation; a sigmoid, then the calibration).  The scorer computes
the graph's input with the very function training used (the contract names it and its
version).
"""

from __future__ import annotations

import os
import pickle
import warnings
from typing import Any

import numpy as np

from common.io import atomic_write_bytes
from signals.criteria import (
    FEATURE_NAMES,
    FEATURES_VERSION,
    STEP_FEATURES,
    lbbb_like,
    mi_features,
)

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
#: The trees are scored smoothed: each split's hard step replaced by the probability that the
#: measurement, jittered by Gaussian noise of ``TREE_SMOOTHING`` times its spread (standard
#: deviation) over the training records, falls on the split's left side; the model is then
#: the exact mean of the trees over that noise, a smooth function of every measurement.
#: 0 keeps the hard steps.  Chosen on the shipped sample's out-of-fold figures among 0.1-0.5
#: (benchmarks/EXPERIMENTS.md, "Smoothed trees and the blend"), which score within 0.005 AUC
#: of each other and of the hard trees and whose rate figures overlap; 0.3 is their middle.
TREE_SMOOTHING = 0.3

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

#: The blend learner: the additive model's log-odds weighted ``1 - BLEND_WEIGHT``, the
#: smoothed trees' ``BLEND_WEIGHT``.  Chosen on the shipped sample's out-of-fold figures
#: among 0.2, 0.25 and 0.33, which score within 0.001 AUC of each other (benchmarks/
#: EXPERIMENTS.md, "Smoothed trees and the blend"); a larger weight lets the trees' residual
#: steepness move more records between rates.
BLEND_WEIGHT = 0.25


def _in_batches(split, index, measure_batch, empty: np.ndarray,
                use_alt: bool = False) -> np.ndarray:
    """``measure_batch(mV, fs)`` over a split's records at ``index``, :data:`FEATURE_BATCH`
    at a time (bounds memory at 500 Hz), concatenated; ``empty`` when there are none."""
    idx = np.arange(len(split))[index]
    parts = []
    for i in range(0, len(idx), FEATURE_BATCH):
        batch = idx[i : i + FEATURE_BATCH]
        mv = split.millivolts(batch, np.ones(len(batch), bool) if use_alt else None)
        parts.append(measure_batch(mv, split.fs))
    return np.concatenate(parts) if parts else empty


def split_features(split, index=slice(None), use_alt: bool = False) -> np.ndarray:
    """:func:`signals.criteria.mi_features` of a split's records, in batches; with
    ``use_alt``, of their other-rate copies (:attr:`train.dataset.Split.alt`)."""
    return _in_batches(split, index, mi_features,
                       np.zeros((0, len(FEATURE_NAMES)), np.float32), use_alt)


def split_referrals(split, index=slice(None)) -> np.ndarray:
    """:func:`signals.criteria.lbbb_like` of a split's records, in batches: the records whose
    band is borderline whatever the model says (the scorer applies the same rule)."""
    return _in_batches(split, index, lbbb_like, np.zeros(0, bool))


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
    results_section = ""

    def __init__(self, fs: int):
        self.fs = int(fs)

    @classmethod
    def fit(cls, train, **settings):
        """The model on a split's measurements (``settings``: what the learner's
        ``fit_features`` takes beyond the rows, labels and rate).  A split with other-rate
        copies (``train fit --mix-rate-data``) gives two rows per record, one measured from
        each file, so the model learns what moves between a record's files as noise."""
        f, y = split_features(train), train.y
        if train.alt is not None:
            f = np.concatenate([f, split_features(train, use_alt=True)])
            y = np.concatenate([y, y])
        return cls.fit_features(f, y, train.fs, **settings)

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
    def load(cls, path: str | os.PathLike[str]) -> _MeasurementModel:
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


def fit_learner(learner: str, train, seed: int = 0, bags: int | None = None,
                smoothing: float | None = None) -> _MeasurementModel:
    """``learner`` (one of :data:`LEARNERS`) on a split's measurements; ``bags`` and
    ``smoothing`` are the trees' (None: :data:`BAGS`, :data:`TREE_SMOOTHING`)."""
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {LEARNERS}, got {learner!r}")
    if learner == "additive":
        return AdditiveModel.fit(train)
    smoothing = TREE_SMOOTHING if smoothing is None else smoothing
    return MODELS[learner].fit(train, seed=seed, bags=bags or BAGS, smoothing=smoothing)


def load_model(path: str | os.PathLike[str]) -> _MeasurementModel:
    """A model saved by :meth:`_MeasurementModel.save`, whichever its learner."""
    return _MeasurementModel.load(path)


class CriteriaModel(_MeasurementModel):
    """Trees on the measurements: the mean log-odds of ``estimators`` (boosted models on
    bootstrap samples, :data:`BAGS`), scored smoothed when ``sigma`` is given
    (:data:`TREE_SMOOTHING`)."""

    learner = "trees"
    results_section = "The criteria model, trees learner"
    architecture = "criteria (gradient-boosted trees on signals.criteria measurements)"
    missing_text = "the trees have a branch for it"

    @property
    def rate_text(self) -> str:
        if self.smoothed:
            return ("; the trees are scored smoothed (their mean over a small jitter of every "
                    "measurement), so a measurement near a split moves the score a little, "
                    "not by a whole step, but the trees stay steeper than smooth curves: the "
                    "same ECG scored from a file at another rate can still cross a band "
                    "threshold")
        return (", and trees are step functions of them: a measurement at a split (a Q "
                "duration a sample from a threshold, an ST level a hundredth of a millivolt "
                "from one) moves the score by a whole step, so the same ECG scored from a "
                "file at another rate can cross a band threshold")

    def __init__(self, estimators: list, fs: int, sigma=None):
        super().__init__(fs)
        self.estimators = list(estimators)
        #: per measurement, the smoothing noise's standard deviation (None: hard steps, as
        #: run folders from before the smoothing were saved)
        self.sigma = None if sigma is None else np.asarray(sigma, np.float32)
        if self.sigma is not None and not (self.sigma > 0).any():
            self.sigma = None
        self._soft: dict[str, np.ndarray] | None = None

    @property
    def smoothed(self) -> bool:
        return self.sigma is not None

    @property
    def reference(self) -> str:
        """What the export is checked against: scikit-learn's own trees, or the smoothed
        trees' numpy (:meth:`_soft_log_odds`)."""
        return "numpy" if self.smoothed else "scikit-learn"

    @classmethod
    def fit_features(cls, f: np.ndarray, y: np.ndarray, fs: int, seed: int = 0,
                     bags: int = BAGS, smoothing: float = TREE_SMOOTHING) -> CriteriaModel:
        """The model on feature rows ``f`` (``mi_features``) with labels ``y``, smoothed by
        ``smoothing`` times each measurement's spread over ``f`` (0: hard steps)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {smoothing}")
        f = np.asarray(f, np.float32)
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
        return cls(estimators, fs, noise_scale(f, smoothing) if smoothing else None)

    def log_odds(self, f: np.ndarray) -> np.ndarray:
        """The mean of the boosted models' log-odds, ``(n,)`` float64: smoothed (the mean over
        the noise, :meth:`_soft_log_odds`) or, without ``sigma``, scikit-learn's own."""
        f = np.asarray(f, np.float32)
        if self.smoothed:
            return self._soft_log_odds(f)
        return np.mean([e._raw_predict(f)[:, 0] for e in self.estimators], axis=0)

    def _soft_arrays(self) -> dict[str, np.ndarray]:
        """The trees flattened for smoothed scoring, in numpy and in the graph alike: per split
        its feature, threshold, noise scale and where NaN goes; per leaf its value (divided by
        the number of boosted models) and its path, as indices into the row
        ``[P(left) of every split, P(right) of every split, 1]`` (paths shorter than the
        deepest padded with the 1)."""
        if self._soft is not None:
            return self._soft
        feat, thr, miss, values, paths = [], [], [], [], []
        scale = 1.0 / len(self.estimators)
        for est in self.estimators:
            for (tree,) in est._predictors:
                nodes = tree.nodes
                stack = [(0, ())]
                while stack:
                    i, path = stack.pop()
                    node = nodes[i]
                    if node["is_leaf"]:
                        values.append(float(node["value"]) * scale)
                        paths.append(path)
                        continue
                    g = len(feat)
                    feat.append(int(node["feature_idx"]))
                    thr.append(float(node["num_threshold"]))
                    miss.append(bool(node["missing_go_to_left"]))
                    stack += [(int(node["right"]), path + (("right", g),)),
                              (int(node["left"]), path + (("left", g),))]
        # boosting splits on binned thresholds, so many splits repeat (the same measurement,
        # threshold and way for NaN): each distinct split is computed once
        thr32 = np.asarray([_float32_at_most(t) for t in thr], np.float32)
        keys = np.stack([np.asarray(feat, np.float64), thr32.astype(np.float64),
                         np.asarray(miss, np.float64)], axis=1).reshape(-1, 3)
        distinct, which = np.unique(keys, axis=0, return_inverse=True)
        which = np.asarray(which).reshape(-1)
        n = len(distinct)
        depth = max([len(p) for p in paths] + [1])
        index = np.full((len(paths), depth), 2 * n, np.int64)
        for leaf, path in enumerate(paths):
            for d, (side, g) in enumerate(path):
                index[leaf, d] = which[g] if side == "left" else n + which[g]
        feat_a = distinct[:, 0].astype(np.int64)
        sigma = self.sigma[feat_a] if n else np.zeros(0, np.float32)
        hard = ~(sigma > 0)
        self._soft = {
            "feature": feat_a,
            # thresholds as float32 at most the float64 one: a hard split then takes
            # scikit-learn's branch for every float32 input
            "threshold": distinct[:, 1].astype(np.float32),
            # 1 / (sigma * sqrt 2): P(left) = (1 + erf((t - x) * inv_scale)) / 2
            "inv_scale": np.where(hard, 0.0, 1.0 / (np.where(hard, 1.0, sigma) * np.sqrt(2.0))
                                  ).astype(np.float32),
            "hard": hard,
            "missing_left": distinct[:, 2].astype(np.float32),
            "value": np.asarray(values, np.float64),
            "path": index,
            "base": np.array(np.mean([np.asarray(e._baseline_prediction).reshape(-1)[0]
                                      for e in self.estimators])),
        }
        return self._soft

    def _soft_log_odds(self, f: np.ndarray, rows: int = 256) -> np.ndarray:
        """The smoothed trees' log-odds ``(n,)`` float64: per split ``P(left)`` of the
        jittered measurement (NaN: the branch the trees learned for missing values), per leaf
        the product along its path, the leaves' values weighted by those probabilities."""
        from scipy.special import erf

        a = self._soft_arrays()
        out = np.empty(len(f))
        for i in range(0, len(f), rows):
            x = f[i : i + rows][:, a["feature"]].astype(np.float64)
            with np.errstate(invalid="ignore"):  # a split on missingness alone: t = inf
                u = (a["threshold"].astype(np.float64) - x) * a["inv_scale"]
            left = np.where(a["hard"], (x <= a["threshold"]).astype(np.float64),
                            0.5 * (1.0 + erf(u)))
            left = np.where(np.isnan(x), a["missing_left"], left)
            p = np.concatenate([left, 1.0 - left, np.ones((len(x), 1))], axis=1)
            reach = p[:, a["path"]].prod(axis=2)
            out[i : i + rows] = a["base"] + reach @ a["value"]
        return out

    def _state(self) -> dict[str, Any]:
        return {"estimators": self.estimators, "sigma": self.sigma}

    def describe(self, seed: int) -> str:
        """The model card's sentence on what the model is."""
        return (f"The mean log-odds of {len(self.estimators)} gradient-boosted tree models "
                "(scikit-learn HistGradientBoostingClassifier, settings fixed in "
                f"train.criteria.TREE_SETTINGS) fitted on bootstrap samples, seed {seed}"
                + ("; scored smoothed: every split's step replaced by the chance that the "
                   "measurement, jittered by Gaussian noise of "
                   "train.criteria.TREE_SMOOTHING times its spread, falls on its side"
                   if self.smoothed else "") + "; most used measurements: "
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

    def onnx_log_odds(self, prefix: str = "") -> tuple[list, list, str]:
        """The trees' log-odds as ONNX nodes on ``mi_features``: ``(nodes, initializers,
        output)``, names prefixed by ``prefix``.  Smoothed: :meth:`_soft_log_odds` operation
        for operation; hard: an ``ai.onnx.ml`` TreeEnsembleRegressor."""
        if self.smoothed:
            return self._onnx_soft(prefix)
        from onnx import helper

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
        out = prefix + "log_odds"
        ensemble = helper.make_node(
            "TreeEnsembleRegressor", [FEATURES_INPUT], [out], domain="ai.onnx.ml",
            n_targets=1, aggregate_function="SUM", post_transform="NONE", base_values=[base],
            **attrs)
        return [ensemble], [], out

    def _onnx_soft(self, prefix: str) -> tuple[list, list, str]:
        """:meth:`_soft_log_odds` as ONNX nodes, with records along the last axis (each
        split's and each leaf's row of chances is then one contiguous gather)."""
        from onnx import helper, numpy_helper

        a = self._soft_arrays()
        k = prefix.__add__
        consts = {  # per split a column, broadcast against the records
            "feature": a["feature"], "threshold": a["threshold"][:, None],
            "inv_scale": a["inv_scale"][:, None], "missing_left": a["missing_left"][:, None],
            "half": np.array(0.5, np.float32), "one": np.array(1.0, np.float32),
            "pads": np.array([0, 0, 1, 0], np.int64),
            "value": a["value"].astype(np.float32)[None, :],
            "base": np.array([[a["base"]]], np.float32),
        }
        for d in range(a["path"].shape[1]):
            consts[f"path{d}"] = a["path"][:, d]
        init = [numpy_helper.from_array(np.asarray(v), name=k(n)) for n, v in consts.items()]
        n = helper.make_node
        nodes = [
            n("Transpose", [FEATURES_INPUT], [k("features_t")], perm=[1, 0]),
            n("Gather", [k("features_t"), k("feature")], [k("x")], axis=0),
            n("Sub", [k("threshold"), k("x")], [k("gap")]),
            n("Mul", [k("gap"), k("inv_scale")], [k("u")]),
            n("Erf", [k("u")], [k("erf")]),
            n("Add", [k("erf"), k("one")], [k("erf1")]),
            n("Mul", [k("erf1"), k("half")], [k("soft_left")]),
        ]
        left = k("soft_left")
        if a["hard"].any():  # splits on a measurement that did not vary: a hard step
            init.append(numpy_helper.from_array(a["hard"][:, None], name=k("hard")))
            nodes += [n("LessOrEqual", [k("x"), k("threshold")], [k("le")]),
                      n("Cast", [k("le")], [k("hard_left")], to=1),
                      n("Where", [k("hard"), k("hard_left"), left], [k("left_h")])]
            left = k("left_h")
        nodes += [
            n("IsNaN", [k("x")], [k("missing")]),
            n("Where", [k("missing"), k("missing_left"), left], [k("left")]),
            n("Sub", [k("one"), k("left")], [k("right")]),
            n("Concat", [k("left"), k("right")], [k("sides")], axis=0),
            n("Pad", [k("sides"), k("pads"), k("one")], [k("p")], mode="constant"),
        ]
        reach = None
        for d in range(a["path"].shape[1]):
            nodes.append(n("Gather", [k("p"), k(f"path{d}")], [k(f"on{d}")], axis=0))
            if reach is None:
                reach = k(f"on{d}")
            else:
                nodes.append(n("Mul", [reach, k(f"on{d}")], [k(f"reach{d}")]))
                reach = k(f"reach{d}")
        nodes += [n("MatMul", [k("value"), reach], [k("sum_t")]),
                  n("Transpose", [k("sum_t")], [k("sum")], perm=[1, 0]),
                  n("Add", [k("sum"), k("base")], [k("log_odds")])]
        return nodes, init, k("log_odds")

    def to_onnx(self, opset: int = 17) -> Any:
        """The trees as one ONNX graph: ``mi_features`` float32 ``[batch, F]`` ->
        ``mi_probability`` float32 ``[batch, 1]`` (before calibration)."""
        return _probability_graph(self, "criteria_trees", opset)


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

    def onnx_log_odds(self, prefix: str = "") -> tuple[list, list, str]:
        """The curves' log-odds as ONNX nodes on ``mi_features``: ``(nodes, initializers,
        output)``, names prefixed by ``prefix``; the operations of :meth:`_contributions` in
        the same order."""
        from onnx import TensorProto, helper, numpy_helper

        n_feat, g = self.table.shape
        k = prefix.__add__
        consts = {
            "median": self.median, "lo": self.lo, "step": self.step,
            "zero": np.array(0.0, np.float32), "top": np.array(g - 2, np.float32),
            "row_start": (np.arange(n_feat) * g).astype(np.int64),
            "one": np.array(1, np.int64), "table_flat": self.table.reshape(-1),
            "intercept": np.array([[self.intercept]], np.float32),
            "axes": np.array([1], np.int64),
        }
        init = [numpy_helper.from_array(np.asarray(v), name=k(n)) for n, v in consts.items()]
        n = helper.make_node
        nodes = [
            n("IsNaN", [FEATURES_INPUT], [k("missing")]),
            n("Where", [k("missing"), k("median"), FEATURES_INPUT], [k("x")]),
            n("Sub", [k("x"), k("lo")], [k("x_lo")]),
            n("Div", [k("x_lo"), k("step")], [k("s")]),
            n("Floor", [k("s")], [k("s_floor")]),
            n("Clip", [k("s_floor"), k("zero"), k("top")], [k("i_float")]),
            n("Sub", [k("s"), k("i_float")], [k("frac")]),
            n("Cast", [k("i_float")], [k("i")], to=TensorProto.INT64),
            n("Add", [k("i"), k("row_start")], [k("k0")]),
            n("Add", [k("k0"), k("one")], [k("k1")]),
            n("Gather", [k("table_flat"), k("k0")], [k("v0")], axis=0),
            n("Gather", [k("table_flat"), k("k1")], [k("v1")], axis=0),
            n("Sub", [k("v1"), k("v0")], [k("dv")]),
            n("Mul", [k("frac"), k("dv")], [k("fdv")]),
            n("Add", [k("v0"), k("fdv")], [k("terms")]),
            n("ReduceSum", [k("terms"), k("axes")], [k("sum_terms")], keepdims=1),
            n("Add", [k("sum_terms"), k("intercept")], [k("log_odds")]),
        ]
        return nodes, init, k("log_odds")

    def to_onnx(self, opset: int = 17) -> Any:
        """The curves as one ONNX graph: ``mi_features`` float32 ``[batch, F]`` ->
        ``mi_probability`` float32 ``[batch, 1]`` (before calibration)."""
        return _probability_graph(self, "criteria_additive", opset)


class BlendModel(_MeasurementModel):
    """The additive model and the smoothed trees together: log-odds ``(1 - weight)`` times the
    curves' plus ``weight`` times the trees' (:data:`BLEND_WEIGHT`), both fitted on the same
    training records' measurements.  The curves carry each measurement's own effect and are
    stable across rates; the trees add how measurements combine, smoothed so that they too
    move little with a measurement.  The weights apply to log-odds: the curves' are strongly
    shrunk, so out of fold the trees' part still spreads the records about twice as far
    (benchmarks/EXPERIMENTS.md, "Smoothed trees and the blend")."""

    learner = "blend"
    reference = "numpy"
    architecture = ("criteria (additive curves plus smoothed gradient-boosted trees on "
                    "signals.criteria measurements)")
    missing_text = ("the curves take the training records' median, the trees the branch they "
                    "learned for it")
    results_section = "The criteria model, blend learner"
    rate_text = ("; both parts are smooth in them (the trees scored as their mean over a "
                 "small jitter of every measurement), so the same ECG from a file at another "
                 "rate scores within a few hundredths, though a measurement read a little "
                 "differently from the two files (a beat kept at one rate and dropped at "
                 "the other, a Q a few hundredths of a millivolt deeper) can still move the "
                 "trees' part, most on a record the trees learned a split from")

    def __init__(self, additive, trees, weight: float, fs: int):
        super().__init__(fs)
        self.additive = (additive if isinstance(additive, AdditiveModel)
                         else AdditiveModel(**additive, fs=fs))
        self.trees = trees if isinstance(trees, CriteriaModel) else CriteriaModel(**trees, fs=fs)
        self.weight = float(weight)

    @classmethod
    def fit_features(cls, f: np.ndarray, y: np.ndarray, fs: int, seed: int = 0,
                     bags: int = BAGS, smoothing: float = TREE_SMOOTHING) -> BlendModel:
        """Both parts on feature rows ``f`` (``mi_features``) with labels ``y``."""
        return cls(AdditiveModel.fit_features(f, y, fs),
                   CriteriaModel.fit_features(f, y, fs, seed, bags, smoothing),
                   BLEND_WEIGHT, fs)

    def log_odds(self, f: np.ndarray) -> np.ndarray:
        """``(1 - weight)`` times the curves' log-odds plus ``weight`` times the trees'."""
        return ((1.0 - self.weight) * self.additive.log_odds(f)
                + self.weight * self.trees.log_odds(f))

    def _state(self) -> dict[str, Any]:
        return {"additive": self.additive._state(), "trees": self.trees._state(),
                "weight": self.weight}

    def describe(self, seed: int) -> str:
        """The model card's sentence on what the model is."""
        return (f"{1 - self.weight:g} times the log-odds of a generalised additive model (one "
                "curve per measurement, cubic B-splines, logistic regression, "
                "train.criteria.ADDITIVE_SETTINGS) plus "
                f"{self.weight:g} times the mean log-odds of {len(self.trees.estimators)} "
                "gradient-boosted tree models (scikit-learn HistGradientBoostingClassifier, "
                "train.criteria.TREE_SETTINGS, bootstrap samples, seed "
                f"{seed}) scored smoothed (train.criteria.TREE_SMOOTHING); the measurements "
                "that move the curves most: "
                + ", ".join(f"`{n}` ({v:.2f})" for n, v in self.additive.importances(6))
                + "; the trees' most used: "
                + ", ".join(f"`{n}` ({k} splits)" for n, k in self.trees.importances(6)) + ".")

    def importances(self, top: int = 15) -> list[tuple[str, float]]:
        """The curves' reach (the blend's larger part; the trees': ``self.trees``)."""
        return self.additive.importances(top)

    def onnx_log_odds(self, prefix: str = "") -> tuple[list, list, str]:
        """Both parts' nodes (prefixed ``additive_`` and ``trees_``) and their weighted sum."""
        from onnx import helper, numpy_helper

        a_nodes, a_init, a_out = self.additive.onnx_log_odds(prefix + "additive_")
        t_nodes, t_init, t_out = self.trees.onnx_log_odds(prefix + "trees_")
        k = prefix.__add__
        init = [*a_init, *t_init,
                numpy_helper.from_array(np.array(1.0 - self.weight, np.float32), k("w_add")),
                numpy_helper.from_array(np.array(self.weight, np.float32), k("w_trees"))]
        n = helper.make_node
        nodes = [*a_nodes, *t_nodes,
                 n("Mul", [a_out, k("w_add")], [k("add_part")]),
                 n("Mul", [t_out, k("w_trees")], [k("trees_part")]),
                 n("Add", [k("add_part"), k("trees_part")], [k("log_odds")])]
        return nodes, init, k("log_odds")

    def to_onnx(self, opset: int = 17) -> Any:
        """Both parts as one ONNX graph: ``mi_features`` float32 ``[batch, F]`` ->
        ``mi_probability`` float32 ``[batch, 1]`` (before calibration)."""
        return _probability_graph(self, "criteria_blend", opset)


#: the learners by name (``train fit --learner``), as saved in a model's pickle
MODELS: dict[str, type[_MeasurementModel]] = {m.learner: m for m in (CriteriaModel,
                                                                     AdditiveModel,
                                                                     BlendModel)}
LEARNERS = tuple(MODELS)


def noise_scale(f: np.ndarray, smoothing: float = TREE_SMOOTHING) -> np.ndarray:
    """The smoothed trees' noise per measurement: ``smoothing`` times its standard deviation
    over the training rows ``f`` (0 where it never varies or is never measured)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column that is all NaN
        spread = np.nan_to_num(np.nanstd(np.asarray(f, np.float64), axis=0))
    return (smoothing * spread).astype(np.float32)


def _probability_graph(model, name: str, opset: int) -> Any:
    """``model.onnx_log_odds()`` then a sigmoid, as one graph: ``mi_features`` float32
    ``[batch, F]`` -> ``mi_probability`` float32 ``[batch, 1]``."""
    from onnx import TensorProto, helper

    nodes, init, out = model.onnx_log_odds()
    nodes = [*nodes, helper.make_node("Sigmoid", [out], ["mi_probability"])]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(FEATURES_INPUT, TensorProto.FLOAT,
                                       ["batch", len(FEATURE_NAMES)])],
        [helper.make_tensor_value_info("mi_probability", TensorProto.FLOAT, ["batch", 1])],
        initializer=init)
    opsets = [helper.make_opsetid("", opset)]
    if any(node.domain == "ai.onnx.ml" for node in nodes):
        opsets.append(helper.make_opsetid("ai.onnx.ml", 3))
    return helper.make_model(graph, opset_imports=opsets)


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
