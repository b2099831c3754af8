"""R peaks and interpretable per-record measurements (NeuroKit2; the ``signals`` extra).

:func:`ecg_measure` gives, for one lead (II by default), the reference tutorial's features:
heart rate, RR mean and SD, QRS duration, and the mean, median, SD and sum of the R and T wave
amplitudes.  R peaks come from NeuroKit2 (``ecg_clean`` then ``ecg_peaks``, its default
detector); Q, S and T peaks from ``ecg_delineate(method="peak")``.  The QRS duration is
estimated as the median Q-peak to S-peak interval: on the shipped sample it reads 103-109 ms
(median over records, both rates), where the wavelet delineator's onsets and offsets read an
implausible 170-180 ms.  Amplitudes are read on the signal with baseline removed and mains
notched but not smoothed (a 3-sample median at 100 Hz cuts R peaks by a quarter): R as the
largest value within 40 ms of the detected peak, T at its peak, in mV above the isoelectric
line.

The R peaks were checked against independent detections on the shipped records (``make bench``
and ``tests/test_measure.py``): at 500 Hz against ``wfdb.processing.xqrs_detect``, and at 100 Hz
against the peaks found in the same record's separately stored 500 Hz copy.
"""

from __future__ import annotations

import warnings

import numpy as np

from schemas import LEADS, MEASUREMENT_FIELDS
from signals.filters import ecg_condition

#: Lead the measurements are taken on unless told otherwise (the rhythm lead).
DEFAULT_LEAD = "II"


class MeasurementExtraMissing(ImportError):
    """NeuroKit2 (the ``signals`` extra) is not installed."""


def require_neurokit():
    """NeuroKit2, or MeasurementExtraMissing naming the pip command."""
    try:
        import neurokit2 as nk
    except ImportError as e:
        raise MeasurementExtraMissing(
            "measurements need NeuroKit2 and PyWavelets: pip install 'mi-screen[signals]'"
        ) from e
    return nk


def ecg_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of one lead (NeuroKit2's default cleaning and detector)."""
    nk = require_neurokit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = nk.ecg_clean(np.asarray(signal, dtype=np.float64), sampling_rate=fs)
        _, info = nk.ecg_peaks(clean, sampling_rate=fs)
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def _stats(prefix: str, values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {f"{prefix}_{k}": np.nan for k in ("mean", "median", "sd", "sum")}
    return {f"{prefix}_mean": float(values.mean()), f"{prefix}_median": float(np.median(values)),
            f"{prefix}_sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            f"{prefix}_sum": float(values.sum())}


def ecg_measure(x: np.ndarray, fs: float, leads: tuple[str, ...] = LEADS,
                lead: str = DEFAULT_LEAD) -> dict[str, float]:
    """Measurements of one record ``(samples, leads)`` in mV, named as
    :data:`schemas.MEASUREMENT_FIELDS`; NaN where a wave cannot be found.

    Columns: ``n_beats``, ``hr_bpm``, ``rr_mean_ms``, ``rr_sd_ms``, ``qrs_ms`` (median over
    beats), ``r_amp_{mean,median,sd,sum}_mv`` and ``t_amp_{mean,median,sd,sum}_mv``.
    """
    nk = require_neurokit()
    sig = np.asarray(x, dtype=np.float64)[:, leads.index(lead)]
    out = {name: np.nan for name, _, _ in MEASUREMENT_FIELDS}
    peaks = ecg_peaks(sig, fs)
    out["n_beats"] = float(len(peaks))
    if len(peaks) < 2:
        return out
    rr = np.diff(peaks) / fs * 1000.0
    out["rr_mean_ms"] = float(rr.mean())
    out["rr_sd_ms"] = float(rr.std(ddof=1)) if len(rr) > 1 else 0.0
    out["hr_bpm"] = 60000.0 / out["rr_mean_ms"]
    conditioned = ecg_condition(sig, fs, method="none")
    w = max(1, int(round(0.04 * fs)))
    around = np.clip(peaks[:, None] + np.arange(-w, w + 1)[None, :], 0, len(sig) - 1)
    out.update({k + "_mv": v
                for k, v in _stats("r_amp", conditioned[around].max(axis=1)).items()})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = nk.ecg_clean(sig, sampling_rate=fs)
            _, waves = nk.ecg_delineate(clean, peaks, sampling_rate=fs, method="peak")
    except Exception:  # noqa: BLE001  NeuroKit2 fails on some short or odd records: no waves
        waves = {}

    def idx(key: str) -> np.ndarray:
        return np.asarray(waves.get(key, []), dtype=np.float64)

    q, s = idx("ECG_Q_Peaks"), idx("ECG_S_Peaks")
    if q.size and q.size == s.size:
        qrs = (s - q) / fs * 1000.0
        qrs = qrs[np.isfinite(qrs) & (qrs > 0)]
        out["qrs_ms"] = float(np.median(qrs)) if qrs.size else np.nan
    t = idx("ECG_T_Peaks")
    t = t[np.isfinite(t)].astype(np.int64)
    t = t[(t >= 0) & (t < len(conditioned))]
    out.update({k + "_mv": v for k, v in _stats("t_amp", conditioned[t]).items()})
    return {name: out[name] for name, _, _ in MEASUREMENT_FIELDS}


def measurement_row(signal: np.ndarray, fs: float,
                    leads: tuple[str, ...] = LEADS) -> dict[str, float | None]:
    """:func:`ecg_measure` as table values: null where a wave was not found, nothing (all
    null) when the record is too short or odd for the detector."""
    try:
        values = ecg_measure(signal, fs, leads)
    except (ValueError, IndexError):
        return {}
    return {k: (float(v) if np.isfinite(v) else None) for k, v in values.items()}
