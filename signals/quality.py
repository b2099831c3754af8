"""Signal-quality gate: is a recording fit to be scored?  Vectorised over a batch.

:func:`ecg_quality` takes a batch of records of one rate and length, ``(n, samples, leads)``
in mV with leads in :data:`schemas.LEADS` order, and returns a :class:`Quality` per record:
``good``, ``poor`` (score it, but say why) or ``unusable`` (do not score it; say which leads,
what is wrong and the fix).  Every check is built from a dozen elementwise numpy passes over
the batch (summaries of 0.1 s blocks; no per-record Python for clean records, no FFT, no sort
of the full signal): about 60 us per 10 s record at 100 Hz, 7.6 % of end-to-end scoring.

Checks, per lead unless said otherwise (thresholds in :data:`THRESHOLDS`, chosen on the 706
shipped PTB-XL files at both rates; the README's quality section says why each value):

==================  ==============================================================  =========
check               measure                                                         level
==================  ==============================================================  =========
``flat``            peak-to-peak below 0.05 mV over the record, or over 90 % of it   unusable
                    in 0.5 s blocks (electrode off, lead absent, constant signal)
``clipping``        share of samples sitting on the lead's own maximum or minimum,    poor;
                    the rail hit in at least 4 separate 0.1 s blocks (saturation)   unusable
                                                                                    >= 10 %
``noise``           noise floor: 25th percentile over 0.1 s blocks of the range of    poor;
                    10 ms slopes in a block, calibrated to white noise's sigma;     unusable
                    SNR per lead, median over leads for the record                  < 5 dB
``mains``           amplitude of the 50 Hz and 60 Hz components (single-bin DFT,     poor
                    aliased frequency when the rate is below 2x mains)
``wander``          peak-to-peak of 0.5 s block means (baseline wander)              poor
``pop``             the largest one-sample jump with no stroke back within 0.1 s,    poor
                    1.5x the lead's usual, after which the level stays shifted
``no_qrs``          fewer than 3 beats on the lead-summed slope-range envelope, or   unusable
                    an envelope that is not spiky (a sine, noise)
``heart_rate``      beats imply a rate below 25 or above 250 bpm                     unusable
``limb_reversal``   lead I predominantly negative while aVR is predominantly         poor
                    positive (left/right arm electrodes swapped, or dextrocardia)
==================  ==============================================================  =========
"""

from __future__ import annotations

import dataclasses
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
    """Per-lead measures of a batch, each ``(n, leads)`` (the beat measures: ``(n,)``)."""

    ptp: np.ndarray
    flat_fraction: np.ndarray
    clip_fraction: np.ndarray
    noise_mv: np.ndarray
    snr_db: np.ndarray
    mains_mv: np.ndarray
    mains_hz: np.ndarray
    wander_mv: np.ndarray
    pop_jump_mv: np.ndarray
    pop_ratio: np.ndarray
    pop_offset_mv: np.ndarray
    polarity: np.ndarray  # ((max - mean) - (mean - min)) / ptp: > 0 upright, < 0 inverted
    n_beats: np.ndarray
    hr_bpm: np.ndarray
    qrs_peakiness: np.ndarray


