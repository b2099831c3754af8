"""Reading inputs for scoring: WFDB records (any rate) and CSV files, to millivolts.

Never imports TensorFlow.  WFDB goes through the same reader and the same ADC-to-mV conversion
as ingestion (:func:`ingest.read_record`, :func:`ingest.adc_to_mv`), so a record is the same
array at training and at scoring time.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import RecordError
from common.records import read_record
from schemas import LEADS, unit_scale_to_mv

#: Columns that are not leads and are dropped from CSV files (pandas' index, time stamps).
_NON_LEAD_COLUMNS = {"", "index", "unnamed: 0", "sample", "samples", "time", "t", "timestamp",
                     "time_s", "seconds"}


class InputError(RecordError):
    """An input file cannot be scored; ``kind`` says why (see RecordError)."""


@dataclass
class RawInput:
    """A record as read: float32 mV ``(n_samples, n_columns)`` and its column names."""

    path: str
    format: str
    fs: float
    signal: np.ndarray
    names: list[str]


def read_wfdb(path: str) -> RawInput:
    """Read a WFDB record (``.hea`` path) and convert it to mV with its header's gains and units."""
    rec = read_record(path)
    return RawInput(path=path, format="wfdb", fs=rec.fs, signal=rec.to_millivolts(),
                    names=list(rec.sig_names))


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_csv(path: str, fs: float, units: str = "mV") -> RawInput:
    """Read one record from a CSV file.

    Layouts understood: a header naming the leads (as ``pandas.DataFrame(record.p_signal,
    columns=record.sig_name).to_csv()`` writes it, index column included or not; names matched
    case-insensitively, with aliases such as aVR and MLII), or no header and 12 columns in the
    standard order.  Commas, semicolons or tabs separate values.  ``fs`` and ``units`` are not
    stored in a CSV file and come from the caller (``--csv-fs``, ``--csv-units``).
    """
    scale = unit_scale_to_mv(units)
    if scale is None:
        raise ValueError(f"units must be one of V, mV, uV, nV; got {units!r}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e}); check that the file "
                         "exists and is readable", kind="unreadable_file") from e
    if not raw.strip():
        raise InputError(f"{path}: the file is empty; re-export the record", kind="empty_file")
    if b"\x00" in raw[:4096]:
        raise InputError(f"{path}: binary content, not a CSV text file; export the record as "
                         "CSV or pass the WFDB files", kind="not_csv")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text, so not a CSV file this scorer reads; export "
                         "the record as CSV", kind="not_csv") from None
    first = text.lstrip().split("\n", 1)[0]
    sep = max([",", ";", "\t"], key=first.count)
    if first.count(sep) == 0:
        raise InputError(f"{path}: no comma, semicolon or tab in the first line; not a "
                         "multi-lead CSV file", kind="not_csv")
    tokens = [t.strip().strip('"').strip("'") for t in first.split(sep)]
    has_header = not all(_is_number(t) for t in tokens if t)
    import pandas as pd  # the C parser is ~10x faster than numpy.loadtxt

    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, header=0 if has_header else None,
                         skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as e:
        raise InputError(f"{path}: malformed CSV ({str(e).strip()}); every row needs the same "
                         "number of columns", kind="not_csv") from None
    if has_header:
        names = [str(c).strip() for c in df.columns]
        keep = [i for i, n in enumerate(names) if n.lower() not in _NON_LEAD_COLUMNS]
        df = df.iloc[:, keep]
        names = [names[i] for i in keep]
    else:
        if df.shape[1] != len(LEADS):
            raise InputError(
                f"{path}: {df.shape[1]} columns and no header; expected {len(LEADS)} columns in "
                f"the order {','.join(LEADS)}, or a header row naming the leads",
                kind="bad_shape",
            )
        names = list(LEADS)
    for i, column in enumerate(df.columns):
        if df[column].dtype.kind not in "fiu":
            bad = next((v for v in df[column] if not _is_number(str(v))), None)
            raise InputError(
                f"{path}: column {names[i]!r} holds text ({bad!r}), not numbers; fix or remove "
                "those rows", kind="bad_values")
    signal = df.to_numpy(dtype=np.float32)
    if np.isnan(signal).any():
        cols = [names[i] for i in np.flatnonzero(np.isnan(signal).any(axis=0))]
        n = int(np.isnan(signal).any(axis=1).sum())
        raise InputError(
            f"{path}: {n} rows have empty or NaN values (columns {','.join(cols)}); the scorer "
            "never fills gaps itself, so repair or trim the recording", kind="bad_values")
    if scale != 1.0:
        signal *= np.float32(scale)
    return RawInput(path=path, format="csv", fs=float(fs), signal=signal, names=names)


def discover(root: str | os.PathLike[str], pattern: str | None = None,
             recursive: bool = True) -> list[tuple[str, str]]:
    """Inputs under ``root`` as sorted ``(path, format)``: WFDB headers and CSV files.

    A ``.hea`` file stands for its record (its signal file is checked when read); ``.dat``
    files are not inputs by themselves.  Hidden files and folders are skipped.  ``pattern`` is
    a glob matched against the path relative to ``root`` (``**/*.csv``, ``records100/*``) or
    the file name.
    """
    import fnmatch

    root = Path(root)
    found = []
    walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
    for dirpath, dirnames, filenames in walker:
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            fmt = {"hea": "wfdb", "csv": "csv"}.get(ext)
            if fmt is None:
                continue
            path = os.path.join(dirpath, name)
            if pattern:
                rel = os.path.relpath(path, root)
                if not (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(name, pattern)):
                    continue
            found.append((path, fmt))
    return sorted(found)


def record_id(path: str) -> str:
    """The record's id: its file name without extension."""
    return re.sub(r"\.(hea|csv)$", "", os.path.basename(path), flags=re.IGNORECASE)
