"""Turn a record as read into model inputs, exactly as training saw its data.

Training fed the model float32 millivolts, leads in :data:`schemas.LEADS` order, at the data's
rate, in windows of ``input_samples`` (normalisation is inside the graph).  This module does
the same for any input, from the contract in the model's metadata:

1. leads are matched by name (case-insensitive, common aliases) and put in the model's order;
   a missing lead is an error unless ``allow_missing_leads`` (then it is filled with zeros, the
   isoelectric line, and the row says so);
2. the signal is resampled to the model's rate with a polyphase filter designed to reproduce
   PTB-XL's own 100 Hz files from its 500 Hz files (:mod:`signals.resample`);
3. the record is cut into windows of the model's input length at the contract's stride (the
   last window aligned with the record's end, so every sample is seen), and the windows'
   probabilities are aggregated as the contract says (:mod:`signals.windows`, the code
   training evaluates with); a model without these keys gets half-window strides and the mean;
4. a shorter record is an error unless ``pad_short`` (then zeros are appended, with a warning).

Between steps 1 and 2 the scorer runs the signal-quality gate (:mod:`signals.quality`) on the
record at its own rate, so that clipping, mains and pops are judged on the samples as recorded.

Nothing is rescaled: min-max scaling or silent padding would hand the model something it never
saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infer.readers import InputError, RawInput
from schemas import ModelContract, canonical_lead, lead_sign
from signals.resample import resample

#: Largest plausible ECG amplitude in mV; above it the units are almost surely wrong.
MAX_PLAUSIBLE_MV = 30.0
#: Smallest plausible largest peak-to-peak of a record in mV: no ECG is this small on every lead
#: (a file in volts read as mV, or a header gain 1000x off).  An exactly flat record is left
#: to the quality gate, which says "flat".
MIN_PLAUSIBLE_MV = 0.05
#: A CSV longer than this at an assumed rate is suspicious (a resting ECG is 10 s).
PLAUSIBLE_CSV_SECONDS = 30.0


@dataclass
class Prepared:
    """One record at the model's rate, and what the results row reports about it.

    The windows the model scores are views into ``signal`` at ``starts``, copied batch by batch
    by the scorer, so a long record costs its own size, not one copy per window.
    """

    signal: np.ndarray  # (n_samples, n_leads) float32 mV at the model's rate
    starts: np.ndarray  # first sample of each window
    length: int  # samples per window
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
    present = [j for j, lead in enumerate(contract.leads) if lead in seen]
    cols = [seen[contract.leads[j]] for j in present]
    # an inverted lead (-aVR, as Cabrera displays print it) is turned back upright
    signs = np.array([lead_sign(raw.names[c]) for c in cols], dtype=np.float32)
    if len(present) == len(contract.leads):  # the usual case: one gather
        out = np.ascontiguousarray(raw.signal[:, cols], dtype=np.float32)
    else:
        out = np.zeros((raw.signal.shape[0], len(contract.leads)), dtype=np.float32)
        out[:, present] = raw.signal[:, cols]
    if (signs < 0).any():
        out[:, present] *= signs
    if missing:
        warnings.append(f"leads {','.join(missing)} missing, filled with zeros "
                        "(--allow-missing-leads); the score is less reliable")
    found = [lead for lead in contract.leads if lead in seen]
    return out, found, missing, warnings


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
    # whole-array reductions (one contiguous pass each): NaN and inf show in them
    if not (np.isfinite(raw.signal.max()) and np.isfinite(raw.signal.min())):
        raise InputError(f"{raw.path}: the signal holds NaN or infinite values; repair or trim "
                         "the recording", kind="bad_values")
    if raw.fs < contract.fs:
        hint = " (for CSV files, check --csv-fs)" if raw.format == "csv" else ""
        raise InputError(
            f"{raw.path}: sampled at {raw.fs:g} Hz, below the model's {contract.fs} Hz: the "
            f"model needs detail a lower rate does not hold{hint}; record at {contract.fs} Hz or "
            "more", kind="rate_too_low")
    signal, found, filled, warnings = map_leads(raw, contract, allow_missing_leads)
    hi, lo = float(signal.max()), float(signal.min())
    peak = max(abs(hi), abs(lo))
    if peak > MAX_PLAUSIBLE_MV:
        hint = ("pass --csv-units uV if the file is in microvolts" if raw.format == "csv"
                else "check the units and gains in the header")
        raise InputError(f"{raw.path}: amplitudes up to {peak:.0f} mV are not an ECG in mV; "
                         f"{hint}", kind="bad_units")
    # per lead only when the whole record is that small (the usual record never gets here)
    largest = (float((signal.max(axis=0) - signal.min(axis=0)).max())
               if hi - lo < MIN_PLAUSIBLE_MV else hi - lo)
    if 0.0 < largest < MIN_PLAUSIBLE_MV:
        hint = ("if the file is in volts pass --csv-units V" if raw.format == "csv"
                else "check the gains and units in the header (uV with a gain for mV?)")
        raise InputError(
            f"{raw.path}: the largest peak-to-peak on any lead is {largest:.2g} mV, far below "
            f"any ECG; {hint}, otherwise the electrodes were not connected", kind="bad_units")
    return Conformed(raw=raw, signal=signal, leads_found=found, leads_filled=filled,
                     warnings=list(raw.warnings) + warnings)


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
    return Prepared(signal=signal, starts=contract.windows.starts(signal.shape[0]), length=need,
                    leads_found=c.leads_found, leads_filled=c.leads_filled, warnings=warnings,
                    notes=notes)
