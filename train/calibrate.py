"""Probability calibration, chosen on out-of-fold predictions and carried inside the ONNX graph.

Class-weighted training leaves the model's output uncalibrated (0.5 means nothing).  Four
calibrators are fitted to out-of-fold scores and compared by the Brier score each reaches on
folds it was not fitted on (:func:`choose_calibrator`):

- ``none``: the raw score;
- ``temperature``: ``sigmoid(logit(p) / T)``;
- ``platt``: ``sigmoid(a * logit(p) + b)``;
- ``isotonic``: a monotone piecewise-linear map through the pool-adjacent-violators fit.

The chosen one is a :class:`Calibrator`: numpy for evaluation, and :meth:`Calibrator.onnx_nodes`
appends the same function to the exported graph with elementwise ONNX operators, so
``mi_probability`` from the scorer is the calibrated probability (one preprocessing path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = 1e-6
METHODS = ("none", "temperature", "platt", "isotonic")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Calibrator:
    """A fitted calibration map ``p -> calibrated p``.

    ``method`` is one of :data:`METHODS`; ``a``, ``b`` are the logistic parameters
    (temperature: ``a = 1 / T``, ``b = 0``); ``xs``, ``ys`` the knots of the isotonic map.
    """

    method: str = "none"
    a: float = 1.0
    b: float = 0.0
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "none":
            return p
        if self.method in ("temperature", "platt"):
            return _sigmoid(self.a * _logit(p) + self.b)
        if self.method == "isotonic":
            return np.interp(p, self.xs, self.ys)
        raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")

    def onnx_nodes(self, helper, numpy_helper, source: str, target: str,
                   prefix: str = "calib") -> tuple[list, list]:
        """ONNX nodes and initializers computing this map from tensor ``source`` into
        ``target`` (float32, any shape), with elementwise operators only."""
        nodes, inits = [], []

        def const(name: str, value, dtype=np.float32) -> str:
            inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype),
                                                 f"{prefix}_{name}"))
            return f"{prefix}_{name}"

        def node(op: str, inputs: list[str], out: str, **attrs) -> str:
            nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
            return out

        if self.method == "none":
            node("Identity", [source], target)
        elif self.method in ("temperature", "platt"):
            p = node("Clip", [source, const("lo", EPS), const("hi", 1 - EPS)], f"{prefix}_p")
            q = node("Sub", [const("one", 1.0), p], f"{prefix}_q")
            logit = node("Sub", [node("Log", [p], f"{prefix}_logp"),
                                 node("Log", [q], f"{prefix}_logq")], f"{prefix}_logit")
            z = node("Add", [node("Mul", [logit, const("a", self.a)], f"{prefix}_az"),
                             const("b", self.b)], f"{prefix}_z")
            node("Sigmoid", [z], target)
        elif self.method == "isotonic":
            # interp(p, xs, ys) = ys[0] + sum_i slope_i * clip(p - xs[i], 0, xs[i+1] - xs[i])
            xs, ys = np.asarray(self.xs, np.float64), np.asarray(self.ys, np.float64)
            widths = np.diff(xs)
            slopes = np.where(widths > 0, np.diff(ys) / np.where(widths > 0, widths, 1), 0.0)
            last = const("axis", [-1], dtype=np.int64)
            u = node("Unsqueeze", [source, last], f"{prefix}_u")  # [..., 1] against [k]
            d = node("Sub", [u, const("xs", xs[:-1])], f"{prefix}_d")
            c = node("Max", [d, const("zero", 0.0)], f"{prefix}_c0")
            c = node("Min", [c, const("w", widths)], f"{prefix}_c")
            m = node("Mul", [c, const("s", slopes)], f"{prefix}_m")
            s = node("ReduceSum", [m, last], f"{prefix}_sum", keepdims=0)
            node("Add", [s, const("y0", ys[0])], target)
        else:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        return nodes, inits


def fit_calibrator(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit one calibrator to scores ``p`` and labels ``y``."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(np.float64)
    if method == "none":
        return Calibrator()
    z = _logit(p)
    if method in ("temperature", "platt"):
        from scipy.optimize import minimize

        def loss(theta):
            a, b = (theta[0], 0.0) if method == "temperature" else theta
            q = np.clip(_sigmoid(a * z + b), 1e-12, 1 - 1e-12)
            return -np.mean(y * np.log(q) + (1 - y) * np.log1p(-q))

        x0 = [1.0] if method == "temperature" else [1.0, 0.0]
        res = minimize(loss, x0, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9})
        a, b = (float(res.x[0]), 0.0) if method == "temperature" else map(float, res.x)
        return Calibrator(method=method, a=a, b=b)
    if method == "isotonic":
        xs, ys = _isotonic(p, y)
        return Calibrator(method=method, xs=xs.tolist(), ys=ys.tolist())
    raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")


def _isotonic(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: knots (block centres, block means) of a non-decreasing fit,
    with the ends pinned at 0 and 1 so the map covers the whole probability range."""
    order = np.argsort(p, kind="mergesort")
    ps, ys = p[order], y[order]
    blocks: list[list[float]] = []  # [sum y, count, sum p]
    for pi, yi in zip(ps, ys, strict=True):
        blocks.append([yi, 1.0, pi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, c, sp = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
            blocks[-1][2] += sp
    xs = np.array([b[2] / b[1] for b in blocks])
    vals = np.array([b[0] / b[1] for b in blocks])
    xs = np.r_[0.0, xs, 1.0]
    vals = np.r_[vals[0], vals, vals[-1]]
    keep = np.r_[True, np.diff(xs) > 0]
    return xs[keep], vals[keep]


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probabilities (lower is better)."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64))
                         ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE: the record-weighted mean |observed rate - mean probability| over equal-width bins."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / len(y)) if len(y) else float("nan")


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per bin: mean probability, observed MI rate and record count (the reliability diagram)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return [{"bin": b, "mean_p": float(p[idx == b].mean()), "observed": float(y[idx == b].mean()),
             "n": int((idx == b).sum())} for b in range(bins) if (idx == b).any()]


def choose_calibrator(p: np.ndarray, y: np.ndarray, folds: np.ndarray,
                      methods: tuple[str, ...] = METHODS) -> tuple[Calibrator, dict[str, Any]]:
    """The calibrator with the lowest Brier score on held-out folds, refitted on all records.

    ``p`` are out-of-fold scores, ``folds`` each record's fold: every method is fitted on all
    folds but one and scored on that one, in turn.  Returns the chosen calibrator and, per
    method, the held-out Brier score and ECE.
    """
    p, y, folds = np.asarray(p), np.asarray(y).astype(bool), np.asarray(folds)
    table: dict[str, Any] = {}
    for method in methods:
        held = np.empty(len(p))
        for f in np.unique(folds):
            test = folds == f
            train = ~test
            if y[train].all() or not y[train].any():
                held[test] = p[test]
                continue
            held[test] = fit_calibrator(method, p[train], y[train])(p[test])
        table[method] = {"brier": brier(y, held), "ece": expected_calibration_error(y, held)}
    best = min(methods, key=lambda m: table[m]["brier"])
    return fit_calibrator(best, p, y), {"chosen": best, "held_out": table,
                                        "criterion": "Brier score on held-out folds"}
