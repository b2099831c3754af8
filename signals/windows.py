"""Sliding windows over a record and the aggregation of their scores: one definition that
training (evaluation, bands, calibration) and the scorer both use.

A model that takes windows shorter than the record (the PTB-XL benchmark's recipe: random
2.5 s crops in training, 2.5 s windows with a 1.25 s stride at test time) scores every window,
and the record's probability is an aggregate of the windows':

- ``logit_mean``: the mean of the windows' log-odds, mapped back to a probability;
- ``max``: the largest window probability (MI in any stretch flags the record);
- ``mean``: the mean of the probabilities (models exported before windows were configurable).

The calibration inside the exported graph acts on each window.  ``logit_mean`` and ``max``
commute with it: Platt or temperature scaling is affine in log-odds, so the mean log-odds of
calibrated windows is the calibrated mean log-odds; any increasing map (isotonic too) commutes
with ``max``.  So a calibrator fitted to aggregated training scores gives exactly the same
record probability when the scorer aggregates calibrated windows.  :func:`commutes` says which
pairs have this property; training only chooses among those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AGGREGATIONS = ("logit_mean", "max", "mean")
#: log-odds are taken of probabilities clipped to [EPS, 1 - EPS]
EPS = 1e-6


@dataclass(frozen=True)
class WindowSpec:
    """Window length and stride in samples, and how window scores become a record's."""

    length: int
    stride: int
    aggregation: str = "logit_mean"

    def __post_init__(self):
        if self.length < 1 or self.stride < 1:
            raise ValueError(f"window length and stride must be >= 1 sample, got "
                             f"{self.length}, {self.stride}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {list(AGGREGATIONS)}, got "
                             f"{self.aggregation!r}")

    def starts(self, n: int) -> np.ndarray:
        return window_starts(n, self.length, self.stride)


def window_starts(n: int, length: int, stride: int | None = None) -> np.ndarray:
    """First samples of the windows of ``length`` over ``n`` samples, ``stride`` apart (default
    half a window), the last aligned with the end so every sample is seen.

    >>> window_starts(1000, 250, 125).tolist()
    [0, 125, 250, 375, 500, 625, 750]
    >>> window_starts(1000, 1000).tolist()
    [0]
    """
    if n <= length:
        return np.zeros(1, dtype=np.int64)
    step = max(1, stride if stride is not None else length // 2)
    starts = np.arange(0, n - length + 1, step, dtype=np.int64)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    return starts


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def aggregate(p: np.ndarray, owners: np.ndarray, n_records: int, how: str) -> np.ndarray:
    """Record probabilities (float64) from window probabilities ``p`` and each window's record
    index ``owners`` (``0 .. n_records - 1``; every record needs at least one window)."""
    p, owners = np.asarray(p, dtype=np.float64).reshape(-1), np.asarray(owners)
    counts = np.bincount(owners, minlength=n_records)
    if (counts == 0).any():
        raise ValueError(f"record {int(np.argmin(counts))} has no window")
    if how == "max":
        out = np.full(n_records, -np.inf)
        np.maximum.at(out, owners, p)
        return out
    if how == "mean":
        return np.bincount(owners, weights=p, minlength=n_records) / counts
    if how == "logit_mean":
        z = np.bincount(owners, weights=_logit(p), minlength=n_records) / counts
        return 1.0 / (1.0 + np.exp(-z))
    raise ValueError(f"aggregation must be one of {list(AGGREGATIONS)}, got {how!r}")


def commutes(calibration: str, how: str) -> bool:
    """Whether calibrating windows then aggregating equals aggregating then calibrating."""
    if calibration == "none" or how == "max":
        return True
    return how == "logit_mean" and calibration in ("temperature", "platt")
