"""Turn a record as read into model inputs, exactly as training saw its data.

Training fed the model float32 millivolts, leads in :data:`schemas.LEADS` order, at the data's
rate, in windows of ``input_samples`` (normalisation is inside the graph).  This module does
the same for any input, from the contract in the model's metadata:

1. leads are matched by name (case-insensitive, common aliases) and put in the model's order;
   a missing lead is an error unless ``allow_missing_leads`` (then it is filled with zeros, the
   isoelectric line, and the row says so);
2. the signal is resampled to the model's rate with a polyphase filter
   (``scipy.signal.resample_poly``);
3. a record longer than the model's input is cut into windows of the input length with 50 %
   overlap, the last window aligned with the record's end, so every sample is seen; the
   record's probability is the mean of its windows' probabilities (MI changes the morphology of
   every beat, so averaging is robust to one noisy stretch);
4. a shorter record is an error unless ``pad_short`` (then zeros are appended, with a warning).

Between steps 1 and 2 the scorer runs the signal-quality gate (:mod:`signals.quality`) on the
record at its own rate, so that clipping, mains and pops are judged on the samples as recorded.

Nothing is rescaled: min-max scaling or silent padding would hand the model something it never
saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from infer.readers import InputError, RawInput
from schemas import ModelContract, canonical_lead

#: Largest plausible ECG amplitude in mV; above it the units are almost surely wrong.
MAX_PLAUSIBLE_MV = 30.0


@dataclass
class Prepared:
    """Model-ready windows of one record and what the results row reports about it."""

    windows: np.ndarray  # (n_windows, input_samples, n_leads) float32 mV
    leads_found: list[str]
    leads_filled: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def map_leads(raw: RawInput, contract: ModelContract,
              allow_missing_leads: bool) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Reorder columns to the model's leads.  Returns (signal, found, filled, warnings)."""
    canon = [canonical_lead(n) for n in raw.names]
    unknown = [n for n, c in zip(raw.names, canon, strict=True) if c is None]
    seen: dict[str, int] = {}
    for i, c in enumerate(canon):
        if c is None:
            continue
        if c in seen:
            raise InputError(
                f"{raw.path}: leads {raw.names[seen[c]]!r} and {raw.names[i]!r} are both {c}; "
                "keep one column per lead", kind="bad_leads")
        seen[c] = i
    missing = [lead for lead in contract.leads if lead not in seen]
    warnings = []
    if missing and (unknown or not allow_missing_leads):
        hint = (f"unknown column names {','.join(map(repr, unknown))}; name the columns "
                f"{','.join(contract.leads)} (aliases such as aVR, MLII, C1-C6 are understood)"
                if unknown else "pass --allow-missing-leads to score it with those leads at zero")
        raise InputError(f"{raw.path}: missing leads {','.join(missing)}; {hint}",
                         kind="missing_leads")
    if unknown:
        warnings.append(f"ignored columns {','.join(map(repr, unknown))} (not ECG leads)")
    out = np.zeros((raw.signal.shape[0], len(contract.leads)), dtype=np.float32)
    for j, lead in enumerate(contract.leads):
        if lead in seen:
            out[:, j] = raw.signal[:, seen[lead]]
    if missing:
        warnings.append(f"leads {','.join(missing)} missing, filled with zeros "
                        "(--allow-missing-leads); the score is less reliable")
    found = [lead for lead in contract.leads if lead in seen]
    return out, found, missing, warnings


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along axis 0 (anti-aliasing FIR included), float32 out."""
    if fs_in == fs_out:
        return signal
    from scipy.signal import resample_poly  # imported only when a record needs it

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=0).astype(np.float32)


def windows(signal: np.ndarray, length: int) -> np.ndarray:
    """Windows of ``length`` with 50 % overlap, the last aligned with the end."""
    n = signal.shape[0]
    if n == length:
        return signal[None]
    starts = list(range(0, n - length + 1, max(1, length // 2)))
    if starts[-1] != n - length:
        starts.append(n - length)
    return np.stack([signal[s : s + length] for s in starts])


@dataclass
class Conformed:
    """A record with the model's leads, at its own rate: what the quality gate looks at."""

    raw: RawInput
    signal: np.ndarray  # (n_samples, n_model_leads) float32 mV at raw.fs
    leads_found: list[str]
    leads_filled: list[str]
    warnings: list[str]


def conform(raw: RawInput, contract: ModelContract,
            allow_missing_leads: bool = False) -> Conformed:
    """Check the values and put the leads in the model's order (rate unchanged)."""
    if raw.signal.ndim != 2 or raw.signal.shape[0] == 0:
        raise InputError(f"{raw.path}: no samples", kind="bad_shape")
    if not np.isfinite(raw.signal).all():
        raise InputError(f"{raw.path}: the signal holds NaN or infinite values; repair or trim "
                         "the recording", kind="bad_values")
    signal, found, filled, warnings = map_leads(raw, contract, allow_missing_leads)
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    if peak > MAX_PLAUSIBLE_MV:
        hint = ("pass --csv-units uV if the file is in microvolts" if raw.format == "csv"
                else "check the units and gains in the header")
        raise InputError(f"{raw.path}: amplitudes up to {peak:.0f} mV are not an ECG in mV; "
                         f"{hint}", kind="bad_units")
    return Conformed(raw=raw, signal=signal, leads_found=found, leads_filled=filled,
                     warnings=warnings)


def to_windows(c: Conformed, contract: ModelContract, pad_short: bool = False) -> Prepared:
    """Resample to the model's rate and cut the model's windows (padding only on request)."""
    raw, signal, warnings = c.raw, c.signal, list(c.warnings)
    notes = []
    if raw.fs != contract.fs:
        signal = resample(signal, raw.fs, contract.fs)
        notes.append(f"resampled from {raw.fs:g} Hz to {contract.fs} Hz")
    need = contract.input_samples
    if signal.shape[0] < need:
        have = signal.shape[0] / contract.fs
        full = need / contract.fs
        if not pad_short:
            raise InputError(
                f"{raw.path}: {have:.1f} s long, shorter than the model's {full:g} s input; pass "
                "--pad-short to score it padded with zeros", kind="too_short")
        signal = np.concatenate(
            [signal, np.zeros((need - signal.shape[0], signal.shape[1]), np.float32)])
        warnings.append(f"{have:.1f} s record padded with zeros to {full:g} s (--pad-short); "
                        "the score is less reliable")
    return Prepared(windows=windows(signal, need), leads_found=c.leads_found,
                    leads_filled=c.leads_filled, warnings=warnings, notes=notes)


def prepare(raw: RawInput, contract: ModelContract, pad_short: bool = False,
            allow_missing_leads: bool = False) -> Prepared:
    """Lead order, rate, length: from a record as read to the model's input windows
    (:func:`conform` then :func:`to_windows`; the scorer runs the quality gate between)."""
    return to_windows(conform(raw, contract, allow_missing_leads), contract, pad_short)
