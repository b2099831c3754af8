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
