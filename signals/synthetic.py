"""Synthetic recording faults, built from real records: the cases the quality gate must catch.

Tests and ``make bench`` build every fault with these recipes, so what is tested is what is
measured.  ``x`` is ``(n, samples, leads)`` mV in :data:`schemas.LEADS` order.
"""

from __future__ import annotations

import numpy as np

from schemas import LEADS

#: fault -> the quality check that must report it
FAULTS: dict[str, str] = {
    "all_flat": "flat",
    "three_flat": "flat",
    "noise_0db": "noise",
    "clip_1mv": "clipping",
    "hum_50hz_2mv": "mains",
    "wander_0.3hz_3mv": "wander",
    "pop_v2": "pop",
}


def add_fault(x: np.ndarray, fs: float, fault: str, seed: int = 0) -> np.ndarray:
    """A copy of ``x`` with ``fault`` (one of :data:`FAULTS`):

    - ``all_flat``: every lead zero (electrodes off);
    - ``three_flat``: V1-V3 zero;
    - ``noise_0db``: white Gaussian noise as powerful as each lead (0 dB SNR);
    - ``clip_1mv``: the amplifier saturating at +-1 mV;
    - ``hum_50hz_2mv``: a 50 Hz sinusoid of 2 mV amplitude on every lead;
    - ``wander_0.3hz_3mv``: a 0.3 Hz sinusoid of 3 mV amplitude on every lead;
    - ``pop_v2``: an electrode pop in V2 at 4 s, a 3 mV step decaying over 0.5 s.
    """
    x = np.asarray(x, dtype=np.float32)
    t = (np.arange(x.shape[1]) / fs).astype(np.float32)
    y = x.copy()
    if fault == "all_flat":
        y[:] = 0.0
    elif fault == "three_flat":
        y[:, :, [LEADS.index(v) for v in ("V1", "V2", "V3")]] = 0.0
    elif fault == "noise_0db":
        centred = x - x.mean(axis=1, keepdims=True)
        rms = np.sqrt((centred**2).mean(axis=1, keepdims=True))
        y += np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32) * rms
    elif fault == "clip_1mv":
        y = np.clip(x, -1.0, 1.0)
    elif fault == "hum_50hz_2mv":
        y += (2.0 * np.sin(2 * np.pi * 50 * t + 0.7))[None, :, None]
    elif fault == "wander_0.3hz_3mv":
        y += (3.0 * np.sin(2 * np.pi * 0.3 * t))[None, :, None]
    elif fault == "pop_v2":
        k = int(4.0 * fs)
        step = np.zeros_like(t)
        step[k:] = 3.0 * np.exp(-(t[k:] - t[k]) / 0.5)
        y[:, :, LEADS.index("V2")] += step
    else:
        raise ValueError(f"fault must be one of {sorted(FAULTS)}, got {fault!r}")
    return y


def clip_affected(x: np.ndarray, limit: float = 1.0, share: float = 0.02) -> np.ndarray:
    """Records where clipping at ``limit`` cuts at least ``share`` of some lead's samples
    (in the others it changes nothing worth reporting)."""
    return ((np.abs(x) > limit).mean(axis=1) >= share).any(axis=1)


def ecg_with_waves(fs: float, seconds: float = 10.0, hr_bpm: float = 70.0,
                   q_mv=0.0, r_mv=1.0, s_mv=0.3, st_mv=0.0, t_mv=0.3, offset_mv=0.0,
                   wander_mv: float = 0.0, noise_mv: float = 0.0, seed: int = 0,
                   pr_mv: float = 0.0) -> np.ndarray:
    """A 12-lead record ``(samples, 12)`` of identical beats with known waves, per lead
    (each parameter a number or 12 numbers in :data:`schemas.LEADS` order):

    the QRS begins 50 ms before the R peak in every lead; with ``q_mv`` > 0 it first falls to
    ``-q_mv`` at -30 ms and is back at 0 at -10 ms (a Q wave of 40 ms), then rises to ``r_mv``
    at 0 ms (without a Q it rises from 0 to ``r_mv`` over those 50 ms), falls
    to ``-s_mv`` at +20 ms and reaches the ST level ``st_mv`` at +40 ms, the J point (QRS 90 ms);
    ST stays there to +140 ms, then a T wave (a raised cosine from +140 ms to +380 ms) peaks
    at ``t_mv`` at +260 ms and returns to 0; a P wave of 0.1 mV peaks 160 ms before R.  All
    amplitudes are against the PR baseline, which sits at ``offset_mv`` plus a 0.25 Hz wander
    of ``wander_mv`` peak-to-peak, plus white noise of ``noise_mv``.

    ``pr_mv`` moves the PR segment alone (as atrial repolarisation or pericarditis can): it
    rises gently from the P peak (-160 ms) to ``pr_mv`` at -110 ms, stays there to QRS onset
    and returns to the old level over the QRS upstroke (-50 to 0 ms).  The other waves keep
    their levels, so read against the PR baseline the ST level becomes ``st_mv - pr_mv``,
    while a reading against the TP segment (or 0 mV) would still say ``st_mv``.
    """
    def per_lead(v):
        return np.broadcast_to(np.asarray(v, dtype=np.float64), (len(LEADS),))

    q, r, s, st, t = (per_lead(v) for v in (q_mv, r_mv, s_mv, st_mv, t_mv))
    n = int(round(seconds * fs))
    tt = np.arange(n) / fs
    rr = 60.0 / hr_bpm
    x = np.zeros((n, len(LEADS)))
    for beat in np.arange(0.4, seconds - 0.2, rr):
        u = (tt - beat) * 1000.0  # ms from this R peak
        for i in range(len(LEADS)):
            if q[i] > 0:
                knots_t, knots_v = [-50, -30, -10, 0], [0, -q[i], 0, r[i]]
            else:
                knots_t, knots_v = [-50, 0], [0, r[i]]
            knots_t, knots_v = knots_t + [20, 40, 140], knots_v + [-s[i], st[i], st[i]]
            inside = (u >= -50) & (u <= 140)
            x[inside, i] += np.interp(u[inside], knots_t, knots_v)
            tw = (u > 140) & (u < 380)
            # the T wave rises from the ST level to t, then falls to 0
            phase = (u[tw] - 140) / 240.0
            bump = 0.5 - 0.5 * np.cos(2 * np.pi * phase)
            level = np.where(phase < 0.5, st[i] + (t[i] - st[i]) * bump, t[i] * bump)
            x[tw, i] += level
            if pr_mv:
                x[:, i] += pr_mv * np.interp(u, [-160, -110, -50, 0], [0, 1, 1, 0])
            pw = np.abs(u + 160) < 40
            x[pw, i] += 0.1 * (0.5 + 0.5 * np.cos(np.pi * (u[pw] + 160) / 40))
    x += offset_mv + 0.5 * wander_mv * np.sin(2 * np.pi * 0.25 * tt)[:, None]
    if noise_mv:
        x += np.random.default_rng(seed).normal(0, noise_mv, x.shape)
    return x.astype(np.float32)
