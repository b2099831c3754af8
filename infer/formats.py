"""Readers for what hospital ECG systems export: DICOM 12-lead waveforms, HL7 aECG, GE MUSE XML,
Philips SierraECG XML and EDF/EDF+.

Each reader returns the scorer's :class:`infer.readers.RawInput` (leads by name, rate, mV), so
everything after reading (lead mapping through the alias table, the quality gate, resampling,
windows) is the path WFDB and CSV records take.  The format is told by content
(:func:`sniff`: DICOM's ``DICM`` preamble, EDF's fixed header, the XML root element), not by
the file name.  Units always come from the file; a file whose units are missing or not a
voltage is an error naming the field.

Libraries (the ``formats`` extra, ``pip install 'mi-screen[formats]'``): pydicom for DICOM,
pyedflib for EDF, sierraecg for Philips XLI decompression.  HL7 aECG and GE MUSE XML are read
with the standard library (``xml.etree``; no maintained reader exists for either).  Median
(representative) beats are ignored everywhere: the model scores the rhythm strip.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import xml.etree.ElementTree as ET

import numpy as np

from infer.readers import InputError, NotAnEcgError, RawInput
from schemas import unit_scale_to_mv

#: what :func:`sniff` returns, and the reader of each
FORMATS = ("dicom", "aecg", "muse", "philips", "edf")
#: file name endings discovery lists as candidates (content decides the format)
EXTENSIONS = {"dcm": "auto", "dicom": "auto", "xml": "auto", "edf": "auto"}
#: largest export read (a 24 h 12-lead DICOM at 500 Hz is about 1 GB)
MAX_BYTES = 1 << 30

_XML_ROOTS = {"AnnotatedECG": "aecg", "RestingECG": "muse", "restingecgdata": "philips"}
_UNIT_WORDS = {"MICROVOLTS": "uV", "MILLIVOLTS": "mV", "VOLTS": "V", "UV": "uV", "MV": "mV",
               "µV": "uV", "μV": "uV"}


class FormatExtraMissing(InputError):
    """The library for a format is not installed."""

    kind = "extra_missing"


def _need(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise FormatExtraMissing(
            f"reading {what} needs {module.split('.')[0]}: pip install 'mi-screen[formats]'"
        ) from e


def _units_to_mv(unit: str | None, path: str, where: str) -> float:
    """Scale from a file's unit string to mV; an error naming the field when it is not one."""
    text = (unit or "").strip()
    scale = unit_scale_to_mv(_UNIT_WORDS.get(text.upper(), _UNIT_WORDS.get(text, text)))
    if scale is None:
        raise InputError(f"{path}: {where} gives units {unit!r}, not a voltage (uV, mV, V); "
                         "re-export the ECG with its amplitude units", kind="bad_units")
    return scale


def _xml_root(head: bytes) -> str | None:
    """The local name of the first element of an XML document's first bytes (UTF-8 or UTF-16),
    or None."""
    for enc in ("utf-8", "utf-16"):
        try:
            text = head.decode(enc, errors="ignore")
        except LookupError:  # pragma: no cover
            continue
        for m in re.finditer(r"<([A-Za-z_][\w.:-]*)", text):
            return m.group(1).split(":")[-1]
    return None


def sniff(path: str) -> str | None:
    """The export format of ``path`` by content (one of :data:`FORMATS`), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if len(head) >= 256 and head[:8] == b"0       " and head[184:192].strip().isdigit():
        return "edf"
    body = head.lstrip(b"\xef\xbb\xbf\xff\xfe\xfe\xff \t\r\n\x00")
    if body.startswith(b"<"):
        return _XML_ROOTS.get(_xml_root(head) or "")
    return None


def describe(path: str) -> str:
    """Why a candidate file is not an export this scorer reads (for its skipped row)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    body = head.lstrip(b"\xef\xbb\xbf\xff\xfe\xfe\xff \t\r\n\x00")
    if body.startswith(b"<"):
        root = _xml_root(head)
        return (f"an XML file with root <{root}>, not an ECG export this scorer reads (HL7 "
                "aECG <AnnotatedECG>, GE MUSE <RestingECG>, Philips <restingecgdata>)")
    return ("not an ECG export this scorer reads (DICOM waveform, HL7 aECG, GE MUSE XML, "
            "Philips XML, EDF, WFDB, CSV)")


