"""Reading WFDB records: a fast path for PTB-XL's format-16 files, wfdb for the rest.

``wfdb.rdrecord`` spends most of its 2-4 ms per record parsing the header with pandas.
PTB-XL's ``.dat`` files are plain little-endian int16 (format 16), so :func:`read_record` parses
the header itself and reads the samples with ``numpy.fromfile``, which takes tens of
microseconds, with or without a byte offset shared by all signals (the PhysioNet/Challenge
``.mat`` layout, format ``16+24``).  Headers it does not cover (other formats, several signal
files, skew, different offsets per signal) go through ``wfdb.rdrecord`` so the result is the
same array either way; the test suite checks both against wfdb on every shipped record.

Both paths are equally strict: checksums are verified, a signal file longer or shorter than its
header says is refused, multi-frequency records are refused (wfdb would average their frames),
only regular files are opened (a FIFO would block the batch), signal files must lie inside
``root`` when one is given, and implausible headers (no positive finite gain, too many signals,
records longer than :data:`MAX_SECONDS`) are refused before anything is read.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass

import numpy as np

from common.errors import HeaderError, RecordError
from schemas import unit_scale_to_mv

_FMT_RE = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN_RE = re.compile(r"^([-+0-9.eEinfINFaA]+)(?:\(([-+]?\d+)\))?(?:/(\S+))?$")

#: WFDB's default sampling rate when a header gives none.
WFDB_DEFAULT_FS = 250.0
#: Longest record read (per lead): a day of signal.  Longer ones are refused, not loaded.
MAX_SECONDS = 24 * 3600
#: More signals than this in one header is not an ECG record.
MAX_SIGNALS = 64
#: The value WFDB stores for a missing sample, by signal format (the int16-sized ones).
MISSING_VALUE = {"16": -32768, "61": -32768, "160": -32768, "80": -128, "212": -2048,
                 "310": -512, "311": -512}
#: Bytes per sample of the formats whose file length can be checked against the header.
_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "61": 2, "80": 1, "160": 2, "212": 1.5, "24": 3, "32": 4}


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One signal line of a WFDB header (the fields this pipeline uses)."""

    file_name: str
    fmt: str
    samples_per_frame: int
    skew: int
    byte_offset: int
    adc_gain: float
    baseline: int
    units: str
    checksum: int | None
    name: str


@dataclass(frozen=True)
class Header:
    """A parsed single-segment WFDB header."""

    record_name: str
    fs: float
    n_samples: int | None
    signals: tuple[SignalSpec, ...]
    fs_given: bool = True  # False: the header gives no rate and WFDB's 250 Hz is assumed

    @property
    def sig_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.signals)


@dataclass(frozen=True)
class Record:
    """Digital samples of one record and what is needed to make them physical.

    ``signal`` is ``(n_samples, n_leads)`` in the file's lead order, as stored (ADC units);
    ``to_millivolts`` applies the per-lead baseline, gain and unit.
    """

    path: str
    fs: float
    sig_names: tuple[str, ...]
    signal: np.ndarray
    adc_gain: np.ndarray
    baseline: np.ndarray
    units: tuple[str, ...]
    formats: tuple[str, ...] = ()
    fs_given: bool = True

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])

    def missing_samples(self) -> np.ndarray:
        """Per lead, how many samples hold WFDB's missing value (a dropout, a dead lead)."""
        cached = self.__dict__.get("_missing")
        if cached is not None:
            return cached
        values = {MISSING_VALUE.get(f) for f in self.formats}
        if None not in values and self.signal.size and self.signal.min() > min(values):
            # the missing value is the format's smallest: one contiguous pass settles it
            out = np.zeros(self.signal.shape[1], dtype=np.int64)
        elif len(values) == 1 and None not in values:
            out = np.count_nonzero(self.signal == values.pop(), axis=0).astype(np.int64)
        else:
            out = np.zeros(self.signal.shape[1], dtype=np.int64)
            for i, fmt in enumerate(self.formats):
                if fmt in MISSING_VALUE:
                    out[i] = int(np.count_nonzero(self.signal[:, i] == MISSING_VALUE[fmt]))
        self.__dict__["_missing"] = out  # frozen dataclass: cache beside the fields
        return out

    def to_millivolts(self) -> np.ndarray:
        """Physical signal in mV as float32, shape ``(n_samples, n_leads)``; missing samples
        (WFDB's missing value) are NaN."""
        scale = np.empty(len(self.units), dtype=np.float64)
        for i, unit in enumerate(self.units):
            factor = unit_scale_to_mv(unit)
            if factor is None:
                raise RecordError(
                    f"{self.path}: lead {self.sig_names[i]} is in {unit!r}, not a voltage; "
                    "only V, mV, uV and nV are understood",
                    kind="bad_units",
                )
            scale[i] = factor
        gain = np.where(self.adc_gain == 0, 200.0, self.adc_gain)  # WFDB: gain 0 means 200
        mv = adc_to_mv(self.signal, gain / scale, self.baseline)
        if self.missing_samples().any():
            for i, fmt in enumerate(self.formats):
                if fmt in MISSING_VALUE:
                    mv[self.signal[:, i] == MISSING_VALUE[fmt], i] = np.nan
        return mv


