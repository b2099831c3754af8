"""Scoring with a beat model (``task`` ``beats`` in the contract, e.g. the ECG5000 models).

- Beat tables (UCR ``.txt``, TensorFlow-layout or UCR-layout ``.csv``): one results row per
  beat, with ``beat_index`` (the beat's line in its file), ``abnormal_probability`` and a band
  (normal / borderline / abnormal).  A line that is not a beat gets an error row naming it.
- 12-lead records with ``--beats`` (WFDB, or CSV with ``--csv-fs``): the record passes the
  quality gate on every standard lead it has, as for MI; R peaks are found in the beat lead
  (II, or ``--beat-lead``; NeuroKit2, the ``signals`` extra), and the lead is cut into R-to-R
  beats resampled to 140 samples and z-normalised
  (:func:`signals.beats.cut_beats`, the ECG5000 representation), and one row per record gives
  ``beats_scored``, ``abnormal_beats`` (beats in the abnormal band) and ``abnormal_fraction``.

Beat inputs go through :func:`signals.beats.beat_inputs`, the function training used.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from common.beatfiles import BeatFileError, read_beats
from common.errors import RecordError
from infer.readers import safe_text
from schemas import BEAT_SAMPLES, LEADS, Band, band_for, canonical_lead
from signals.beats import beat_inputs, cut_beats
from signals.quality import QualityLevel


def _beat_table_rows(path: str, fmt: str, model, low: float, high: float) -> list[dict]:
    """One row per beat of a beat table (or one error row for the file)."""
    stem = Path(path).stem
    base = {"record_id": stem, "path": safe_text(path), "format": fmt}
    try:
        beats = read_beats(path)
    except BeatFileError as e:
        return [{**base, "status": "error", "message": str(e)}]
    except OSError as e:
        return [{**base, "status": "error",
                 "message": f"{safe_text(path)}: cannot be read ({e.strerror or e})"}]
    if not len(beats):
        example = beats.errors[0]["message"] if beats.errors else ""
        return [{**base, "status": "error", "message": (
            f"{safe_text(path)}: not a beat table (no line is a label and {BEAT_SAMPLES} "
            f"samples; e.g. {example}); if it is an ECG recording, pass --beats to cut it "
            "into beats")}]
    c = model.contract.beat
    p = model.predict(beat_inputs(beats.signal, c["inputs"], c.get("denoiser", "none")))
    rows = [{**base, "beat_index": int(i), "abnormal_probability": float(q),
             "band": band_for(float(q), low, high, Band.ABNORMAL).value, "status": "ok",
             "message": ""} for i, q in zip(beats.beat_id, p, strict=True)]
    for e in beats.errors:
        line = int(e["path"].rsplit(":", 1)[1])
        rows.append({**base, "beat_index": line, "status": "error", "message": e["message"]})
    rows.sort(key=lambda r: r["beat_index"])
    return rows


def _record_row(path: str, fmt: str, model, options, lead: str, high: float,
                root: str | None) -> dict:
    """One row for a 12-lead record cut into beats of ``lead``."""
    from infer.preprocess import conform
    from infer.readers import read_csv, read_wfdb, record_id
    from infer.score import _gate  # the MI scorer's quality gate
    from signals.measure import ecg_peaks

    row: dict[str, Any] = {"record_id": record_id(path), "path": safe_text(path), "format": fmt}
    if fmt == "csv" and options.csv_fs is None:
        row.update(status="error", message=(
            f"{safe_text(path)}: a CSV file holds no sampling rate and a beat model has none "
            "to assume; pass --csv-fs"))
        return row
    raw = (read_wfdb(path, root=root) if fmt == "wfdb"
           else read_csv(path, fs=options.csv_fs, units=options.csv_units))
    row["input_fs"], row["duration_s"] = raw.fs, raw.signal.shape[0] / raw.fs
    # the gate judges every standard lead the record has, as for MI; the beats come from one
    # (a beat is resampled to 140 samples, so no model rate applies: fs=1 refuses nothing)
    names = {canonical_lead(n) for n in raw.names}
    present = tuple(lead_ for lead_ in LEADS if lead_ in names)
    if lead not in present:
        row.update(status="error", message=(
            f"{safe_text(path)}: no lead {lead} (leads {', '.join(raw.names)}); pass "
            "--beat-lead with one of them"))
        return row
    view = dataclasses.replace(model.contract, leads=present, fs=1, task="mi")
    c = conform(raw, view)
    row["leads_found"] = ",".join(c.leads_found)
    q = _gate([c], view)[0]
    warnings = list(c.warnings)
    if q is not None:
        row["quality"], row["quality_issues"] = str(q.level), q.summary
        if q.level == QualityLevel.UNUSABLE:
            row.update(status="error", message=f"{safe_text(raw.path)}: {q.message()}")
            return row
        if q.level == QualityLevel.POOR:
            warnings.append(q.message())
    signal = c.signal[:, present.index(lead)]
    beats, _ = cut_beats(signal, ecg_peaks(signal, raw.fs))
    if len(beats) == 0:
        row.update(status="error", message=(
            f"{safe_text(raw.path)}: fewer than two R peaks found in lead {lead}; no beat to "
            "score (try another --beat-lead)"))
        return row
    b = model.contract.beat
    p = model.predict(beat_inputs(beats, b["inputs"], b.get("denoiser", "none")))
    abnormal = int((p >= high).sum())
    row.update(beats_scored=len(beats), abnormal_beats=abnormal,
               abnormal_fraction=abnormal / len(beats),
               status="warning" if warnings else "ok",
               message="; ".join([*warnings, *raw.notes, f"{len(beats)} beats of lead {lead}"]))
    return row


def beat_rows(path: str, fmt: str, model, options, low: float, high: float,
              root: str | None = None) -> list[dict[str, Any]]:
    """The results rows of one input for a beat model; never raises for bad input."""
    try:
        if fmt == "wfdb" or (fmt == "csv" and options.beats):
            if not options.beats:
                return [{"record_id": Path(path).stem, "path": safe_text(path), "format": fmt,
                         "status": "error", "message": (
                             f"{safe_text(path)}: a 12-lead record and a beat model: pass "
                             "--beats to cut it into beats around R peaks")}]
            return [_record_row(path, fmt, model, options, options.beat_lead, high, root)]
        return _beat_table_rows(path, fmt, model, low, high)
    except RecordError as e:
        return [{"record_id": Path(path).stem, "path": safe_text(path), "format": fmt,
                 "status": "error", "message": str(e)}]
    except Exception as e:  # noqa: BLE001  a batch never dies for one file
        from infer.score import _unexpected

        return [{"record_id": Path(path).stem, "path": safe_text(path), "format": fmt,
                 "status": "error", "message": _unexpected(path, e)}]
