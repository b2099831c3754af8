"""Reading inputs for scoring: WFDB records (any rate) and CSV files, to millivolts.

Never imports TensorFlow.  WFDB goes through the same reader and the same ADC-to-mV conversion
as ingestion (:func:`ingest.read_record`, :func:`ingest.adc_to_mv`), so a record is the same
array at training and at scoring time.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field

import numpy as np

from common.errors import RecordError
from common.records import read_record, regular_file
from schemas import LEADS, canonical_lead, unit_scale_to_mv

#: Columns that are not leads and are dropped from CSV files (pandas' index, time stamps).
_NON_LEAD_COLUMNS = {"", "index", "unnamed: 0", "sample", "samples", "time", "t", "timestamp",
                     "time_s", "seconds"}


class InputError(RecordError):
    """An input file cannot be scored; ``kind`` says why (see RecordError)."""


class NotAnEcgError(InputError):
    """The file is not an ECG at all (yesterday's results table, a database's metadata CSV):
    it is listed as skipped, not failed."""

    kind = "not_ecg"


@dataclass
class RawInput:
    """A record as read: float32 mV ``(n_samples, n_columns)`` and its column names."""

    path: str
    format: str
    fs: float
    signal: np.ndarray
    names: list[str]
    warnings: list[str] = field(default_factory=list)  # what was assumed or dropped
    notes: list[str] = field(default_factory=list)  # what is worth saying on an ok row


def read_wfdb(path: str, root: str | None = None) -> RawInput:
    """Read a WFDB record (``.hea`` path) and convert it to mV with its header's gains and units.

    A lead that holds only WFDB's missing value is dropped (as if absent: an error unless
    ``--allow-missing-leads``); a lead with some missing samples (a dropout) is an error.
    ``root`` (the input folder): the header may not name signal files outside it.
    """
    rec = read_record(path, root=root)
    warnings = []
    if not rec.fs_given:
        warnings.append(f"the header gives no sampling rate: WFDB's default {rec.fs:g} Hz "
                        "assumed; add the rate to the header if that is wrong")
    mv = rec.to_millivolts()
    names = list(rec.sig_names)
    missing = rec.missing_samples()
    if missing.any():
        dead = missing == rec.n_samples
        partial = (missing > 0) & ~dead
        if partial.any():
            leads = [f"{names[i]} ({missing[i]})" for i in np.flatnonzero(partial)]
            raise InputError(
                f"{path}: samples missing (WFDB's missing value) in leads {', '.join(leads)}: "
                "the recorder lost contact; re-record, or trim the record to the intact part",
                kind="missing_samples")
        keep = np.flatnonzero(~dead)
        warnings.append(f"leads {','.join(names[i] for i in np.flatnonzero(dead))} hold no "
                        "samples (all WFDB missing values): treated as absent")
        mv, names = mv[:, keep], [names[i] for i in keep]
    return RawInput(path=path, format="wfdb", fs=rec.fs, signal=mv, names=names,
                    warnings=warnings)


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
    regular_file(path, "CSV file")
    size = os.path.getsize(path)
    if size > MAX_CSV_BYTES:
        raise InputError(f"{path}: {size / 2**30:.1f} GiB, larger than the {MAX_CSV_BYTES >> 30} "
                         "GiB this scorer reads from one CSV; split the recording",
                         kind="too_large")
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
    signal, names = _parse_numeric(text, sep, tokens if has_header else None)
    if signal is None:  # text cells, gaps, ragged rows: pandas reads it and says what is wrong
        signal, names = _parse_with_pandas(path, text, sep, has_header)
    if np.isnan(signal).any():
        cols = [names[i] for i in np.flatnonzero(np.isnan(signal).any(axis=0))]
        n = int(np.isnan(signal).any(axis=1).sum())
        raise InputError(
            f"{path}: {n} rows have empty or NaN values (columns {','.join(cols)}); the scorer "
            "never fills gaps itself, so repair or trim the recording", kind="bad_values")
    if scale != 1.0:
        signal *= np.float32(scale)
    return RawInput(path=path, format="csv", fs=float(fs), signal=signal, names=names)


def _parse_numeric(text: str, sep: str, header: list[str] | None):
    """The fast path for a table of numbers only (``numpy.loadtxt``, three times faster than
    pandas here): ``(float32 signal, names)`` with the non-lead columns (index, time) dropped,
    or ``(None, None)`` when the table is anything else (text cells, empty cells, ragged rows,
    repeated column names), which :func:`_parse_with_pandas` then reads or refuses."""
    if header is not None and len(set(header)) != len(header):
        return None, None
    lines = text.lstrip().split("\n", 1)
    if header is not None and len(lines) < 2:
        return None, None
    body = lines[1] if header is not None else text
    try:  # no comment character: pandas, the reference for this reader, has none either
        data = np.loadtxt(io.StringIO(body), delimiter=sep, dtype=np.float64, ndmin=2,
                          comments=None)
    except ValueError:
        return None, None
    if header is None:
        if data.shape[1] != len(LEADS):
            return None, None
        return data.astype(np.float32), list(LEADS)
    if data.shape[1] != len(header) or data.shape[0] == 0:
        return None, None
    keep = [i for i, n in enumerate(header) if n.lower() not in _NON_LEAD_COLUMNS]
    return np.ascontiguousarray(data[:, keep], dtype=np.float32), [header[i] for i in keep]


def _parse_with_pandas(path: str, text: str, sep: str, has_header: bool):
    """Any CSV table pandas reads: ``(float32 signal, names)``, or the error that says what
    is wrong (text cells, ragged rows, no lead columns, a wrong number of columns)."""
    import pandas as pd

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
        if (all(canonical_lead(n) is None for n in names)
                and any(df[c].dtype.kind not in "fiub" for c in df.columns)):
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            raise NotAnEcgError(
                f"{path}: not an ECG table: no column is a lead and some hold text (columns "
                f"{shown}); skipped. If it is an ECG, name the columns after the leads")
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
    return df.to_numpy(dtype=np.float32), names


#: Candidate inputs by extension (lower-cased).
INPUT_FORMATS = {"hea": "wfdb", "csv": "csv",
                 # hospital exports; the content decides which (infer.formats.sniff)
                 "dcm": "export", "dicom": "export", "xml": "export", "edf": "export"}
#: ... for a beat model, which also reads UCR-layout beat tables (ECG5000_TRAIN.txt)
BEAT_INPUT_FORMATS = {**INPUT_FORMATS, "txt": "beats"}
#: Largest CSV file read (a day of 12 leads at 500 Hz is about 3.5 GB of text; split larger).
MAX_CSV_BYTES = 1 << 30


#: files beside WFDB headers that belong to the record (signals, annotations), never reported
_WFDB_COMPANIONS = {"dat", "mat", "atr", "qrs", "ann", "hea~", "xws"}


@dataclass
class Discovery:
    """What :func:`discover` found: inputs to score and candidates it skipped, with why."""

    inputs: list[tuple[str, str]]  # (path, format), sorted
    skipped: list[tuple[str, str]]  # (path, reason)
    #: other files, not inputs, by extension (reported once in the summary, not per file)
    ignored: dict[str, int] = field(default_factory=dict)


def input_format(name: str, formats: dict[str, str] = INPUT_FORMATS) -> str | None:
    """``wfdb`` or ``csv`` (or another of ``formats``) for a candidate input's file name (any
    case), else None."""
    return formats.get(name.rsplit(".", 1)[-1].lower() if "." in name else "")


def discover(root: str | os.PathLike[str], pattern: str | None = None,
             recursive: bool = True, formats: dict[str, str] = INPUT_FORMATS) -> Discovery:
    """Inputs under ``root`` (WFDB headers and CSV files), and every candidate skipped.

    A ``.hea`` file (any case) stands for its record; ``.dat`` files are not inputs by
    themselves.  ``.dcm``, ``.xml`` and ``.edf`` files, and files without an extension that
    hold DICOM, are hospital exports (the content decides the format when they are read).
    Other files are counted by extension in :attr:`Discovery.ignored`.  ``pattern`` is a glob
    matched against the path relative to ``root``
    (``**/*.csv``, ``records100/*``) or the file name.  The walk uses an explicit stack (no
    depth limit), follows symlinked folders once each (a link loop is reported, not followed
    again), and only regular files are inputs.  Skipped, each with its reason: hidden files and
    folders (names starting with a dot) that hold candidates, folders that cannot be read, link
    loops, pipes and devices.
    """
    import fnmatch
    import stat

    root = os.fspath(root)
    inputs: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    ignored: dict[str, int] = {}
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            skipped.append((folder, f"folder cannot be read ({e.strerror or e}); fix its "
                                    "permissions to score what it holds"))
            continue
        for entry in entries:
            path, name = entry.path, entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not recursive:
                    continue
                if name.startswith("."):
                    if _holds_candidates(path):
                        skipped.append((path, "hidden folder (its name starts with a dot); "
                                              "rename it to score what it holds"))
                    continue
                try:
                    st = entry.stat()
                except OSError as e:
                    skipped.append((path, f"folder cannot be read ({e.strerror or e})"))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    skipped.append((path, "link to a folder already searched (a symlink "
                                          "loop or a second link); searched once"))
                    continue
                seen.add(key)
                stack.append(path)
                continue
            fmt = input_format(name, formats)
            if fmt is None and "." not in name and entry.is_file() and _is_dicom(path):
                fmt = "export"  # DICOM files often have no extension
            if fmt is None:
                ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
                if not (pattern or name.startswith(".") or ext in _WFDB_COMPANIONS
                        or name in ("RECORDS", "ANNOTATORS", "SHA256SUMS.txt")):
                    label = f".{ext}" if ext else "(no extension)"
                    ignored[label] = ignored.get(label, 0) + 1
                continue
            if pattern:
                rel = os.path.relpath(path, root)
                if not (fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(name, pattern)):
                    continue
            if name.startswith("."):
                skipped.append((path, "hidden file (its name starts with a dot); rename it to "
                                      "score it"))
                continue
            try:
                st = entry.stat()
            except OSError:
                inputs.append((path, fmt))  # a dangling link: reading it says what is wrong
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append((path, "not a regular file (a pipe, socket or device); only "
                                      "files are read"))
                continue
            inputs.append((path, fmt))
    return Discovery(inputs=sorted(inputs), skipped=sorted(skipped),
                     ignored=dict(sorted(ignored.items(), key=lambda kv: (-kv[1], kv[0]))))


def _is_dicom(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _holds_candidates(folder: str, limit: int = 10_000) -> bool:
    """Whether a (hidden) folder holds any candidate input, looking at most ``limit`` entries."""
    seen = 0
    stack = [folder]
    while stack and seen < limit:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    seen += 1
                    if input_format(e.name) and not e.is_dir():
                        return True
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
        except OSError:
            continue
    return False


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8 for the results table: a file name with bytes that are not UTF-8
    (kept by Python as surrogates) shows them as ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def record_id(path: str) -> str:
    """The record's id: its file name without extension."""
    return safe_text(re.sub(r"\.(hea|csv|dcm|dicom|xml|edf)$", "", os.path.basename(path),
                            flags=re.IGNORECASE))
