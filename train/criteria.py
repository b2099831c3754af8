"""The measurement model: gradient-boosted trees on the ECG's own MI criteria.

``train fit --arch criteria`` trains scikit-learn's ``HistGradientBoostingClassifier`` on
:func:`signals.criteria.mi_features` (Q waves, R, S, ST at J and J+60 ms, T per lead; QRS
duration, heart rate; criteria counts per lead group; poor R progression) of each record, at
the data's rate.  It goes through the same cross-fitting, calibration and bands as the
networks, and exports as one ONNX graph: the trees as an ``ai.onnx.ml`` TreeEnsembleRegressor
whose sum goes through a sigmoid, then the calibration.  The scorer computes the graph's
input with the very function training used (the contract names it and its version).

The trees' settings were fixed before any comparison (depth 3, learning rate 0.05, 200
rounds, at least 20 records a leaf, L2 1.0) and are not tuned on the folds: with 353 records,
tuning on the out-of-fold AUC would report the tuning, not the model.  The model is the mean
log-odds of :data:`BAGS` such boosted models on bootstrap samples (smoother: a record's 100 Hz
and 500 Hz files score closer), all of them in the one ensemble node of the graph.  Missing
measurements (NaN) go down the branch the trees learned for them, in scikit-learn and in the
graph alike.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from common.io import atomic_write_bytes
from signals.criteria import FEATURE_NAMES, FEATURES_VERSION, mi_features

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


def split_features(split, index=slice(None)) -> np.ndarray:
    """:func:`signals.criteria.mi_features` of a split's records, in batches."""
    idx = np.arange(len(split))[index]
    parts = [mi_features(split.millivolts(idx[i : i + FEATURE_BATCH]), split.fs)
             for i in range(0, len(idx), FEATURE_BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, len(FEATURE_NAMES)), np.float32)


class CriteriaModel:
    """Trees on the measurements, with the interface training uses for networks
    (``predict_on_batch`` of windows, ``predict``, ``save``): the mean log-odds of
    ``estimators`` (boosted models on bootstrap samples, :data:`BAGS`)."""

    def __init__(self, estimators: list, fs: int):
        self.estimators = list(estimators)
        self.fs = int(fs)

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

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_bytes(path, pickle.dumps({"fs": self.fs, "estimators": self.estimators,
                                               "features": FEATURES_VERSION}), overwrite=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CriteriaModel:
        """A saved model (a pickle: load only run folders you made yourself)."""
        with open(path, "rb") as f:
            data = pickle.load(f)  # noqa: S301  our own run folder
        if data.get("features") != FEATURES_VERSION:
            raise ValueError(f"{path}: trained on features {data.get('features')!r}, this "
                             f"version computes {FEATURES_VERSION!r}; train it again")
        return cls(data["estimators"], data["fs"])

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


def _float32_at_most(v: float) -> float:
    """The largest float32 not above ``v``: for float32 inputs ``x <= v`` then holds exactly
    when ``x <= float32`` does, so the graph takes scikit-learn's branch every time."""
    f = np.float32(v)
    if float(f) > v:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)
