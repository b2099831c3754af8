"""Reading heartbeat tables (ECG5000): the UCR layout and TensorFlow's ``ecg.csv``.

Shared by ``ingest ecg5000`` and the scorer (beat models score beat files directly).  Two
layouts are accepted, told apart by content, not by file name:

- **UCR** (``ECG5000_TRAIN.txt``, ``ECG5000_TEST.txt``): whitespace-separated, the class label
  (1-5, written as a float) first, then 140 samples;
- **TensorFlow** (``ecg.csv`` of the TensorFlow anomaly-detection tutorial): comma-separated,
  140 samples then a binary label (1 normal, 0 abnormal); a first line of column names is
  allowed.

A row that cannot be a beat (wrong number of values, a value that is not a finite number, an
unknown label) becomes an error entry naming the file, the line, the problem and the fix.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import RecordError
from schemas import BEAT_SAMPLES

LAYOUTS = ("ucr", "tensorflow")
#: Largest input accepted (the full ECG5000 is 5,000 beats, about 11 MB as text).
MAX_BYTES = 1 << 30


@dataclass
class Beats:
    """Beats read from one file, and the rows that were not beats."""

    beat_id: np.ndarray  # (n,) int32, 1-based line numbers
    cls: np.ndarray  # (n,) int8, 0 where unknown (TensorFlow layout)
    abnormal: np.ndarray  # (n,) bool
    signal: np.ndarray  # (n, 140) float32
    layout: str
    errors: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.beat_id)


class BeatFileError(RecordError):
    """The file is not a beat table at all (empty, binary, too large, unknown layout)."""


def detect_layout(line: str) -> str:
    """``ucr`` or ``tensorflow`` from the first data line, by its separator."""
    return "tensorflow" if "," in line else "ucr"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_beats(path: str | os.PathLike[str]) -> Beats:
    """Read an ECG5000 file in either layout; bad rows become error entries."""
    path = Path(path)
    if not path.is_file():
        raise BeatFileError(f"{path}: not a file; pass the ECG5000 text or CSV file")
    if path.stat().st_size > MAX_BYTES:
        raise BeatFileError(f"{path}: {path.stat().st_size / 1e9:.1f} GB is not an ECG5000 "
                            "file (the whole archive is about 11 MB); check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BeatFileError(f"{path}: not a text file (byte {e.start} is not UTF-8); pass the "
                            "ECG5000 .txt (UCR) or ecg.csv (TensorFlow) file") from e
    lines = text.splitlines()
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        raise BeatFileError(f"{path}: empty; pass the ECG5000 .txt (UCR) or ecg.csv "
                            "(TensorFlow) file")
    layout = detect_layout(numbered[0][1])
    sep = "," if layout == "tensorflow" else None
    first = numbered[0][1].split(sep)
    if not any(_is_number(f) for f in first):  # a line of column names
        numbered = numbered[1:]
    ids, classes, abnormal, rows, errors = [], [], [], [], []

    def bad(lineno: int, kind: str, problem: str, fix: str) -> None:
        errors.append({"ecg_id": None, "path": f"{path}:{lineno}", "kind": kind,
                       "message": f"{path}: line {lineno}: {problem}; {fix}"})

    want = BEAT_SAMPLES + 1
    for lineno, line in numbered:
        fields = [f.strip() for f in line.split(sep)]
        if len(fields) != want:
            bad(lineno, "bad_shape", f"{len(fields)} values, a beat row has {want} (label and "
                f"{BEAT_SAMPLES} samples)", "repair or remove the line")
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            word = next(f for f in fields if not _is_number(f))
            bad(lineno, "bad_values", f"{word[:40]!r} is not a number", "repair or remove the "
                "line")
            continue
        if not all(math.isfinite(v) for v in values):
            bad(lineno, "bad_values", "NaN or infinite samples", "repair or remove the line")
            continue
        label = values[0] if layout == "ucr" else values[-1]
        samples = values[1:] if layout == "ucr" else values[:-1]
        allowed = (1, 2, 3, 4, 5) if layout == "ucr" else (0, 1)
        if label != int(label) or int(label) not in allowed:
            where = "first" if layout == "ucr" else "last"
            bad(lineno, "bad_label", f"label {label:g} (the {where} value) is not one of "
                f"{list(allowed)} for the {layout} layout",
                "check the file's layout: UCR puts the class 1-5 first, TensorFlow's ecg.csv "
                "puts 1 (normal) or 0 (abnormal) last")
            continue
        label = int(label)
        ids.append(lineno)
        if layout == "ucr":
            classes.append(label)
            abnormal.append(label != 1)
        else:
            classes.append(0)
            abnormal.append(label == 0)
        rows.append(samples)
    return Beats(
        beat_id=np.asarray(ids, dtype=np.int32),
        cls=np.asarray(classes, dtype=np.int8),
        abnormal=np.asarray(abnormal, dtype=bool),
        signal=np.asarray(rows, dtype=np.float32).reshape(-1, BEAT_SAMPLES),
        layout=layout,
        errors=errors,
    )