def _block_reduce(b: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """Reduce ``(n, n_blocks, size, leads)`` over each block's samples by ``size - 1``
    elementwise passes over strided slices: numpy reduces a short axis far more slowly."""
    out = ufunc(b[:, :, 0], b[:, :, 1])
    for k in range(2, b.shape[2]):
        ufunc(out, b[:, :, k], out=out)
    return out


def _blocks(x: np.ndarray, size: int) -> np.ndarray:
    """``(n, samples, ...)`` -> ``(n, n_blocks, size, ...)``, dropping the remainder (a view)."""
    nb = x.shape[1] // size
    return x[:, : nb * size].reshape(x.shape[0], nb, size, *x.shape[2:])


def _quantile(v: np.ndarray, q: float, axis: int = 1) -> np.ndarray:
    """The ``q`` quantile along ``axis`` by partition (no full sort)."""
    k = min(v.shape[axis] - 1, int(q * v.shape[axis]))
    return np.take(np.partition(v, k, axis=axis), k, axis=axis)


def _lag_diff(x: np.ndarray, lag: int) -> np.ndarray:
    """``x[t + lag] - x[t]`` along the samples: the rise over 10 ms whatever the rate."""
    return x[:, lag:] - x[:, :-lag]


@functools.lru_cache(maxsize=16)
def _noise_floor_per_sigma(size: int, lag: int) -> float:
    """What the noise-floor statistic reads on white noise of sigma 1.

    The statistic is the 25th percentile over 0.1 s blocks of the range (largest rise plus
    largest fall) of the 10 ms differences within each block; a fixed-seed simulation gives its
    value for each block size and lag, once.
    """
    z = np.random.default_rng(0).standard_normal((64, 100 * size + lag, 1)).astype(np.float32)
    bd = _blocks(_lag_diff(z, lag), size)
    spread = _block_reduce(bd, np.maximum) - _block_reduce(bd, np.minimum)
    return float(np.median(_quantile(spread, 0.25)))


@functools.lru_cache(maxsize=16)
def _mains_basis(n_samples: int, fs: float) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Columns: ones (the lead's sum), then cos and sin at 50 and 60 Hz (aliased below 2x
    mains); with each frequency's amplitude scale."""
    t = np.arange(n_samples) / fs
    cols, scales, freqs = [np.ones(n_samples)], [], (50.0, 60.0)
    for f in freqs:
        fa = abs(f - fs * round(f / fs))  # the frequency a rate below 2f sees it at
        cols += [np.cos(2 * np.pi * fa * t), np.sin(2 * np.pi * fa * t)]
        scales.append(0.0 if fa == 0 else 1.0 / n_samples if np.isclose(fa, fs / 2)
                      else 2.0 / n_samples)
    return np.stack(cols, axis=1).astype(np.float32), freqs, np.asarray(scales, np.float32)


def lead_stats(x: np.ndarray, fs: float) -> LeadStats:
    """Measures of every lead of a batch ``(n, samples, leads)`` in mV at ``fs`` Hz.

    Built from a dozen elementwise passes over the batch: summaries of 0.1 s blocks (largest,
    smallest and summed sample; largest rise and fall; summed |second difference|), one matrix
    product for the leads' sums and mains components, and one for the lead-summed slope
    envelope.  Every later step works on those small summaries.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected a batch (n, samples, leads), got shape {x.shape}")
    n, n_samples, n_leads = x.shape
    size = max(2, int(round(0.1 * fs)))
    if n_samples < 8 * size + 2:
        raise ValueError(f"need at least {(8 * size + 2) / fs:.1f} s of signal to judge its "
                         f"quality, got {n_samples / fs:.2f} s")
    b = _blocks(x, size)
    bmax, bmin = _block_reduce(b, np.maximum), _block_reduce(b, np.minimum)
    bmean = _block_reduce(b, np.add) / np.float32(size)  # (n, n_blocks, leads)
    basis, freqs, scales = _mains_basis(n_samples, fs)
    proj = np.matmul(x.transpose(0, 2, 1), basis)  # (n, leads, 5)
    mean = proj[..., 0] / n_samples
    proj = proj[..., 1:] - mean[..., None] * basis[:, 1:].sum(axis=0)
    amps = np.hypot(proj[..., 0::2], proj[..., 1::2]) * scales  # (n, leads, 2)
    mains_mv, mains_hz = amps.max(axis=-1), np.asarray(freqs)[amps.argmax(axis=-1)]
    sq = np.einsum("ntl,ntl->nl", x, x) / n_samples
    var = np.maximum(sq.astype(np.float64) - mean.astype(np.float64) ** 2, 0.0)

    # 0.5 s groups of five blocks: flat stretches and baseline wander (and the lead's extremes,
    # from 20 groups rather than 100 blocks)
    ng = bmax.shape[1] // 5
    gmax = _block_reduce(bmax[:, : ng * 5].reshape(n, ng, 5, n_leads), np.maximum)
    gmin = _block_reduce(bmin[:, : ng * 5].reshape(n, ng, 5, n_leads), np.minimum)
    gmean = _block_reduce(bmean[:, : ng * 5].reshape(n, ng, 5, n_leads), np.add) / 5
    tail = slice(ng * 5, None)  # blocks past the last whole group
    hi = np.maximum(gmax.max(axis=1), bmax[:, tail].max(axis=1, initial=-np.inf))
    lo = np.minimum(gmin.min(axis=1), bmin[:, tail].min(axis=1, initial=np.inf))
    ptp = hi - lo
    flat_fraction = ((gmax - gmin) < THRESHOLDS["flat_ptp_mv"]).mean(axis=1)
    wander = gmean.max(axis=1) - gmean.min(axis=1)

    # samples on the lead's own rail: one or two at a peak are normal, a plateau is clipping.
    # Only the few blocks that reach a rail are looked at sample by sample.
    tol = np.float32(1e-6) + np.float32(1e-4) * ptp
    clip_fraction = np.zeros((n, n_leads))
    for mask, rail, sign in (((bmax >= (hi - tol)[:, None]), hi - tol, 1),
                             ((bmin <= (lo + tol)[:, None]), lo + tol, -1)):
        # only leads whose rail is reached in enough blocks can be clipped: usually none
        mask &= (mask.sum(axis=1, dtype=np.uint8) >= THRESHOLDS["clip_min_plateaus"])[:, None]
        if not mask.any():
            continue
        r, blk, lead = np.nonzero(mask)
        hits = (sign * (b[r, blk, :, lead] - rail[r, lead, None]) >= 0).sum(axis=-1)
        on_rail = np.zeros((n, n_leads), np.int64)
        plateaus = np.zeros((n, n_leads), np.int64)
        np.add.at(on_rail, (r, lead), hits)
        np.add.at(plateaus, (r, lead), hits >= 2)
        # clipping cuts every beat: one long flat stretch is not clipping
        frac = np.where(plateaus >= THRESHOLDS["clip_min_plateaus"], on_rail / n_samples, 0.0)
        clip_fraction = np.maximum(clip_fraction, frac)

    # rises over 10 ms (one sample at 100 Hz, five at 500 Hz) and, per 0.1 s block, the
    # largest rise and fall: pops, the noise floor and the beats all come from these
    lag = max(1, int(round(0.01 * fs)))
    bd = _blocks(_lag_diff(x, lag), size)
    bup, bdown = _block_reduce(bd, np.maximum), -_block_reduce(bd, np.minimum)
    spread = bup + bdown  # (n, n_blocks, leads)
    # noise floor: QRS complexes fill a minority of the blocks, so a low quantile of the
    # blocks' slope range sees the noise between beats; calibrated to white noise's sigma
    noise = _quantile(spread, 0.25) / np.float32(_noise_floor_per_sigma(size, lag))
    signal_power = np.maximum(var - noise.astype(np.float64) ** 2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = 10.0 * np.log10(signal_power / np.maximum(noise.astype(np.float64) ** 2, 1e-12))
    snr = np.where(ptp < THRESHOLDS["flat_ptp_mv"], np.nan, np.minimum(snr, 60.0))

    # electrode pop: a one-sample jump not followed within 0.1 s by a stroke back (a QRS
    # upstroke is followed by a downstroke of similar size) and far larger than the lead's
    # usual largest jumps, after which the level stays shifted
    def around(a):  # max over each block and its two neighbours
        out = a.copy()
        np.maximum(out[:, 1:], a[:, :-1], out=out[:, 1:])
        np.maximum(out[:, :-1], a[:, 1:], out=out[:, :-1])
        return out

    if lag > 1:  # a pop is instantaneous: at high rates look at one-sample jumps (at 100 Hz
        # they are the 10 ms rises already at hand)
        bd = _blocks(np.diff(x, axis=1), size)
        bup, bdown = _block_reduce(bd, np.maximum), -_block_reduce(bd, np.minimum)
    r_ = THRESHOLDS["pop_return"]
    unreturned = np.maximum(np.where(around(bdown) < r_ * bup, bup, 0),
                            np.where(around(bup) < r_ * bdown, bdown, 0))
    jb = unreturned.argmax(axis=1)  # (n, leads)
    jump = np.take_along_axis(unreturned, jb[:, None], axis=1)[:, 0]
    typical = _quantile(np.maximum(bup, bdown), 0.9)  # QRS fill 10-25 % of the blocks
    pop_ratio = jump / np.maximum(typical, 1e-6)
    nb = bmean.shape[1]
    before = np.take_along_axis(bmean, np.clip(jb - 2, 0, nb - 1)[:, None], axis=1)[:, 0]
    after = np.take_along_axis(bmean, np.clip(jb + 2, 0, nb - 1)[:, None], axis=1)[:, 0]
    offset = np.abs(after - before)

    polarity = ((hi - mean) - (mean - lo)) / np.maximum(ptp, 1e-6)
    n_beats, hr, peakiness = _count_beats(spread.sum(axis=2), size, fs, n_samples)
    return LeadStats(ptp=ptp, flat_fraction=flat_fraction, clip_fraction=clip_fraction,
                     noise_mv=noise, snr_db=snr, mains_mv=mains_mv, mains_hz=mains_hz,
                     wander_mv=wander, pop_jump_mv=jump, pop_ratio=pop_ratio,
                     pop_offset_mv=offset, polarity=polarity, n_beats=n_beats, hr_bpm=hr,
                     qrs_peakiness=peakiness)


def _count_beats(env: np.ndarray, size: int, fs: float,
                 n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Beats per record from the lead-summed slope range of each 0.1 s block ``(n, n_blocks)``:
    a coarse, cheap QRS detector, vectorised over the batch.

    A QRS complex turns the slope sharply within a few tens of ms, so its block's range of
    10 ms rises and falls is large; baseline wander and the slow P and T waves change the slope
    little within 0.1 s.  A beat is a run of blocks above 40 % of the 95th percentile of the
    envelope (the level of the QRS complexes) after at least 200 ms below.  Good enough to
    tell "heartbeats at a plausible rate" from "none" or "noise"; the measurements use
    NeuroKit2's detector.  Also returns the peakiness (95th over 50th percentile): QRS
    complexes make the envelope spiky, a sine or noise does not.
    """
    nb = env.shape[1]
    top, mid = _quantile(env, 0.95), _quantile(env, 0.5)
    peakiness = top / np.maximum(mid, 1e-9)
    above = env >= (0.4 * top)[:, None]
    gap = 2  # 0.1 s blocks below threshold before a new beat: 200 ms
    quiet = ~above
    run = quiet[:, gap - 1:].copy()
    for k in range(1, gap):
        run &= quiet[:, gap - 1 - k: nb - k]
    starts = above[:, gap:] & run[:, :-1]
    n_beats = starts.sum(axis=1) + above[:, :gap].any(axis=1)
    n_beats = np.where(top > 0, n_beats, 0)
    return n_beats, n_beats * 60.0 / (n_samples / fs), peakiness


def _row_median(v: np.ndarray) -> np.ndarray:
    """Median of each row's finite values (NaN for a row with none); ``np.nanmedian`` costs
    ten times as much on small rows."""
    v = np.sort(np.where(np.isfinite(v), v, np.inf), axis=1)
    k = np.isfinite(v).sum(axis=1)
    rows = np.arange(len(v))
    lo, hi = np.maximum((k - 1) // 2, 0), np.maximum(k // 2, 0)
    with np.errstate(invalid="ignore"):
        med = (v[rows, np.minimum(lo, v.shape[1] - 1)] + v[rows, np.minimum(hi, v.shape[1] - 1)])
    return np.where(k > 0, med / 2, np.nan)


#: Samples per lead in one pass of :func:`lead_stats` (32 ten-second records at 100 Hz, 6 at
#: 500 Hz): about 1.5 MB, so that the dozen passes over them stay in the processor's cache.
#: A 512-record chunk at once is 1.7x slower; 32 records at 500 Hz a pass were 1.45 ms a
#: record against 1.0 ms for 6-8 (2026-12-01, one process).
SUB_BATCH_SAMPLES = 32_000


def sub_batch(n_samples: int) -> int:
    """Records of ``n_samples`` samples per pass of :func:`lead_stats`."""
    return max(1, SUB_BATCH_SAMPLES // max(1, n_samples))


def batch_stats(x: np.ndarray, fs: float) -> LeadStats:
    """:func:`lead_stats` over a batch of any size, :func:`sub_batch` records at a time."""
    per = sub_batch(x.shape[1])
    if len(x) <= per:
        return lead_stats(x, fs)
    parts = [lead_stats(x[i : i + per], fs) for i in range(0, len(x), per)]
    return LeadStats(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                        for f in dataclasses.fields(LeadStats)})


_FLAT_ALL = "all leads, peak-to-peak {:.3f} mV"


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
    list of :class:`Quality`, one per record.  The checks are decided for the whole batch at
    once; Python builds findings only for the records that have some.

    Examples
    --------
    >>> import numpy as np
    >>> q = ecg_quality(np.zeros((1, 1000, 12)), fs=100)[0]
    >>> str(q.level), q.summary
    ('unusable', 'flat (all leads, peak-to-peak 0.000 mV)')
    """
    s = batch_stats(x, fs)
    n, n_leads = s.ptp.shape
    th = THRESHOLDS
    absent = np.zeros((n, n_leads), bool) if absent is None else np.asarray(absent, bool)
    flat = ((s.ptp < th["flat_ptp_mv"]) | (s.flat_fraction >= th["flat_block_fraction"]))
    flat &= ~absent
    live = ~flat & ~absent
    all_flat = flat.all(axis=1)
    clip = np.where(live, s.clip_fraction, 0.0)
    clipped = clip >= th["clip_fraction_poor"]
    rec_snr = _row_median(np.where(live, s.snr_db, np.nan))
    low_snr = live & (s.snr_db < th["snr_db_poor"])
    noisy = (rec_snr < th["snr_db_poor"]) | (low_snr.sum(axis=1) >= 3)
    hum = live & (s.mains_mv >= th["mains_mv_poor"])
    wander = live & (s.wander_mv >= th["wander_mv_poor"])
    pop = (live & (s.pop_jump_mv >= th["pop_jump_mv"]) & (s.pop_ratio >= th["pop_ratio"])
           & (s.pop_offset_mv >= th["pop_offset_mv"]))
    no_qrs = (s.n_beats < th["min_beats"]) | (s.qrs_peakiness < th["min_qrs_peakiness"])
    bad_rate = ~no_qrs & ((s.hr_bpm < th["hr_min_bpm"]) | (s.hr_bpm > th["hr_max_bpm"]))
    reversed_ = np.zeros(n, bool)
    if "I" in leads and "AVR" in leads:
        li, lr = leads.index("I"), leads.index("AVR")
        reversed_ = (live[:, li] & live[:, lr] & (s.polarity[:, li] <= -th["reversal_polarity"])
                     & (s.polarity[:, lr] >= th["reversal_polarity"]))
    any_issue = (absent.any(axis=1) | flat.any(axis=1) | clipped.any(axis=1) | noisy
                 | hum.any(axis=1) | wander.any(axis=1) | pop.any(axis=1) | no_qrs | bad_rate
                 | reversed_)
    names = np.asarray(leads)
    out = [Quality() for _ in range(n)]
    for i in np.flatnonzero(any_issue):
        issues = out[i].issues
        if absent[i].any():
            issues.append(Issue("flat", QualityLevel.POOR, tuple(names[absent[i]]),
                                "absent, filled with zeros"))
        if all_flat[i]:
            issues.append(Issue("flat", QualityLevel.UNUSABLE, (),
                                _FLAT_ALL.format(float(s.ptp[i].max()))))
            out[i].level = QualityLevel.UNUSABLE
            continue
        if flat[i].any():
            issues.append(Issue("flat", QualityLevel.UNUSABLE, tuple(names[flat[i]]),
                                "no signal: peak-to-peak below "
                                f"{th['flat_ptp_mv']} mV for most of the record"))
        if clipped[i].any():
            worst = float(clip[i].max())
            level = (QualityLevel.UNUSABLE if worst >= th["clip_fraction_unusable"]
                     else QualityLevel.POOR)
            issues.append(Issue("clipping", level, tuple(names[clipped[i]]),
                                f"up to {100 * worst:.1f} % of samples on the rail"))
        if noisy[i]:
            level = (QualityLevel.UNUSABLE if rec_snr[i] < th["snr_db_unusable"]
                     else QualityLevel.POOR)
            issues.append(Issue("noise", level, tuple(names[low_snr[i]]),
                                f"SNR {rec_snr[i]:.1f} dB, noise "
                                f"{np.median(s.noise_mv[i][live[i]]):.3f} mV"))
        if hum[i].any():
            j = int(np.argmax(np.where(hum[i], s.mains_mv[i], -1)))
            issues.append(Issue("mains", QualityLevel.POOR, tuple(names[hum[i]]),
                                f"{s.mains_hz[i][j]:.0f} Hz, up to {s.mains_mv[i][j]:.2f} mV"))
        if wander[i].any():
            issues.append(Issue("wander", QualityLevel.POOR, tuple(names[wander[i]]),
                                f"baseline moves up to {s.wander_mv[i][wander[i]].max():.1f} mV"))
        if pop[i].any():
            issues.append(Issue("pop", QualityLevel.POOR, tuple(names[pop[i]]),
                                f"step of {s.pop_jump_mv[i][pop[i]].max():.1f} mV"))
        if no_qrs[i]:
            issues.append(Issue("no_qrs", QualityLevel.UNUSABLE, (),
                                f"{int(s.n_beats[i])} candidate beats in {x.shape[1] / fs:.1f} "
                                f"s, envelope peakiness {s.qrs_peakiness[i]:.1f}"))
        elif bad_rate[i]:
            issues.append(Issue("heart_rate", QualityLevel.UNUSABLE, (),
                                f"{s.hr_bpm[i]:.0f} bpm, outside {th['hr_min_bpm']:.0f}-"
                                f"{th['hr_max_bpm']:.0f}"))
        if reversed_[i]:
            issues.append(Issue("limb_reversal", QualityLevel.POOR, ("I", "AVR"),
                                "lead I inverted and aVR upright"))
        out[i].level = max((iss.level for iss in issues), default=QualityLevel.GOOD)
    return out