def read_export(path: str) -> RawInput:
    """Read any supported export, dispatching on :func:`sniff`."""
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise InputError(f"{path}: {size / 2**30:.1f} GiB, larger than the 1 GiB this scorer "
                         "reads from one export; split the recording", kind="too_large")
    fmt = sniff(path)
    if fmt is None:
        raise NotAnEcgError(f"{path}: {describe(path)}")
    return _READERS[fmt](path)


# ----------------------------------------------------------------------------- DICOM


def _dicom_lead(channel) -> str:
    """A DICOM channel's lead name: the code meaning without 'Lead' and parentheses
    ('Lead I (Einthoven)' -> 'I', 'Lead aVR' -> 'aVR')."""
    try:
        source = channel.ChannelSourceSequence[0]
        text = str(source.CodeMeaning)
    except (AttributeError, IndexError):
        return str(getattr(channel, "ChannelLabel", "") or "?")
    text = re.sub(r"\(.*?\)", "", text).strip()
    return re.sub(r"^lead\s+", "", text, flags=re.I).strip()


def read_dicom(path: str) -> RawInput:
    """The rhythm waveform of a DICOM ECG (12-lead, general or ambulatory Waveform Storage)."""
    pydicom = _need("pydicom", "DICOM")
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:  # noqa: BLE001  pydicom raises many types for damaged files
        raise InputError(f"{path}: not a readable DICOM file ({type(e).__name__}: "
                         f"{str(e)[:200]}); re-export it", kind="bad_dicom") from e
    groups = getattr(ds, "WaveformSequence", None)
    if not groups:
        raise NotAnEcgError(f"{path}: a DICOM file without waveforms (SOP class "
                            f"{getattr(ds, 'SOPClassUID', '?')}), not an ECG")
    labels = [str(getattr(g, "MultiplexGroupLabel", "")).upper() for g in groups]
    rhythm = [i for i, lab in enumerate(labels) if "MEDIAN" not in lab and "BEAT" not in lab]
    if not rhythm:
        raise InputError(f"{path}: only median-beat waveforms ({', '.join(labels)}); export "
                         "the rhythm strip", kind="no_rhythm")
    index = next((i for i in rhythm if "RHYTHM" in labels[i]), rhythm[0])
    group = groups[index]
    try:
        fs = float(group.SamplingFrequency)
        n_channels = int(group.NumberOfWaveformChannels)
        n_samples = int(group.NumberOfWaveformSamples)
        channels = list(group.ChannelDefinitionSequence)
        data = ds.waveform_array(index)  # sensitivity, correction and baseline applied
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: the rhythm waveform cannot be decoded ({type(e).__name__}: "
                         f"{str(e)[:200]}); re-export it", kind="bad_dicom") from e
    if data.shape != (n_samples, n_channels) or len(channels) != n_channels:
        raise InputError(f"{path}: the waveform holds {data.shape[0]} x {data.shape[1]} "
                         f"samples, the header says {n_samples} x {n_channels}",
                         kind="bad_shape")
    scales = []
    for k, ch in enumerate(channels):
        try:
            unit = ch.ChannelSensitivityUnitsSequence[0].CodeValue
        except (AttributeError, IndexError):
            unit = None
        scales.append(_units_to_mv(unit, path, f"channel {k + 1}'s sensitivity"))
    signal = (data * np.asarray(scales)).astype(np.float32)
    return RawInput(path=path, format="dicom", fs=fs, signal=signal,
                    names=[_dicom_lead(ch) for ch in channels],
                    notes=[f"DICOM waveform '{labels[index] or 'rhythm'}'"])


# ----------------------------------------------------------------------------- HL7 aECG


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_xml(path: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise InputError(f"{path}: the XML is damaged ({e}); re-export the ECG",
                         kind="bad_xml") from e


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _find(elem: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in elem.iter() if _local(c.tag) == name), None)


def _text(elem: ET.Element, name: str, default: str | None = "") -> str | None:
    """Text of the first descendant element called ``name`` (``default`` when absent)."""
    found = _find(elem, name)
    return default if found is None else (found.text or "")