def adc_to_mv(signal: np.ndarray, gain, baseline) -> np.ndarray:
    """ADC units to millivolts as float32: ``(signal - baseline) / gain``.

    The one conversion every stage uses (training batches and the scorer alike).  ``gain`` is
    in ADC units per mV; ``gain`` and ``baseline`` broadcast against ``signal`` (a scalar, one
    value per lead, or one per record as ``(n, 1, 1)``).
    """
    inv = (1.0 / np.asarray(gain, dtype=np.float64)).astype(np.float32)
    return (signal.astype(np.float32) - np.asarray(baseline, dtype=np.float32)) * inv


def _int(text: str, what: str, hea: str, lineno: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise HeaderError(
            f"{hea}: line {lineno}: {what} {text!r} is not an integer; "
            "the header is corrupt, re-download or re-export the record"
        ) from None


def regular_file(path: str, what: str, named_in: str | None = None) -> None:
    """Raise RecordError unless ``path`` is a regular file: opening a FIFO or a device would
    block the batch or read forever."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise RecordError(f"{path}: the {what} is a link to {os.readlink(path)}, which does "
                              "not exist; fix or remove the link", kind="missing_file") from None
        where = f" (named in {named_in})" if named_in else ""
        fix = "copy it next to its header" if named_in else "check the path or the record list"
        raise RecordError(f"{path}: {what} not found{where}; {fix}",
                          kind="missing_file") from None
    except OSError as e:
        raise RecordError(f"{path}: cannot open the {what} ({e.strerror or e}); check its "
                          "permissions", kind="unreadable_file") from e
    if not stat.S_ISREG(st.st_mode):
        raise RecordError(f"{path}: the {what} is not a regular file (a pipe, device or "
                          "folder); only files are read", kind="not_a_file")


def _decode(data: bytes) -> str:
    """Header text: UTF-8 (lead names such as 'aVR' in any script), else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_header(hea_path: str | os.PathLike[str], text: str | None = None) -> Header:
    """Parse a single-segment WFDB header file.

    Parameters
    ----------
    hea_path : path to the ``.hea`` file (used in error messages, and read if ``text`` is None)
    text : the header's content, if already read

    Raises
    ------
    HeaderError
        naming the file and line, for any malformed field.
    """
    hea = str(hea_path)
    if text is None:
        regular_file(hea, "header file")
        try:
            with open(hea_path, "rb") as f:
                text = _decode(f.read(1 << 20))  # a real header is a few kB
        except OSError as e:
            raise RecordError(f"{hea}: cannot read the header ({e.strerror or e}); check its "
                              "permissions", kind="unreadable_file") from e
    lines = []
    for i, ln in enumerate(text.splitlines(), 1):
        if "#" in ln:
            ln = ln.split("#", 1)[0]
        ln = ln.strip()
        if ln:
            lines.append((i, ln))
    if not lines:
        raise HeaderError(f"{hea}: empty header; re-download or re-export the record")
    lineno, first = lines[0]
    fields = first.split()
    if len(fields) < 2:
        raise HeaderError(
            f"{hea}: line {lineno}: record line {first[:80]!r} needs at least a name and a "
            "signal count"
        )
    name = fields[0]
    if "/" in name:
        raise HeaderError(
            f"{hea}: multi-segment records are not supported (record line {first[:80]!r})",
            kind="unsupported_format",
        )
    n_sig = _int(fields[1], "signal count", hea, lineno)
    if not 1 <= n_sig <= MAX_SIGNALS:
        raise HeaderError(f"{hea}: line {lineno}: {n_sig} signals; an ECG record has 1-"
                          f"{MAX_SIGNALS}", kind="unsupported_format")
    fs, fs_given = WFDB_DEFAULT_FS, len(fields) > 2
    if fs_given:
        try:
            fs = float(fields[2].split("/")[0].split("(")[0])
        except ValueError:
            raise HeaderError(
                f"{hea}: line {lineno}: sampling frequency {fields[2]!r} is not a number"
            ) from None
    if not (math.isfinite(fs) and fs > 0):
        raise HeaderError(f"{hea}: line {lineno}: sampling frequency must be positive, got {fs}")
    n_samples = _int(fields[3], "sample count", hea, lineno) if len(fields) > 3 else None
    if n_samples is not None and not 0 <= n_samples <= MAX_SECONDS * fs:
        raise HeaderError(
            f"{hea}: line {lineno}: {n_samples} samples at {fs:g} Hz; records longer than "
            f"{MAX_SECONDS // 3600} h are not read (split the recording)",
            kind="too_long",
        )
    sig_lines = lines[1 : 1 + n_sig]
    if len(sig_lines) != n_sig:
        raise HeaderError(
            f"{hea}: record line says {n_sig} signals but {len(sig_lines)} signal lines follow; "
            "the header is truncated, re-download the record"
        )
    signals = []
    for lineno, line in sig_lines:
        parts = line.split(maxsplit=8)
        n_parts = len(parts)
        if n_parts < 2:
            raise HeaderError(f"{hea}: line {lineno}: signal line {line[:80]!r} lacks a format")
        fmt, spf, skew, offset = parts[1], 1, 0, 0
        if not fmt.isdigit():  # the common case ("16") needs no regex
            m = _FMT_RE.match(fmt)
            if not m:
                raise HeaderError(f"{hea}: line {lineno}: signal format {fmt!r} is not valid")
            fmt, spf = m.group(1), int(m.group(2) or 1)
            skew, offset = int(m.group(3) or 0), int(m.group(4) or 0)
        gain, baseline, units = 200.0, None, "mV"
        if n_parts > 2:
            g = _GAIN_RE.match(parts[2])
            if not g:
                raise HeaderError(
                    f"{hea}: line {lineno}: ADC gain {parts[2]!r} is not of the form "
                    "GAIN(BASELINE)/UNITS; the header is corrupt, re-download the record"
                )
            try:
                gain = float(g.group(1))
            except ValueError:
                raise HeaderError(
                    f"{hea}: line {lineno}: ADC gain {parts[2]!r} is not a number"
                ) from None
            if not (math.isfinite(gain) and gain >= 0):
                raise HeaderError(
                    f"{hea}: line {lineno}: ADC gain {g.group(1)} is not a positive finite "
                    "number (ADC units per physical unit); fix the header",
                    kind="bad_units",
                )
            if g.group(2) is not None:
                baseline = int(g.group(2))
            units = g.group(3) or "mV"
        adc_zero = _int(parts[4], "ADC zero", hea, lineno) if n_parts > 4 else 0
        checksum = _int(parts[6], "checksum", hea, lineno) if n_parts > 6 else None
        signals.append(
            SignalSpec(
                file_name=parts[0],
                fmt=fmt,
                samples_per_frame=spf,
                skew=skew,
                byte_offset=offset,
                adc_gain=gain,
                baseline=adc_zero if baseline is None else baseline,
                units=units,
                checksum=checksum,
                name=parts[8].strip() if n_parts > 8 else f"sig{len(signals)}",
            )
        )
    if any(s.samples_per_frame > 1 for s in signals):
        raise HeaderError(
            f"{hea}: multi-frequency record (some signals have several samples per frame); not "
            "supported, export the leads at one rate", kind="unsupported_format")
    return Header(record_name=name, fs=fs, n_samples=n_samples, signals=tuple(signals),
                  fs_given=fs_given)


def _fast_path_ok(header: Header) -> bool:
    sigs = header.signals
    return (
        len(sigs) > 0
        and header.n_samples is not None
        and all(
            s.fmt == "16"
            and s.skew == 0
            and s.byte_offset == sigs[0].byte_offset  # the Challenge .mat layout: 16+24
            and s.file_name == sigs[0].file_name
            for s in sigs
        )
    )


def header_path(record_path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(record base, header path)`` of a record given with or without its ``.hea`` (any
    case: ``R.HEA`` is a header too)."""
    p = str(record_path)
    if p.lower().endswith(".hea"):
        return p[:-4], p
    return p, p + ".hea"


def _signal_files(hea: str, header: Header, root: str | None) -> list[str]:
    """The signal files a header names, checked to be regular files inside ``root``."""
    folder = os.path.dirname(hea)
    out = []
    for name in dict.fromkeys(s.file_name for s in header.signals):
        path = os.path.join(folder, name)
        if root is not None and (os.path.isabs(name) or ".." in name.replace("\\", "/")
                                 .split("/")):
            # lexical: a folder the user linked into the input is theirs to give; a header
            # reaching out by an absolute path or ../ is not
            raise RecordError(
                f"{hea}: the signal file {name!r} lies outside the input folder {root}; "
                "records are only read inside it (copy the file next to its header)",
                kind="outside_input")
        regular_file(path, "signal file", named_in=os.path.basename(hea))
        out.append(path)
    return out


def read_record(
    record_path: str | os.PathLike[str], verify_checksum: bool = True,
    root: str | os.PathLike[str] | None = None,
) -> Record:
    """Read a WFDB record (``path`` without extension, or the ``.hea`` path).

    Format-16 single-file records (any byte offset common to all signals) are read directly
    with numpy; anything else is delegated to
    ``wfdb.rdrecord(physical=False)``.  The result is the same either way.

    Parameters
    ----------
    record_path : e.g. ``data/ptbxl-sample/records100/00000/00001_lr``
    verify_checksum : compare each lead's 16-bit sample sum with the header's checksum, which
        catches a corrupt ``.dat`` of the right length.
    root : if given (the input folder), a header may not name its signal files by an absolute
        path or through ``..``: it cannot make the reader open files outside the input.

    Raises
    ------
    RecordError
        (or its subclass HeaderError) naming the file, the problem and the fix.

    Examples
    --------
    >>> rec = read_record("data/ptbxl-sample/records100/00000/00001_lr")
    >>> rec.signal.shape, rec.fs
    ((1000, 12), 100.0)
    """
    base, hea = header_path(record_path)
    header = parse_header(hea)
    files = _signal_files(hea, header, None if root is None else str(root))
    if not _fast_path_ok(header):
        return _read_with_wfdb(base, hea, header, files)
    sigs = header.signals
    dat = files[0]
    n_sig, n_samples = len(sigs), header.n_samples
    expected = n_sig * n_samples
    offset = sigs[0].byte_offset
    size = os.path.getsize(dat) - offset
    if size != 2 * expected:
        held = max(0, size) // 2 // n_sig
        what = "truncated" if size < 2 * expected else "longer than its header says"
        raise RecordError(
            f"{dat}: holds {held} samples per lead but {os.path.basename(hea)} says {n_samples}; "
            f"the file is {what}, re-download the record",
            kind="truncated_signal" if size < 2 * expected else "bad_shape",
        )
    try:
        data = np.fromfile(dat, dtype="<i2", offset=offset)
    except OSError as e:
        raise RecordError(f"{dat}: cannot read signal file: {e}", kind="unreadable_record") from e
    signal = data.reshape(n_samples, n_sig)
    if verify_checksum:
        _verify_checksums(signal, sigs, dat)
    return Record(
        path=base,
        fs=header.fs,
        sig_names=header.sig_names,
        signal=signal,
        adc_gain=np.array([s.adc_gain for s in sigs], dtype=np.float64),
        baseline=np.array([s.baseline for s in sigs], dtype=np.int64),
        units=tuple(s.units for s in sigs),
        formats=tuple(s.fmt for s in sigs),
        fs_given=header.fs_given,
    )


def _verify_checksums(signal: np.ndarray, sigs: tuple[SignalSpec, ...], where: str) -> None:
    sums = signal.sum(axis=0, dtype=np.int64) & 0xFFFF
    for i, s in enumerate(sigs):
        if s.checksum is not None and int(sums[i]) != (s.checksum & 0xFFFF):
            raise RecordError(
                f"{where}: checksum of lead {s.name} is {int(sums[i])}, header says "
                f"{s.checksum}; the signal file is corrupt, re-download the record",
                kind="checksum_mismatch",
            )


def _read_with_wfdb(base: str, hea: str, header: Header, files: list[str]) -> Record:
    """Reference path: wfdb's reader, for the formats the fast path does not cover, held to
    the fast path's checks (length, checksums, int16 range)."""
    import wfdb  # imported here: it pulls in pandas and costs ~0.3 s at start-up

    sigs = header.signals
    if header.n_samples is not None and len(files) == 1:
        per = _BYTES_PER_SAMPLE.get(sigs[0].fmt)
        if per is not None and all(s.fmt == sigs[0].fmt for s in sigs):
            want = math.ceil(per * header.n_samples * len(sigs)) + sigs[0].byte_offset
            size = os.path.getsize(files[0])
            if size != want and not (sigs[0].fmt == "212" and size == want + 1):
                what = "truncated" if size < want else "longer than its header says"
                raise RecordError(
                    f"{files[0]}: {size} bytes, but {os.path.basename(hea)} describes {want}; "
                    f"the file is {what}, re-download the record",
                    kind="truncated_signal" if size < want else "bad_shape")
    # wfdb only reads NAME.hea; a header named NAME.HEA is given to it through a private
    # folder of links (the input folder is never written to)
    shadow = None if hea.endswith(".hea") else _shadow_folder(hea, header, files)
    rd_base = base if shadow is None else os.path.join(shadow, "record")
    try:
        rec = wfdb.rdrecord(rd_base, physical=False, return_res=64)
    except FileNotFoundError as e:
        raise RecordError(
            f"{base}: {e.filename or 'signal file'} not found; copy the signal file next to its "
            "header",
            kind="missing_file",
        ) from e
    except Exception as e:  # wfdb raises bare ValueError/IndexError on damaged files
        raise RecordError(
            f"{hea}: wfdb cannot read the record ({type(e).__name__}: {str(e)[:200]}); "
            "check that the signal file is complete",
            kind="unreadable_record",
        ) from e
    finally:
        if shadow is not None:
            import shutil

            shutil.rmtree(shadow, ignore_errors=True)
    if rec.e_d_signal is not None or rec.d_signal is None:
        raise RecordError(
            f"{hea}: multi-frequency records are not supported",
            kind="unsupported_format",
        )
    d = np.asarray(rec.d_signal)
    if d.size and (d.min() < -32768 or d.max() > 32767):
        raise RecordError(
            f"{hea}: samples exceed the int16 range (format {rec.fmt}); not supported",
            kind="unsupported_format",
        )
    signal = d.astype(np.int16)
    _verify_checksums(d.astype(np.int64), sigs, hea)
    return Record(
        path=base,
        fs=float(rec.fs),
        sig_names=tuple(rec.sig_name),
        signal=signal,
        adc_gain=np.asarray(rec.adc_gain, dtype=np.float64),
        baseline=np.asarray(rec.baseline, dtype=np.int64),
        units=tuple(rec.units),
        formats=tuple(str(f) for f in rec.fmt),
        fs_given=header.fs_given,
    )


def _shadow_folder(hea: str, header: Header, files: list[str]) -> str:
    """A temporary folder with ``record.hea`` and the signal files, as links to the originals."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="mi-screen-wfdb-")
    os.symlink(os.path.realpath(hea), os.path.join(folder, "record.hea"))
    names = dict.fromkeys(s.file_name for s in header.signals)
    for name, path in zip(names, files, strict=True):
        target = os.path.join(folder, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.path.realpath(path), target)
    return folder
