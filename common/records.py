"""Reading WFDB records: a fast path for PTB-XL's format-16 files, wfdb for the rest.

``wfdb.rdrecord`` spends most of its 2-4 ms per record parsing the header with pandas.
PTB-XL's ``.dat`` files are plain little-endian int16 (format 16), so :func:`read_record` parses
the header itself and reads the samples with ``numpy.fromfile``, which takes tens of
microseconds.  Headers it does not cover (other formats, several signal files, skew, byte
offsets, multi-frequency records) go through ``wfdb.rdrecord`` so the result is the same array
either way; the test suite checks both against wfdb on every shipped record.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from common.errors import HeaderError, RecordError
from schemas import unit_scale_to_mv

_FMT_RE = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN_RE = re.compile(r"^([-+0-9.eE]+)(?:\(([-+]?\d+)\))?(?:/(\S+))?$")


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

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])

    def to_millivolts(self) -> np.ndarray:
        """Physical signal in mV as float32, shape ``(n_samples, n_leads)``."""
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
        return adc_to_mv(self.signal, gain / scale, self.baseline)


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
        try:
            with open(hea_path, encoding="latin-1") as f:
                text = f.read()
        except FileNotFoundError:
            raise RecordError(
                f"{hea}: header file not found; check the path or the record list",
                kind="missing_file",
            ) from None
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
            f"{hea}: line {lineno}: record line {first!r} needs at least a name and a signal count"
        )
    name = fields[0]
    if "/" in name:
        raise HeaderError(
            f"{hea}: multi-segment records are not supported (record line {first!r})",
            kind="unsupported_format",
        )
    n_sig = _int(fields[1], "signal count", hea, lineno)
    fs = 250.0  # WFDB default
    if len(fields) > 2:
        try:
            fs = float(fields[2].split("/")[0].split("(")[0])
        except ValueError:
            raise HeaderError(
                f"{hea}: line {lineno}: sampling frequency {fields[2]!r} is not a number"
            ) from None
    if fs <= 0:
        raise HeaderError(f"{hea}: line {lineno}: sampling frequency must be positive, got {fs}")
    n_samples = _int(fields[3], "sample count", hea, lineno) if len(fields) > 3 else None
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
            raise HeaderError(f"{hea}: line {lineno}: signal line {line!r} lacks a format")
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
    return Header(record_name=name, fs=fs, n_samples=n_samples, signals=tuple(signals))


def _fast_path_ok(header: Header) -> bool:
    sigs = header.signals
    return (
        len(sigs) > 0
        and header.n_samples is not None
        and all(
            s.fmt == "16"
            and s.samples_per_frame == 1
            and s.skew == 0
            and s.byte_offset == 0
            and s.file_name == sigs[0].file_name
            for s in sigs
        )
    )


def read_record(
    record_path: str | os.PathLike[str], verify_checksum: bool = True
) -> Record:
    """Read a WFDB record (``path`` without extension, or the ``.hea`` path).

    Format-16 single-file records are read directly with numpy; anything else is delegated to
    ``wfdb.rdrecord(physical=False)``.  The result is the same either way.

    Parameters
    ----------
    record_path : e.g. ``data/ptbxl-sample/records100/00000/00001_lr``
    verify_checksum : compare each lead's 16-bit sample sum with the header's checksum, which
        catches a corrupt ``.dat`` of the right length.

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
    base = str(record_path)
    if base.endswith(".hea"):
        base = base[:-4]
    hea = base + ".hea"
    header = parse_header(hea)
    if not _fast_path_ok(header):
        return _read_with_wfdb(base, header)
    sigs = header.signals
    dat = os.path.join(os.path.dirname(hea), sigs[0].file_name)
    n_sig, n_samples = len(sigs), header.n_samples
    try:
        data = np.fromfile(dat, dtype="<i2")
    except FileNotFoundError:
        raise RecordError(
            f"{dat}: signal file not found (named in {hea}); copy the .dat next to its header",
            kind="missing_file",
        ) from None
    except OSError as e:
        raise RecordError(f"{dat}: cannot read signal file: {e}", kind="unreadable_record") from e
    expected = n_sig * n_samples
    if data.size != expected:
        held = data.size // n_sig
        what = "truncated" if data.size < expected else "longer than its header says"
        raise RecordError(
            f"{dat}: holds {held} samples per lead but {os.path.basename(hea)} says {n_samples}; "
            f"the file is {what}, re-download the record",
            kind="truncated_signal" if data.size < expected else "bad_shape",
        )
    signal = data.reshape(n_samples, n_sig)
    if verify_checksum:
        sums = signal.sum(axis=0, dtype=np.int64) & 0xFFFF
        for i, s in enumerate(sigs):
            if s.checksum is not None and int(sums[i]) != (s.checksum & 0xFFFF):
                raise RecordError(
                    f"{dat}: checksum of lead {s.name} is {int(sums[i])}, header says "
                    f"{s.checksum}; the signal file is corrupt, re-download the record",
                    kind="checksum_mismatch",
                )
    return Record(
        path=base,
        fs=header.fs,
        sig_names=header.sig_names,
        signal=signal,
        adc_gain=np.array([s.adc_gain for s in sigs], dtype=np.float64),
        baseline=np.array([s.baseline for s in sigs], dtype=np.int64),
        units=tuple(s.units for s in sigs),
    )


def _read_with_wfdb(base: str, header: Header) -> Record:
    """Reference path: wfdb's reader, for the formats the fast path does not cover."""
    import wfdb  # imported here: it pulls in pandas and costs ~0.3 s at start-up

    try:
        rec = wfdb.rdrecord(base, physical=False, return_res=64)
    except FileNotFoundError as e:
        raise RecordError(
            f"{base}: {e.filename or 'signal file'} not found; copy the signal file next to its "
            "header",
            kind="missing_file",
        ) from e
    except Exception as e:  # wfdb raises bare ValueError/IndexError on damaged files
        raise RecordError(
            f"{base}.hea: wfdb cannot read the record ({type(e).__name__}: {e}); "
            "check that the signal file is complete",
            kind="unreadable_record",
        ) from e
    if rec.e_d_signal is not None or rec.d_signal is None:
        raise RecordError(
            f"{base}.hea: multi-frequency records are not supported",
            kind="unsupported_format",
        )
    d = np.asarray(rec.d_signal)
    if d.size and (d.min() < -32768 or d.max() > 32767):
        raise RecordError(
            f"{base}.hea: samples exceed the int16 range (format {rec.fmt}); not supported",
            kind="unsupported_format",
        )
    return Record(
        path=base,
        fs=float(rec.fs),
        sig_names=tuple(rec.sig_name),
        signal=d.astype(np.int16),
        adc_gain=np.asarray(rec.adc_gain, dtype=np.float64),
        baseline=np.asarray(rec.baseline, dtype=np.int64),
        units=tuple(rec.units),
    )