def _number(text: str | None, path: str, what: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: {what} is {text!r}, not a number", kind="bad_xml") from e
    if not np.isfinite(value):
        raise InputError(f"{path}: {what} is {text!r}", kind="bad_xml")
    return value


def read_aecg(path: str) -> RawInput:
    """The rhythm series of an HL7 aECG (the FDA's annotated ECG XML): per lead
    ``origin + scale * digits``, in the units of ``scale``; the sampling interval from the time
    sequence's ``increment``.  ``derivedSeries`` (representative beats) are ignored."""
    root = _parse_xml(path)
    series = _find(root, "series")
    if series is None:
        raise InputError(f"{path}: an aECG without a <series> (rhythm) element",
                         kind="no_rhythm")
    # series/component/sequenceSet/component/sequence: the rhythm; derivedSeries (under
    # series/derivation) hold representative beats and are not read
    sequences = [seq for comp in series if _local(comp.tag) == "component"
                 for sset in comp if _local(sset.tag) == "sequenceSet"
                 for comp2 in sset if _local(comp2.tag) == "component"
                 for seq in comp2 if _local(seq.tag) == "sequence"]
    fs, names, leads = None, [], []
    for seq in sequences:
        code = _child(seq, "code")
        value = _child(seq, "value")
        if code is None or value is None:
            continue
        name = code.get("code", "")
        if name.startswith("TIME_"):
            inc = _child(value, "increment")
            if inc is None:
                continue
            step = _number(inc.get("value"), path, "the time increment")
            unit = (inc.get("unit") or "s").lower()
            step *= {"s": 1.0, "ms": 1e-3, "us": 1e-6}.get(unit, np.nan)
            if not step > 0:
                raise InputError(f"{path}: time increment {inc.get('value')} {inc.get('unit')} "
                                 "is not a positive duration", kind="bad_xml")
            fs = 1.0 / step
            continue
        digits = _child(value, "digits")
        if digits is None:
            continue
        scale = _child(value, "scale")
        origin = _child(value, "origin")
        lead = re.sub(r"^MDC_ECG_LEAD_", "", name)
        if scale is None:
            raise InputError(f"{path}: lead {lead} has no <scale>; its units are unknown",
                             kind="bad_units")
        to_mv = _units_to_mv(scale.get("unit"), path, f"lead {lead}'s <scale>")
        s = _number(scale.get("value"), path, f"lead {lead}'s scale")
        o = 0.0
        if origin is not None:
            o = _number(origin.get("value"), path, f"lead {lead}'s origin")
            o *= _units_to_mv(origin.get("unit") or scale.get("unit"), path,
                              f"lead {lead}'s <origin>") / to_mv
        try:
            d = np.array((digits.text or "").split(), dtype=np.float64)
        except ValueError as e:
            raise InputError(f"{path}: lead {lead}'s digits hold text that is not a number",
                             kind="bad_xml") from e
        names.append(lead)
        leads.append(((o + s * d) * to_mv).astype(np.float32))
    if fs is None:
        raise InputError(f"{path}: no time sequence with an increment; the sampling rate is "
                         "unknown", kind="no_rate")
    return _stack(path, "aecg", fs, names, leads)


def _stack(path: str, fmt: str, fs: float, names: list[str], leads: list[np.ndarray],
           notes: list[str] | None = None) -> RawInput:
    if not leads:
        raise InputError(f"{path}: no lead waveforms found", kind="missing_leads")
    lengths = {len(x) for x in leads}
    if len(lengths) != 1:
        detail = ", ".join(f"{n} {len(x)}" for n, x in zip(names, leads, strict=True))
        raise InputError(f"{path}: leads hold different numbers of samples ({detail}); the "
                         "file is damaged", kind="bad_shape")
    return RawInput(path=path, format=fmt, fs=fs, signal=np.stack(leads, axis=1),
                    names=names, notes=notes or [])


# ----------------------------------------------------------------------------- GE MUSE


def _derive_limb_leads(names: list[str], leads: list[np.ndarray]) -> list[str]:
    """GE MUSE stores I, II and V1-V6; III, aVR, aVL and aVF follow from I and II (Einthoven,
    Goldberger).  Appends the missing ones in place; returns their names."""
    have = {n.upper(): x for n, x in zip(names, leads, strict=True)}
    if "I" not in have or "II" not in have:
        return []
    i, ii = have["I"], have["II"]
    derived = {"III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}
    added = []
    for name, x in derived.items():
        if name.upper() not in have:
            names.append(name)
            leads.append(x.astype(np.float32))
            added.append(name)
    return added


def read_muse(path: str) -> RawInput:
    """The rhythm waveform of a GE MUSE XML export: per lead base64 little-endian int16 times
    ``LeadAmplitudeUnitsPerBit`` in ``LeadAmplitudeUnits``; missing limb leads derived."""
    root = _parse_xml(path)
    waves = [w for w in root.iter() if _local(w.tag) == "Waveform"]
    kinds = [_text(w, "WaveformType").strip() or "?" for w in waves]
    rhythm = [w for w, kind in zip(waves, kinds, strict=True) if kind.lower() == "rhythm"]
    if not rhythm:
        raise InputError(f"{path}: no Rhythm waveform (found: {', '.join(kinds) or 'none'}); "
                         "export the rhythm strip", kind="no_rhythm")
    wave = rhythm[0]
    base = _number(_text(wave, "SampleBase", None), path, "SampleBase")
    exponent = _number(_text(wave, "SampleExponent", "0") or "0", path, "SampleExponent")
    fs = base * 10.0 ** exponent
    names, leads = [], []
    for lead in wave.iter():
        if _local(lead.tag) != "LeadData":
            continue
        name = _text(lead, "LeadID").strip()
        where = f"lead {name or '?'}"
        data = _find(lead, "WaveFormData")
        if data is None or not (data.text or "").strip():
            raise InputError(f"{path}: {where} has no WaveFormData", kind="missing_leads")
        try:
            raw = base64.b64decode("".join(data.text.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise InputError(f"{path}: {where}'s WaveFormData is not valid base64 ({e}); the "
                             "file is damaged", kind="bad_base64") from e
        n = int(_number(_text(lead, "LeadSampleCountTotal", None), path,
                        f"{where}'s LeadSampleCountTotal"))
        if len(raw) != 2 * n:
            raise InputError(f"{path}: {where} holds {len(raw)} bytes, LeadSampleCountTotal "
                             f"says {n} samples ({2 * n} bytes); the file is damaged",
                             kind="bad_shape")
        per_bit = _number(_text(lead, "LeadAmplitudeUnitsPerBit", None), path,
                          f"{where}'s LeadAmplitudeUnitsPerBit")
        unit = _text(lead, "LeadAmplitudeUnits", None)
        to_mv = _units_to_mv(unit, path, f"{where}'s LeadAmplitudeUnits")
        names.append(name)
        leads.append((np.frombuffer(raw, dtype="<i2") * (per_bit * to_mv)).astype(np.float32))
    notes = ["GE MUSE rhythm waveform"]
    if leads and len({len(x) for x in leads}) == 1:
        added = _derive_limb_leads(names, leads)
        if added:
            notes.append(f"{', '.join(added)} derived from I and II")
    return _stack(path, "muse", fs, names, leads, notes)


# ----------------------------------------------------------------------------- Philips


def read_philips(path: str) -> RawInput:
    """A Philips SierraECG / PhilipsECG XML (1.03-1.04.02): the rhythm leads decoded by the
    sierraecg library (XLI decompression, lead reconstruction), scaled by the file's
    ``signalcharacteristics/resolution`` (``signalresolution`` in 1.03) in uV per bit."""
    sierraecg = _need("sierraecg", "Philips XML")
    root = _parse_xml(path)
    chars = _find(root, "signalcharacteristics")
    # 1.04: <resolution>; 1.03: <signalresolution>; both in uV per bit
    resolution = None
    if chars is not None:
        resolution = _find(chars, "resolution")
        if resolution is None:
            resolution = _find(chars, "signalresolution")
    if resolution is None:
        raise InputError(f"{path}: no signalcharacteristics/resolution: the amplitude units "
                         "are unknown", kind="bad_units")
    per_bit = _number(resolution.text, path, "signalcharacteristics/resolution")
    if not per_bit > 0:
        raise InputError(f"{path}: resolution {resolution.text!r} uV per bit is not positive",
                         kind="bad_units")
    waves = _find(root, "parsedwaveforms")
    if waves is None:
        raise InputError(f"{path}: no parsedwaveforms element (no rhythm data)",
                         kind="no_rhythm")
    method = waves.get("compressmethod", waves.get("compression", "Uncompressed"))
    try:
        if method == "Uncompressed":
            # the library cannot reconstruct in place from a read-only buffer: decoded here
            names, samples, fs, duration = _philips_uncompressed(root, waves, path)
            doc = f"{_text(root, 'documenttype', '?')} {_text(root, 'documentversion', '?')}"
        else:
            ecg = sierraecg.read_file(path)
            names = [lead.label for lead in ecg.leads]
            samples = [np.asarray(lead.samples) for lead in ecg.leads]
            fs = float(ecg.leads[0].sampling_freq) if ecg.leads else 0.0
            duration = ecg.leads[0].duration if ecg.leads else 0
            doc = f"{ecg.doc_type} {ecg.doc_ver}"
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001  the library raises its own and stdlib types
        raise InputError(f"{path}: the Philips waveform cannot be decoded ({type(e).__name__}: "
                         f"{str(e)[:200]}); re-export it", kind="bad_philips") from e
    if not fs > 0:
        raise InputError(f"{path}: sampling rate {fs} is not positive", kind="no_rate")
    leads = [np.asarray(x, dtype=np.float32) * (per_bit * 1e-3) for x in samples]
    expected = int(round(duration * fs / 1000.0))
    short = [n for n, x in zip(names, leads, strict=True) if len(x) < expected]
    if short:
        raise InputError(f"{path}: leads {', '.join(short)} hold fewer samples than "
                         f"durationperchannel says ({expected}); the file is damaged",
                         kind="bad_shape")
    leads = [x[:expected] for x in leads]
    raw = _stack(path, "philips", fs, names, leads, [f"Philips {doc}"])
    # Philips strips end with a calibration pulse (1 mV on every lead at once) after the
    # ECG: every lead equal, sample after sample.  It is not ECG; it is cut off.
    same = np.all(raw.signal == raw.signal[:, :1], axis=1)
    tail = len(same) - (np.flatnonzero(~same)[-1] + 1 if (~same).any() else 0)
    if tail >= 0.1 * fs and tail < len(same):
        raw.signal = raw.signal[: len(same) - tail]
        raw.notes.append(f"last {tail / fs:.2f} s (calibration pulse) cut off")
    return raw


def _philips_uncompressed(root: ET.Element, waves: ET.Element, path: str):
    """Leads of an uncompressed Philips file: base64 int16, lead after lead, with III, aVR,
    aVL and aVF stored as residuals, reconstructed as the sierraecg library does for every
    Philips file."""
    fs = _number(waves.get("samplespersecond") or _text(root, "samplingrate", None), path,
                 "the sampling rate")
    duration = _number(waves.get("durationperchannel"), path, "durationperchannel")
    names = (waves.get("leadlabels") or "").split()
    if not names:
        raise InputError(f"{path}: parsedwaveforms names no leads (leadlabels)",
                         kind="missing_leads")
    try:
        raw = base64.b64decode("".join((waves.text or "").split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"{path}: the waveform is not valid base64 ({e}); the file is "
                         "damaged", kind="bad_base64") from e
    n = int(round(duration * fs / 1000.0))
    if len(raw) < 2 * n * len(names):
        raise InputError(f"{path}: {len(raw)} bytes of waveform, {len(names)} leads of {n} "
                         f"samples need {2 * n * len(names)}; the file is damaged",
                         kind="bad_shape")
    x = np.frombuffer(raw[: 2 * n * len(names)], dtype="<i2").reshape(len(names), n)
    x = x.astype(np.int64)
    if len(names) >= 6:
        i, ii = x[0], x[1]
        x[2] = ii - i - x[2]
        x[3] = -x[3] - np.floor_divide(i + ii, 2)
        x[4] = np.floor_divide(i - x[2], 2) - x[4]
        x[5] = np.floor_divide(ii + x[2], 2) - x[5]
    return names, list(x), fs, duration


# ----------------------------------------------------------------------------- EDF


def read_edf(path: str) -> RawInput:
    """An EDF or EDF+ recording: every signal's physical values (the file's digital-to-
    physical mapping) in its physical dimension; annotation channels are skipped; all ECG
    signals must share one rate."""
    pyedflib = _need("pyedflib", "EDF")
    try:
        f = pyedflib.EdfReader(path)
    except Exception as e:  # noqa: BLE001  (OSError with the library's own message)
        raise InputError(f"{path}: not a readable EDF file ({str(e)[:200]}); re-export it",
                         kind="bad_edf") from e
    try:
        names, leads, rates = [], [], set()
        for k in range(f.signals_in_file):
            label = f.getLabel(k).strip()
            if label.upper().startswith("EDF ANNOTATIONS"):
                continue
            unit = f.getPhysicalDimension(k).strip()
            name = re.sub(r"^(ECG|EKG)\s+", "", label, flags=re.I).strip()
            to_mv = _units_to_mv(unit, path, f"signal {label!r}'s physical dimension")
            names.append(name)
            leads.append((f.readSignal(k) * to_mv).astype(np.float32))
            rates.add(float(f.getSampleFrequency(k)))
    finally:
        f.close()
    if len(rates) > 1:
        raise InputError(f"{path}: signals at several rates ({sorted(rates)} Hz); export the "
                         "ECG leads at one rate", kind="multi_rate")
    return _stack(path, "edf", rates.pop() if rates else 0.0, names, leads)


_READERS = {"dicom": read_dicom, "aecg": read_aecg, "muse": read_muse, "philips": read_philips,
            "edf": read_edf}
