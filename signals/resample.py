"""The one resampler: the scorer uses it to bring a record to the model's rate, and training
uses it to show the model records of another rate as the scorer will present them
(``train fit --mix-rate-data``)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def resample(signal: np.ndarray, fs_in: float, fs_out: float, axis: int = 0) -> np.ndarray:
    """Polyphase resampling along ``axis`` (anti-aliasing FIR included), float32 out.

    ``scipy.signal`` is imported on first use (about 1.5 s), so a scorer that never resamples
    never pays for it.
    """
    if fs_in == fs_out:
        return signal
    from scipy.signal import resample_poly

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=axis).astype(
        np.float32)
