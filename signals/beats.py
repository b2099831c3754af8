"""Heartbeats as ECG5000 holds them, and the reference tutorial's per-beat features.

ECG5000 (UCR archive, from record chf07 of the BIDMC Congestive Heart Failure Database) holds
single-lead heartbeats of 140 samples, each z-normalised (mean 0, SD 1).  A beat there runs
from just after one R peak to the rise of the next: its deepest point is the S wave within the
first few samples, and the last samples climb towards the next R.

- :func:`cut_beats` cuts a recording into beats the same way: from each R peak to the next,
  resampled to :data:`BEAT_SAMPLES` by linear interpolation and z-normalised, so beats from a
  12-lead record look like ECG5000 beats to a beat model.  This is an approximation of a
  preprocessing the archive does not document in detail; the beat model is a demonstration.
- :func:`beat_features` computes the tutorial's features on each beat: the amplitudes of the R
  and T waves (mean, median, SD and sum over the peaks found), the intervals between R peaks and
  the QRS duration.  Within a single beat "R peaks" are the tall peaks (prominence at least half
  the beat's range, edges included) and T peaks the smaller ones; a beat with one R peak has
  RR statistics 0.
- :func:`denoise_beats` applies one of :data:`signals.filters.DENOISERS` along each beat.  A beat
  holds about 0.8 s, so the nominal rate :data:`BEAT_FS` (140 samples per 0.8 s) scales the
  filters' corner frequencies; the tutorial's band-pass assumed 360 Hz, which is wrong for
  ECG5000.
"""

from __future__ import annotations

import warnings

import numpy as np

from schemas import BEAT_SAMPLES

#: Nominal rate of an ECG5000 beat: 140 samples over a beat of about 0.8 s.
BEAT_FS = 175.0

#: :func:`beat_features` column names, in order.
BEAT_FEATURES: tuple[str, ...] = (
    "r_amp_mean", "r_amp_median", "r_amp_sd", "r_amp_sum",
    "t_amp_mean", "t_amp_median", "t_amp_sd", "t_amp_sum",
    "rr_mean", "rr_sd", "qrs_duration", "n_r_peaks", "n_t_peaks",
)


def znormalise(beats: np.ndarray) -> np.ndarray:
    """Each beat (row) to mean 0 and SD 1 (ddof 1, as the UCR archive); a flat beat to 0."""
    beats = np.asarray(beats, dtype=np.float64)
    sd = beats.std(axis=-1, ddof=1, keepdims=True)
    return (beats - beats.mean(axis=-1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def cut_beats(signal: np.ndarray, r_peaks: np.ndarray,
              samples: int = BEAT_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Beats from one lead: each R peak to the next, resampled to ``samples`` and
    z-normalised.  Returns ``(beats (n, samples), start sample of each beat)``; ``n`` is one
    less than the number of peaks."""
    signal = np.asarray(signal, dtype=np.float64).reshape(-1)
    peaks = np.asarray(r_peaks, dtype=np.int64)
    peaks = peaks[(peaks >= 0) & (peaks < len(signal))]
    if len(peaks) < 2:
        return np.zeros((0, samples)), np.zeros(0, np.int64)
    out = np.empty((len(peaks) - 1, samples))
    grid = np.linspace(0.0, 1.0, samples)
    for i, (a, b) in enumerate(zip(peaks[:-1], peaks[1:], strict=True)):
        seg = signal[a : b + 1]
        out[i] = np.interp(grid * (len(seg) - 1), np.arange(len(seg)), seg)
    return znormalise(out), peaks[:-1]


def denoise_beats(beats: np.ndarray, method: str) -> np.ndarray:
    """Apply denoiser ``method`` (``signals.filters.DENOISERS``) along each beat."""
    from signals.filters import DENOISERS

    if method not in DENOISERS:
        raise ValueError(f"denoiser must be one of {sorted(DENOISERS)}, got {method!r}")
    if method == "none":
        return np.asarray(beats, dtype=np.float64)
    return DENOISERS[method](np.asarray(beats, dtype=np.float64), BEAT_FS, axis=-1)


def _stats(values: np.ndarray) -> list[float]:
    if len(values) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(values.mean()), float(np.median(values)),
            float(values.std(ddof=1)) if len(values) > 1 else 0.0, float(values.sum())]


def beat_features(beats: np.ndarray) -> np.ndarray:
    """The tutorial's features for each beat (row of ``beats``), float32 ``(n,
    len(BEAT_FEATURES))``; intervals and durations in samples of the 140-sample beat."""
    from scipy.signal import find_peaks, peak_widths

    beats = np.asarray(beats, dtype=np.float64)
    out = np.zeros((len(beats), len(BEAT_FEATURES)), dtype=np.float32)
    for i, x in enumerate(beats):
        span = float(x.max() - x.min()) or 1.0
        # a beat is cut at an R peak, so the tallest waves may sit on its edges: pad with the
        # minimum so that an edge maximum counts as a peak
        padded = np.concatenate([[x.min()], x, [x.min()]])
        peaks, props = find_peaks(padded, prominence=0.1 * span)
        peaks = peaks - 1
        prom = props["prominences"]
        tall = peaks[prom >= 0.5 * span]
        small = peaks[prom < 0.5 * span]
        r_amp, t_amp = x[tall], x[small]
        rr = np.diff(tall).astype(np.float64)
        # QRS: the largest deflection (positive or negative) and its width at half prominence
        # (padded like the peaks, so a deflection on the beat's edge has a width too)
        main = int(np.argmax(np.abs(x)))
        y = x if x[main] >= 0 else -x
        with warnings.catch_warnings():  # a flat-topped deflection: width of its plateau
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy's PeakPropertyWarning
            qrs = float(peak_widths(np.concatenate([[y.min()], y, [y.min()]]), [main + 1],
                                    rel_height=0.5)[0][0])
        out[i] = [*_stats(r_amp), *_stats(t_amp), float(rr.mean()) if len(rr) else 0.0,
                  float(rr.std(ddof=1)) if len(rr) > 1 else 0.0, qrs, len(tall), len(small)]
    return out


def beat_inputs(beats: np.ndarray, inputs: str, denoiser: str = "none") -> np.ndarray:
    """What a beat model's graph takes (float32): the z-normalised beats (``inputs="beat"``),
    or their :func:`beat_features` after ``denoiser`` (``inputs="features"``).  Training and
    the scorer both call this: one preprocessing path."""
    beats = znormalise(beats)
    if inputs == "beat":
        return beats.astype(np.float32)
    if inputs == "features":
        return beat_features(denoise_beats(beats, denoiser)).astype(np.float32)
    raise ValueError(f"inputs must be 'beat' or 'features', got {inputs!r}")
