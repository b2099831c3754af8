"""Conditioning filters: baseline removal, mains notch, band-pass, and three denoisers.

Every function takes ``x`` with time on ``axis`` (default 0: ``(samples,)`` or
``(samples, leads)``) and returns float64 of the same shape; filters are zero-phase
(forward-backward) so they do not shift waves in time.  SciPy and PyWavelets are imported on
first use: ``import scipy.signal`` alone costs about 1.5 s, which the scorer's start-up must not
pay.

The three denoisers are those of the reference ECG5000 tutorial (median filter, Butterworth
band-pass, db4 wavelet with a universal soft threshold).  The tutorial picked among them by the
mean squared error against the *unfiltered* signal, which rewards doing nothing.  Here the
choice is by the SNR each recovers on shipped PTB-XL records with white noise of known power
added (:func:`denoise_snr`, averaged over input SNRs of 0, 6, 12 and 20 dB; run by
``make bench`` and checked by the tests).  The criterion can fail, and did: at 100 Hz the ECG
fills the whole band and every denoiser loses more on the waves than it gains on the noise
(doing nothing wins), while at 500 Hz the median filter wins clearly.
:func:`default_denoiser` encodes that, and a test fails if another choice beats it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _sos_filtfilt(sos, x: np.ndarray, axis: int) -> np.ndarray:
    from scipy.signal import sosfiltfilt

    return sosfiltfilt(sos, np.asarray(x, dtype=np.float64), axis=axis)


def remove_baseline(x: np.ndarray, fs: float, cutoff: float = 0.5, axis: int = 0) -> np.ndarray:
    """Baseline-wander removal: zero-phase Butterworth high-pass (order 2) at ``cutoff`` Hz."""
    from scipy.signal import butter

    return _sos_filtfilt(butter(2, cutoff, "highpass", fs=fs, output="sos"), x, axis)


def notch(x: np.ndarray, fs: float, freq: float = 50.0, quality: float = 30.0,
          axis: int = 0) -> np.ndarray:
    """Mains notch at ``freq`` Hz (50 or 60); a no-op when ``freq`` is at or above Nyquist."""
    from scipy.signal import filtfilt, iirnotch

    x = np.asarray(x, dtype=np.float64)
    if freq >= fs / 2:
        return x
    b, a = iirnotch(freq, quality, fs=fs)
    return filtfilt(b, a, x, axis=axis)


def bandpass(x: np.ndarray, fs: float, low: float = 0.5, high: float = 40.0, order: int = 4,
             axis: int = 0) -> np.ndarray:
    """Zero-phase Butterworth band-pass; ``high`` is capped at 45 % of the rate (the tutorial's
    0.5-50 Hz at an assumed 360 Hz would be invalid at 100 Hz)."""
    from scipy.signal import butter

    high = min(high, 0.45 * fs)
    return _sos_filtfilt(butter(order, [low, high], "bandpass", fs=fs, output="sos"), x, axis)


def median_denoise(x: np.ndarray, fs: float, width_s: float = 0.008, axis: int = 0) -> np.ndarray:
    """Running median over ``width_s`` (odd, at least 3 samples): the tutorial's median filter
    (kernel 3 at 360 Hz)."""
    from scipy.ndimage import median_filter

    k = max(3, int(round(width_s * fs)) | 1)
    size = [1] * np.ndim(x)
    size[axis] = k
    return median_filter(np.asarray(x, dtype=np.float64), size=size, mode="nearest")


def wavelet_denoise(x: np.ndarray, fs: float, wavelet: str = "db4", axis: int = 0) -> np.ndarray:
    """Wavelet shrinkage: db4 decomposition, soft threshold sigma * sqrt(2 ln n) on every detail
    level (sigma from the finest level's median absolute deviation / 0.6745), reconstruction.

    Decomposes down to about 1 Hz, so the approximation (baseline and slow waves) is untouched.
    """
    import pywt

    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    w = pywt.Wavelet(wavelet)
    level = max(1, min(pywt.dwt_max_level(n, w.dec_len), int(np.log2(fs / 2.0))))
    coeffs = pywt.wavedec(x, w, level=level, axis=-1)
    sigma = np.median(np.abs(coeffs[-1]), axis=-1, keepdims=True) / 0.6745
    thr = sigma * np.sqrt(2.0 * np.log(n))
    coeffs = [coeffs[0]] + [pywt.threshold(c, thr, mode="soft") for c in coeffs[1:]]
    out = pywt.waverec(coeffs, w, axis=-1)[..., :n]
    return np.moveaxis(out, -1, axis)


def _none(x: np.ndarray, fs: float, axis: int = 0) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


#: The denoisers by name (the tutorial's three, and ``none`` as the control that must lose).
DENOISERS: dict[str, Callable[..., np.ndarray]] = {
    "median": median_denoise,
    "bandpass": bandpass,
    "wavelet": wavelet_denoise,
    "none": _none,
}


def default_denoiser(fs: float) -> str:
    """The denoiser that recovers the most SNR at this rate on the shipped records: ``median``
    from 250 Hz up, ``none`` below (see the module docstring and benchmarks/RESULTS.md)."""
    return "median" if fs >= 250 else "none"


def ecg_denoise(x: np.ndarray, fs: float, method: str | None = None,
                axis: int = 0) -> np.ndarray:
    """Denoise with one of :data:`DENOISERS` (default: :func:`default_denoiser` of the rate)."""
    method = default_denoiser(fs) if method is None else method
    if method not in DENOISERS:
        raise ValueError(f"method must be one of {sorted(DENOISERS)}, got {method!r}")
    return DENOISERS[method](x, fs, axis=axis)


def ecg_condition(x: np.ndarray, fs: float, mains: tuple[float, ...] = (50.0, 60.0),
                  method: str | None = None, axis: int = 0) -> np.ndarray:
    """The conditioning chain measurements use: baseline removal, mains notches, denoiser."""
    y = remove_baseline(x, fs, axis=axis)
    for f in mains:
        y = notch(y, fs, f, axis=axis)
    return ecg_denoise(y, fs, method, axis=axis)


def denoise_snr(clean: np.ndarray, fs: float, snr_in_db: float, seed: int = 0,
                methods: tuple[str, ...] | None = None) -> dict[str, float]:
    """Output SNR (dB) each denoiser recovers from ``clean`` plus white noise at ``snr_in_db``.

    ``clean`` is ``(n, samples, leads)``; baseline wander is removed first (it is no noise the
    denoisers are meant for), noise of the stated power relative to each lead's power is added,
    and the output is compared with the clean baseline-free signal: SNR_out = 10 log10(P(clean)
    / P(output - clean)), pooled over every lead of every record.  A filter that does nothing
    scores ``snr_in_db``; one that distorts the ECG loses what it gains on the noise.
    """
    ref = remove_baseline(clean, fs, axis=1)
    power = np.mean(ref**2, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(ref.shape) * np.sqrt(power / 10 ** (snr_in_db / 10))
    out = {}
    for name in methods or tuple(DENOISERS):
        err = ecg_denoise(ref + noise, fs, name, axis=1) - ref
        out[name] = float(10 * np.log10(np.sum(ref**2) / np.sum(err**2)))
    return out
