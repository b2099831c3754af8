"""Signal-quality gate: is a recording fit to be scored?  Vectorised over a batch.

:func:`ecg_quality` takes a batch of records of one rate and length, ``(n, samples, leads)``
in mV with leads in :data:`schemas.LEADS` order, and returns a :class:`Quality` per record:
``good``, ``poor`` (score it, but say why) or ``unusable`` (do not score it; say which leads,
what is wrong and the fix).  Every check is a few passes of numpy over the batch (no per-record
Python, no FFT, no sort of the full signal), so the gate costs a small fraction of scoring.

Checks, per lead unless said otherwise (thresholds in :data:`THRESHOLDS`, chosen on the 706
shipped PTB-XL files at both rates; the README's quality section says why each value):

==================  ==============================================================  =========
check               measure                                                         level
==================  ==============================================================  =========
``flat``            peak-to-peak below 0.05 mV over the record, or over 90 % of it   unusable
                    in 0.5 s blocks (electrode off, lead absent, constant signal)
``clipping``        share of samples sitting on the lead's own maximum or minimum     poor;
                    (amplifier saturation)                                          unusable
                                                                                    >= 10 %
``noise``           noise floor: 25th percentile of 80 ms block means of the second   poor;
                    difference, scaled to a white-noise sigma; SNR = signal power    unusable
                    over noise power, per lead (median over leads for the record)    < 3 dB
``mains``           amplitude of the 50 Hz and 60 Hz components (single-bin DFT,     poor
                    aliased frequency when the rate is below 2x mains)
``wander``          peak-to-peak of 0.5 s block means (baseline wander)              poor
``pop``             the largest one-sample jump, when the level after it stays       poor
                    shifted (an electrode pop; a QRS returns to baseline)
``no_qrs``          fewer than 3 beats on the lead-summed slope envelope             unusable
``heart_rate``      beats imply a rate below 25 or above 250 bpm                     unusable
``limb_reversal``   lead I predominantly negative while aVR is predominantly         poor
                    positive (left/right arm electrodes swapped, or dextrocardia)
==================  ==============================================================  =========
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field

import numpy as np

from schemas import LEADS


class QualityLevel(enum.IntEnum):
    """Ordered quality levels (higher is worse); ``str()`` gives the results-table value."""

    GOOD = 0
    POOR = 1
    UNUSABLE = 2

    def __str__(self) -> str:
        return self.name.lower()


#: Every threshold of the gate, in one place (see the module docstring and README).
THRESHOLDS: dict[str, float] = {
    "flat_ptp_mv": 0.05,  # a lead moving less than this over 0.5 s has no ECG in it
    "flat_block_fraction": 0.9,
    "clip_fraction_poor": 0.01,  # >= 1 % of samples on the rail
    "clip_fraction_unusable": 0.10,
    "clip_min_plateaus": 4,  # ... in at least 4 separate 0.1 s blocks (several beats)
    "snr_db_poor": 10.0,
    "snr_db_unusable": 5.0,
    "mains_mv_poor": 0.1,
    "wander_mv_poor": 2.0,
    "pop_jump_mv": 1.5,  # a one-sample jump of at least this,
    "pop_return": 0.3,  # with no opposite jump of 0.3x its size within 0.1 s,
    "pop_ratio": 1.5,  # 1.5x the lead's usual largest jump per 0.1 s (its QRS upstrokes),
    "pop_offset_mv": 0.8,  # after which the level 0.2 s later is this far from 0.2 s before
    "min_beats": 3,
    "min_qrs_peakiness": 3.0,  # 99th / 50th percentile of the slope envelope
    "hr_min_bpm": 25.0,
    "hr_max_bpm": 250.0,
    # ((max - mean) - (mean - min)) / peak-to-peak of lead I at most -0.1 and of aVR at least 0.1
    "reversal_polarity": 0.1,
}

_FIX = {
    "flat": "check that those electrodes are attached and re-record",
    "clipping": "the amplifier saturated; re-record with a lower gain or check the units",
    "noise": "muscle tremor or poor electrode contact; let the patient relax, check the "
             "electrodes and re-record",
    "mains": "mains interference; check grounding and cables, or enable the device's mains "
             "filter",
    "wander": "baseline wander (breathing, movement, loose electrode); re-record at rest",
    "pop": "an electrode lost contact for a moment; check that electrode",
    "no_qrs": "no heartbeats found; check that this is an ECG and that the electrodes were "
              "connected, and re-record",
    "heart_rate": "check the sampling rate (for CSV files --csv-fs) and the recording",
    "limb_reversal": "left and right arm electrodes are likely swapped; check the placement "
                     "(or dextrocardia)",
}


@dataclass
class Issue:
    """One finding of the gate on one record."""

    check: str
    level: QualityLevel
    leads: tuple[str, ...]
    detail: str

    def text(self) -> str:
        where = f" in {','.join(self.leads)}" if self.leads else ""
        return f"{self.check}{where} ({self.detail})"


@dataclass
class Quality:
    """The gate's verdict on one record."""

    level: QualityLevel = QualityLevel.GOOD
    issues: list[Issue] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """``quality_issues`` column: ``check in LEADS (detail); ...``, worst first."""
        return "; ".join(i.text() for i in sorted(self.issues, key=lambda i: -i.level))

    def message(self) -> str:
        """What is wrong and the fix, for the results row's message."""
        worst = sorted(self.issues, key=lambda i: -i.level)
        parts = []
        for issue in worst:
            if issue.level >= self.level or self.level == QualityLevel.POOR:
                parts.append(f"{issue.text()}: {_FIX[issue.check]}")
        word = "unusable recording" if self.level == QualityLevel.UNUSABLE else "poor quality"
        return f"{word}: " + "; ".join(parts)


