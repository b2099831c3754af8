"""The one resampler: the scorer uses it to bring a record to the model's rate, and training
uses it to show the model records of another rate as the scorer will present them
(``train fit --mix-rate-data``)."""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
from numpy.lib.stride_tricks import as_strided

#: PTB-XL's 100 Hz files are not ``resample_poly`` of its 500 Hz files.  Measured on the
#: shipped pairs (``benchmarks/run.py --only rates``, RESULTS.md "Rate consistency"): a
#: 100 Hz sample is the 500 Hz signal 1.25 ms later than its nominal time, low-passed at
#: 0.8915 of the 100 Hz Nyquist rate (44.6 Hz).  Resampling this way brings a 500 Hz file
#: within 0.33 uV (mean rms inside the record) of its 100 Hz file, against 18.1 uV for
#: ``resample_poly``'s defaults, so a record scores the same whichever file the scorer is
#: given.  Until 2026-12-07 the cut-off was 0.9 (45 Hz, 0.66 uV, from a coarser grid): the
#: difference then lay in the 42-46 Hz band, which the spatial velocity that times the QRS
#: amplifies most (benchmarks/EXPERIMENTS.md, "The resampler's cut-off, to a tenth of a
#: hertz").  A free 201-tap filter fitted by least squares to half the records comes within
#: 0.31 uV on the other half: what is left is the 100 Hz files' rounding to 1 uV (0.29).
ADVANCE_S = 0.00125
#: the anti-aliasing cut-off, as a fraction of the lower Nyquist rate
CUTOFF = 0.8915
#: filter taps per side per rate step (``resample_poly`` uses 10), and the Kaiser window's beta
HALF_TAPS = 20
BETA = 6.0


def resample(signal: np.ndarray, fs_in: float, fs_out: float, axis: int = 0) -> np.ndarray:
    """Polyphase resampling along ``axis``, float32 out, the way PTB-XL made its 100 Hz files
    from the same recordings (see ``ADVANCE_S``): output sample ``k`` is the band-limited
    signal at ``k / fs_out + ADVANCE_S`` seconds, low-passed at ``CUTOFF`` times the lower
    Nyquist rate (a Kaiser-windowed sinc, ``HALF_TAPS`` taps per side per rate step).  The
    length is ``resample_poly``'s: ``ceil(n * up / down)``.

    Whole-number decimation (500 or 1000 Hz to 100 Hz, the common case) is computed here in
    numpy: the values of ``scipy.signal.resample_poly`` with the same filter to float32
    rounding (a test holds it to scipy's), without importing ``scipy.signal`` (1.5 s in
    every process that resamples).  Other ratios (250 or 360 Hz to 100 Hz) go to scipy, with
    the filter designed once per ratio.
    """
    if fs_in == fs_out:
        return signal
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    x = np.asarray(signal)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    h = resampling_filter(float(fs_in), up, down, dtype)
    if up == 1:
        return _decimate(x.astype(dtype, copy=False), down, h, axis)
    from scipy.signal import resample_poly

    return resample_poly(x, up, down, axis=axis, window=h).astype(np.float32)


@functools.lru_cache(maxsize=32)
def resampling_filter(fs_in: float, up: int, down: int, dtype: np.dtype) -> np.ndarray:
    """The low-pass FIR filter for ``fs_in * up / down``, at the rate ``fs_in * up``, unit
    gain at 0 Hz, peaking ``ADVANCE_S`` before its centre tap (``resample_poly`` then puts
    each output sample ``ADVANCE_S`` later in the input), in the signal's float type."""
    max_rate = max(up, down)
    n_taps = 2 * HALF_TAPS * max_rate + 1
    cutoff = CUTOFF / max_rate  # of the Nyquist rate at fs_in * up
    m = np.arange(n_taps) - 0.5 * (n_taps - 1)
    advance = ADVANCE_S * fs_in * up  # in samples at fs_in * up
    h = cutoff * np.sinc(cutoff * (m + advance)) * np.kaiser(n_taps, BETA)
    h = (h / h.sum()).astype(dtype)
    h.setflags(write=False)
    return h


def _decimate(x: np.ndarray, down: int, h: np.ndarray, axis: int) -> np.ndarray:
    """``resample_poly(x, 1, down, axis, window=h)``: filter and keep every ``down``-th
    sample, aligned and cut as scipy does (its ``n_pre_pad`` and ``n_pre_remove``), in
    polyphase form.  The zero-padded signal is laid out by phase (sample ``j * down + r`` at
    ``[r, j]``); one matrix product with the filter cut into blocks of ``down`` taps gives
    each block's contribution to each output sample, and one sum over a strided view of it
    (block ``b`` shifted by ``b``) adds them up: no Python loop over taps."""
    x = np.moveaxis(x, axis, -1)  # time last
    lead_dims = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    half_len = (len(h) - 1) // 2
    n_in = x.shape[-1]
    n_out = n_in // down + bool(n_in % down)
    n_pre_pad = down - half_len % down
    first = (half_len + n_pre_pad) // down  # scipy's n_pre_remove
    taps = np.concatenate([np.zeros(n_pre_pad, h.dtype), h])[::-1]
    n_blocks = -(-len(taps) // down)
    taps = np.concatenate([taps, np.zeros(n_blocks * down - len(taps), h.dtype)])
    # y[j] = sum_m taps[m] xp[(first + j) * down + m], xp = x after len(filter) - 1 zeros
    lead_in = len(h) + n_pre_pad - 1
    n_steps = first + n_out + n_blocks
    xp = np.zeros((len(x), n_steps * down), x.dtype)
    xp[:, lead_in : lead_in + n_in] = x
    phases = np.ascontiguousarray(xp.reshape(len(x), n_steps, down).transpose(0, 2, 1))
    z = taps.reshape(n_blocks, down) @ phases  # (signals, n_blocks, n_steps)
    s = z.strides
    shifted = as_strided(z[:, :, first:], shape=(len(x), n_blocks, n_out),
                         strides=(s[0], s[1] + s[2], s[2]), writeable=False)
    y = shifted.sum(axis=1).astype(np.float32, copy=False)
    return np.moveaxis(y.reshape(lead_dims + (n_out,)), -1, axis)