@dataclass
class LeadStats:
    """Per-lead measures of a batch, each ``(n, leads)`` (``hr_bpm`` and ``n_beats``: ``(n,)``)."""

    ptp: np.ndarray
    flat_fraction: np.ndarray
    clip_fraction: np.ndarray
    noise_mv: np.ndarray
    snr_db: np.ndarray
    mains_mv: np.ndarray
    mains_hz: np.ndarray
    wander_mv: np.ndarray
    pop_jump_mv: np.ndarray
    pop_offset_mv: np.ndarray
    pop_ratio: np.ndarray
    polarity: np.ndarray  # ((max - mean) - (mean - min)) / ptp: > 0 upright, < 0 inverted
    n_beats: np.ndarray
    hr_bpm: np.ndarray
    qrs_peakiness: np.ndarray


def _blocks(x: np.ndarray, size: int) -> np.ndarray:
    """``(..., samples)`` -> ``(..., n_blocks, size)``, dropping the remainder (a view)."""
    nb = x.shape[-1] // size
    return x[..., : nb * size].reshape(*x.shape[:-1], nb, size)


def _block_reduce(b: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """Reduce ``(..., n_blocks, size)`` over the blocks' samples by ``size - 1`` elementwise
    passes over strided slices: numpy reduces a short inner axis far more slowly."""
    out = ufunc(b[..., 0], b[..., 1])
    for k in range(2, b.shape[-1]):
        ufunc(out, b[..., k], out=out)
    return out


@functools.lru_cache(maxsize=16)
def _noise_floor_per_sigma(size: int) -> float:
    """What the noise-floor statistic reads on white noise of sigma 1 (blocks of ``size``).

    The 25th percentile of block means of |second difference| sits below E|d2| = sigma *
    sqrt(6) * sqrt(2 / pi), the more so the smaller the block; a fixed-seed simulation gives the
    exact factor for each block size, once.
    """
    z = np.random.default_rng(0).standard_normal((64, 1, 100 * size)).astype(np.float32)
    d2 = np.abs(np.diff(z, n=2, axis=-1))
    return float(np.median(_low_quantile(_blocks(d2, size).mean(axis=-1), 0.25)))


def _low_quantile(v: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile along the last axis by partition (no full sort)."""
    k = min(v.shape[-1] - 1, int(q * v.shape[-1]))
    return np.partition(v, k, axis=-1)[..., k]


def lead_stats(x: np.ndarray, fs: float) -> LeadStats:
    """Measures of every lead of a batch ``(n, samples, leads)`` in mV at ``fs`` Hz.

    Most measures come from summaries of 0.1 s blocks (max, min, mean, largest one-sample
    jump), so the full signal is passed over only a handful of times.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected a batch (n, samples, leads), got shape {x.shape}")
    n, n_samples, n_leads = x.shape
    size = max(2, int(round(0.1 * fs)))
    if n_samples < 8 * size:
        raise ValueError(f"need at least {8 * size / fs:.1f} s of signal to judge its quality, "
                         f"got {n_samples / fs:.2f} s")
    xt = np.ascontiguousarray(x.transpose(0, 2, 1))  # time contiguous: every reduction is fast
    b = _blocks(xt, size)
    bmax, bmin = _block_reduce(b, np.maximum), _block_reduce(b, np.minimum)
    bmean = _block_reduce(b, np.add) / np.float32(size)
    hi, lo, mean = bmax.max(axis=-1), bmin.min(axis=-1), bmean.mean(axis=-1)
    ptp = hi - lo
    # 0.5 s groups of five blocks: flat stretches and baseline wander
    g = 5
    ng = bmax.shape[-1] // g
    gmax = bmax[..., : ng * g].reshape(n, n_leads, ng, g).max(axis=-1)
    gmin = bmin[..., : ng * g].reshape(n, n_leads, ng, g).min(axis=-1)
    gmean = bmean[..., : ng * g].reshape(n, n_leads, ng, g).mean(axis=-1)
    flat_fraction = ((gmax - gmin) < THRESHOLDS["flat_ptp_mv"]).mean(axis=-1)
    wander = gmean.max(axis=-1) - gmean.min(axis=-1)

    # samples on the lead's own rail: one or two at a peak are normal, a plateau is clipping.
    # Only the few blocks that reach a rail are looked at sample by sample.
    tol = np.float32(1e-6) + np.float32(1e-4) * ptp
    top = bmax >= (hi - tol)[..., None]
    bottom = bmin <= (lo + tol)[..., None]
    clip_fraction = np.zeros((n, n_leads))
    for mask, rail, sign in ((top, hi - tol, 1), (bottom, lo + tol, -1)):
        r, lead, blk = np.nonzero(mask)
        hits = (sign * (b[r, lead, blk] - rail[r, lead, None]) >= 0).sum(axis=-1)
        on_rail = np.zeros((n, n_leads), np.int64)
        plateaus = np.zeros((n, n_leads), np.int64)
        np.add.at(on_rail, (r, lead), hits)
        np.add.at(plateaus, (r, lead), hits >= 2)
        # clipping cuts every beat: one long flat stretch is not clipping
        frac = np.where(plateaus >= THRESHOLDS["clip_min_plateaus"], on_rail / n_samples, 0.0)
        clip_fraction = np.maximum(clip_fraction, frac)

    d1 = np.diff(xt, axis=-1)
    # noise floor from the second difference: QRS complexes fill a minority of the blocks, so
    # a low quantile of the block means sees the noise between beats; the quantile is scaled
    # to the sigma of white noise by _noise_floor_per_sigma.
    d2 = np.abs(np.diff(d1, axis=-1))
    floor = _low_quantile(_block_reduce(_blocks(d2, size), np.add), 0.25) / np.float32(size)
    noise = floor / np.float32(_noise_floor_per_sigma(size))
    sq = np.einsum("nlt,nlt->nl", xt, xt) / n_samples
    var = np.maximum(sq - mean.astype(np.float64) ** 2, 0.0)
    signal_power = np.maximum(var - noise.astype(np.float64) ** 2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = 10.0 * np.log10(signal_power / np.maximum(noise.astype(np.float64) ** 2, 1e-12))
    snr = np.where(ptp < THRESHOLDS["flat_ptp_mv"], np.nan, np.minimum(snr, 60.0))

    # mains amplitude: one DFT bin at 50 and at 60 Hz (the aliased frequency below 2x mains)
    t = np.arange(n_samples) / fs
    freqs = (50.0, 60.0)
    basis, scales = [], []
    for f in freqs:
        fa = abs(f - fs * round(f / fs))
        basis += [np.cos(2 * np.pi * fa * t), np.sin(2 * np.pi * fa * t)]
        scales.append(0.0 if fa == 0 else 1.0 / n_samples if np.isclose(fa, fs / 2)
                      else 2.0 / n_samples)
    proj = xt @ np.stack(basis, axis=1).astype(np.float32)  # (n, leads, 4)
    proj -= mean[..., None] * np.stack(basis, axis=1).sum(axis=0).astype(np.float32)
    amps = np.stack([np.hypot(proj[..., 2 * i], proj[..., 2 * i + 1]) * scales[i]
                     for i in range(len(freqs))])
    mains_mv = amps.max(axis=0)
    mains_hz = np.asarray(freqs)[amps.argmax(axis=0)]

    # electrode pop: a one-sample jump far larger than the lead's beat-to-beat slopes, after
    # which the level stays shifted (a QRS complex returns to its baseline)
    # electrode pop: a one-sample jump not followed within 0.1 s by a stroke back (a QRS
    # upstroke is followed by a downstroke of similar size), after which the level stays shifted
    bup = _block_reduce(_blocks(d1, size), np.maximum)  # (n, leads, n_blocks)
    bdown = -_block_reduce(_blocks(d1, size), np.minimum)

    def around(a):  # max over the block and its two neighbours
        out = a.copy()
        np.maximum(out[..., 1:], a[..., :-1], out=out[..., 1:])
        np.maximum(out[..., :-1], a[..., 1:], out=out[..., :-1])
        return out

    r = THRESHOLDS["pop_return"]
    unreturned = np.maximum(np.where(around(bdown) < r * bup, bup, 0),
                            np.where(around(bup) < r * bdown, bdown, 0))
    jb = unreturned.argmax(axis=-1)
    jump = np.take_along_axis(unreturned, jb[..., None], axis=-1)[..., 0]
    nb = bmean.shape[-1]
    before = np.take_along_axis(bmean, np.clip(jb - 2, 0, nb - 1)[..., None], -1)[..., 0]
    after = np.take_along_axis(bmean, np.clip(jb + 2, 0, nb - 1)[..., None], -1)[..., 0]
    offset = np.abs(after - before)
    ad1 = np.abs(d1)
    # ... and far larger than the lead's usual largest jumps (QRS upstrokes fill 10-25 % of
    # the 0.1 s blocks, so the 90th percentile of the blocks' largest jumps is a QRS slope)
    typical = _low_quantile(_block_reduce(_blocks(ad1, size), np.maximum), 0.9)
    pop_ratio = jump / np.maximum(typical, 1e-6)
    polarity = ((hi - mean) - (mean - lo)) / np.maximum(ptp, 1e-6)
    n_beats, hr, peakiness = _count_beats(ad1.sum(axis=1), fs, n_samples)
    return LeadStats(ptp=ptp, flat_fraction=flat_fraction, clip_fraction=clip_fraction,
                     noise_mv=noise, snr_db=snr, mains_mv=mains_mv, mains_hz=mains_hz,
                     wander_mv=wander, pop_jump_mv=jump, pop_offset_mv=offset, pop_ratio=pop_ratio,
                     polarity=polarity, n_beats=n_beats, hr_bpm=hr,
                     qrs_peakiness=peakiness)


def _count_beats(env: np.ndarray, fs: float,
                 n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Beats per record from the lead-summed slope envelope ``(n, samples - 1)``: a coarse,
    cheap QRS detector.

    The envelope is smoothed over 40 ms; a beat is an upward crossing of 40 % of the envelope's
    99th percentile at least 200 ms after the previous crossing.  Good enough to tell
    "heartbeats at a plausible rate" from "none" or "noise"; the measurements use NeuroKit2's
    detector instead.
    """
    n = env.shape[0]
    k = max(1, int(round(0.04 * fs)))
    if k > 1:
        c = np.cumsum(env, axis=-1)
        env = (c[:, k:] - c[:, :-k]) / k
    if env.shape[-1] < 2:
        return np.zeros(n, np.int64), np.zeros(n), np.zeros(n)
    q = _low_quantile(env, 0.99)
    peakiness = q / np.maximum(_low_quantile(env, 0.5), 1e-9)
    thr = 0.4 * q
    above = env >= thr[:, None]
    up = above[:, 1:] & ~above[:, :-1] & (q[:, None] > 0)
    rec, pos = np.nonzero(up)
    refractory = int(round(0.2 * fs))
    keep = np.ones(len(pos), bool)
    same = rec[1:] == rec[:-1]
    keep[1:] = ~same | (pos[1:] - pos[:-1] >= refractory)
    n_beats = np.bincount(rec[keep], minlength=n)
    return n_beats, n_beats * 60.0 / (n_samples / fs), peakiness


def ecg_quality(
    x: np.ndarray,
    fs: float,
    leads: tuple[str, ...] = LEADS,
    absent: np.ndarray | None = None,
) -> list[Quality]:
    """The quality verdict of every record of a batch.

    Parameters
    ----------
    x : float ``(n, samples, leads)`` in mV, one rate and length for the whole batch
    fs : sampling rate in Hz
    leads : names of the columns of ``x`` (default :data:`schemas.LEADS`)
    absent : optional bool ``(n, leads)``: leads the record does not have (filled with zeros on
        request); they are reported as absent, at level poor, instead of flat and unusable

    Returns
    -------
    list of :class:`Quality`, one per record.

    Examples
    --------
    >>> import numpy as np
    >>> q = ecg_quality(np.zeros((1, 1000, 12)), fs=100)[0]
    >>> str(q.level), q.summary
    ('unusable', 'flat (all leads, peak-to-peak 0.000 mV)')
    """
    s = lead_stats(x, fs)
    n, n_leads = s.ptp.shape
    absent = np.zeros((n, n_leads), bool) if absent is None else np.asarray(absent, bool)
    names = np.asarray(leads)
    out = []
    th = THRESHOLDS
    flat = ((s.ptp < th["flat_ptp_mv"]) | (s.flat_fraction >= th["flat_block_fraction"]))
    for i in range(n):
        q = Quality()
        issues = q.issues
        fl = flat[i] & ~absent[i]
        live = ~flat[i] & ~absent[i]
        if absent[i].any():
            issues.append(Issue("flat", QualityLevel.POOR, tuple(names[absent[i]]),
                                "absent, filled with zeros"))
        if fl.all():
            issues.append(Issue("flat", QualityLevel.UNUSABLE, (),
                                f"all leads, peak-to-peak {s.ptp[i].max():.3f} mV"))
            q.level = QualityLevel.UNUSABLE
            out.append(q)
            continue
        if fl.any():
            issues.append(Issue("flat", QualityLevel.UNUSABLE, tuple(names[fl]),
                                "no signal: peak-to-peak below "
                                f"{th['flat_ptp_mv']} mV for most of the record"))
        clip = s.clip_fraction[i] * live
        bad = clip >= th["clip_fraction_poor"]
        if bad.any():
            worst = float(clip.max())
            level = (QualityLevel.UNUSABLE if worst >= th["clip_fraction_unusable"]
                     else QualityLevel.POOR)
            issues.append(Issue("clipping", level, tuple(names[bad]),
                                f"up to {100 * worst:.1f} % of samples on the rail"))
        snr = s.snr_db[i][live]
        if snr.size:
            rec_snr = float(np.nanmedian(snr))
            low = live & (s.snr_db[i] < th["snr_db_poor"])
            if rec_snr < th["snr_db_poor"] or low.sum() >= 3:
                level = (QualityLevel.UNUSABLE if rec_snr < th["snr_db_unusable"]
                         else QualityLevel.POOR)
                issues.append(Issue("noise", level, tuple(names[low]),
                                    f"SNR {rec_snr:.1f} dB, noise "
                                    f"{np.median(s.noise_mv[i][live]):.3f} mV"))
        hum = live & (s.mains_mv[i] >= th["mains_mv_poor"])
        if hum.any():
            j = int(np.argmax(np.where(hum, s.mains_mv[i], -1)))
            issues.append(Issue("mains", QualityLevel.POOR, tuple(names[hum]),
                                f"{s.mains_hz[i][j]:.0f} Hz, up to {s.mains_mv[i][j]:.2f} mV"))
        wander = live & (s.wander_mv[i] >= th["wander_mv_poor"])
        if wander.any():
            issues.append(Issue("wander", QualityLevel.POOR, tuple(names[wander]),
                                f"baseline moves up to {s.wander_mv[i][wander].max():.1f} mV"))
        pop = (live & (s.pop_jump_mv[i] >= th["pop_jump_mv"])
               & (s.pop_ratio[i] >= th["pop_ratio"])
               & (s.pop_offset_mv[i] >= th["pop_offset_mv"]))
        if pop.any():
            issues.append(Issue("pop", QualityLevel.POOR, tuple(names[pop]),
                                f"step of {s.pop_jump_mv[i][pop].max():.1f} mV"))
        beats, hr = int(s.n_beats[i]), float(s.hr_bpm[i])
        if beats < th["min_beats"] or s.qrs_peakiness[i] < th["min_qrs_peakiness"]:
            issues.append(Issue("no_qrs", QualityLevel.UNUSABLE, (),
                                f"{beats} candidate beats in {x.shape[1] / fs:.1f} s, envelope "
                                f"peakiness {s.qrs_peakiness[i]:.1f}"))
        elif not th["hr_min_bpm"] <= hr <= th["hr_max_bpm"]:
            issues.append(Issue("heart_rate", QualityLevel.UNUSABLE, (),
                                f"{hr:.0f} bpm, outside {th['hr_min_bpm']:.0f}-"
                                f"{th['hr_max_bpm']:.0f}"))
        if "I" in leads and "AVR" in leads:
            li, lr = leads.index("I"), leads.index("AVR")
            if (live[li] and live[lr] and s.polarity[i, li] <= -th["reversal_polarity"]
                    and s.polarity[i, lr] >= th["reversal_polarity"]):
                issues.append(Issue("limb_reversal", QualityLevel.POOR, ("I", "AVR"),
                                    "lead I inverted and aVR upright"))
        q.level = max((iss.level for iss in issues), default=QualityLevel.GOOD)
        out.append(q)
    return out

