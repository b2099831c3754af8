"""Writers of hospital ECG exports from shipped PTB-XL records, for tests and benchmarks.

Each writes the record's int16 ADC values with a scale of 1 uV per unit (PTB-XL's gain is
1000 units per mV), so the file holds exactly the values of the WFDB record and its score must
equal the WFDB score.  Formats: DICOM 12-lead waveform (with a median-beat group the reader
must ignore), HL7 aECG, GE MUSE XML (12 or the usual 8 leads), Philips XML (uncompressed, with
Philips's limb-lead residual encoding), EDF+.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from common.records import read_record

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def load(hea: Path) -> tuple[np.ndarray, float]:
    """The record's ADC values (int16, ``(n, 12)``, 1 unit = 1 uV) and rate."""
    rec = read_record(Path(hea).with_suffix(""))
    mv = rec.to_millivolts()
    adc = np.rint(mv * 1000.0).astype(np.int16)
    assert np.allclose(adc / 1000.0, mv, atol=1e-6), "PTB-XL records are 1 uV per unit"
    return adc, float(rec.fs)


def write_dicom(hea: Path, out: Path) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    adc, fs = load(hea)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "ECG"
    ds.PatientID = "test"

    def group(label: str, data: np.ndarray):
        g = Dataset()
        g.MultiplexGroupLabel = label
        g.WaveformOriginality = "ORIGINAL"
        g.NumberOfWaveformChannels = data.shape[1]
        g.NumberOfWaveformSamples = data.shape[0]
        g.SamplingFrequency = fs
        g.WaveformBitsAllocated = 16
        g.WaveformSampleInterpretation = "SS"
        channels = []
        for lead in LEADS:
            ch = Dataset()
            src = Dataset()
            src.CodeValue = f"lead-{lead}"
            src.CodingSchemeDesignator = "SCPECG"
            src.CodeMeaning = f"Lead {lead}"
            ch.ChannelSourceSequence = [src]
            ch.ChannelSensitivity = "1"
            unit = Dataset()
            unit.CodeValue = "uV"
            unit.CodingSchemeDesignator = "UCUM"
            unit.CodeMeaning = "microvolt"
            ch.ChannelSensitivityUnitsSequence = [unit]
            ch.ChannelSensitivityCorrectionFactor = "1"
            ch.ChannelBaseline = "0"
            ch.ChannelSampleSkew = "0"
            ch.WaveformBitsStored = 16
            channels.append(ch)
        g.ChannelDefinitionSequence = channels
        g.WaveformData = np.ascontiguousarray(data, dtype="<i2").tobytes()
        return g

    median = adc[: int(fs)] // 2  # a different signal: must never be the one scored
    ds.WaveformSequence = [group("MEDIAN BEAT", median), group("RHYTHM", adc)]
    ds.save_as(out, enforce_file_format=True)
    return out


def write_aecg(hea: Path, out: Path, leads: list[str] = LEADS, unit: str = "uV",
               scale: float = 1.0) -> Path:
    adc, fs = load(hea)
    seqs = [f"""<component><sequence>
<code code="TIME_ABSOLUTE" codeSystem="2.16.840.1.113883.5.4"/>
<value xsi:type="GLIST_TS"><head value="20200101120000.000"/>
<increment value="{1 / fs!r}" unit="s"/></value></sequence></component>"""]
    for k, lead in enumerate(LEADS):
        if lead not in leads:
            continue
        digits = " ".join(str(int(v)) for v in np.rint(adc[:, k] / scale))
        seqs.append(f"""<component><sequence>
<code code="MDC_ECG_LEAD_{lead.upper()}" codeSystem="2.16.840.1.113883.6.24"/>
<value xsi:type="SLIST_PQ"><origin value="0" unit="{unit}"/><scale value="{scale}" unit="{unit}"/>
<digits>{digits}</digits></value></sequence></component>""")
    median = """<derivedSeries><code code="REPRESENTATIVE_BEAT"/><component><sequenceSet>
<component><sequence><code code="MDC_ECG_LEAD_I"/><value xsi:type="SLIST_PQ"><origin value="0"
unit="uV"/><scale value="1" unit="uV"/><digits>1 2 3</digits></value></sequence></component>
</sequenceSet></component></derivedSeries>"""
    out.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<id root="test"/><code code="93000" codeSystem="2.16.840.1.113883.6.12"/>
<component><series><code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>
<component><sequenceSet>{''.join(seqs)}</sequenceSet></component>
{median}
</series></component>
</AnnotatedECG>
""")
    return out


def write_muse(hea: Path, out: Path, leads: list[str] = LEADS, per_bit: float = 1.0,
               units: str = "MICROVOLTS") -> Path:
    adc, fs = load(hea)
    parts = []
    for k, lead in enumerate(LEADS):
        if lead not in leads:
            continue
        data = np.rint(adc[:, k] / per_bit).astype("<i2").tobytes()
        parts.append(f"""<LeadData><LeadByteCountTotal>{len(data)}</LeadByteCountTotal>
<LeadTimeOffset>0</LeadTimeOffset><LeadSampleCountTotal>{len(adc)}</LeadSampleCountTotal>
<LeadAmplitudeUnitsPerBit>{per_bit}</LeadAmplitudeUnitsPerBit>
<LeadAmplitudeUnits>{units}</LeadAmplitudeUnits><LeadHighLimit>32767</LeadHighLimit>
<LeadID>{lead}</LeadID><WaveFormData>{base64.b64encode(data).decode()}</WaveFormData>
</LeadData>""")
    median = np.zeros(600, "<i2").tobytes()
    out.write_text(f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<RestingECG><MuseInfo><MuseVersion>9.0.9.18167</MuseVersion></MuseInfo>
<Waveform><WaveformType>Median</WaveformType><SampleBase>{int(fs)}</SampleBase>
<SampleExponent>0</SampleExponent><LeadData><LeadByteCountTotal>1200</LeadByteCountTotal>
<LeadSampleCountTotal>600</LeadSampleCountTotal><LeadAmplitudeUnitsPerBit>1</LeadAmplitudeUnitsPerBit>
<LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits><LeadID>I</LeadID>
<WaveFormData>{base64.b64encode(median).decode()}</WaveFormData></LeadData></Waveform>
<Waveform><WaveformType>Rhythm</WaveformType><WaveformStartTime>0</WaveformStartTime>
<NumberofLeads>{len(parts)}</NumberofLeads><SampleType>CONTINUOUS_SAMPLES</SampleType>
<SampleBase>{int(fs)}</SampleBase><SampleExponent>0</SampleExponent>
{''.join(parts)}</Waveform></RestingECG>
""")
    return out


def write_philips(hea: Path, out: Path) -> Path:
    """Philips XML 1.04, uncompressed.  Philips stores III, aVR, aVL and aVF as residuals of
    what I and II predict (the sierraecg library reconstructs them); written here by the
    inverse of that reconstruction, so reading gives back the record's own values."""
    adc, fs = load(hea)
    x = adc.astype(np.int64)
    i, ii, iii, avr, avl, avf = (x[:, k] for k in range(6))
    stored = x.copy()
    stored[:, 2] = ii - i - iii
    stored[:, 3] = -avr - np.floor_divide(i + ii, 2)
    stored[:, 4] = np.floor_divide(i - iii, 2) - avl
    stored[:, 5] = np.floor_divide(ii + iii, 2) - avf
    data = np.ascontiguousarray(stored.T, dtype="<i2").tobytes()  # lead after lead
    duration_ms = int(round(len(adc) / fs * 1000))
    out.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<restingecgdata><documentinfo><documentname>test</documentname>
<documenttype>PhilipsECG</documenttype><documentversion>1.04</documentversion></documentinfo>
<dataacquisition><signalcharacteristics><samplingrate>{int(fs)}</samplingrate>
<resolution>1</resolution><acquisitiontype>STD-12</acquisitiontype>
<numberchannelsallocated>12</numberchannelsallocated></signalcharacteristics></dataacquisition>
<waveforms><parsedwaveforms dataencoding="Base64" compression="Uncompressed" numberofleads="12"
leadlabels="{' '.join(LEADS)}" durationperchannel="{duration_ms}" samplespersecond="{int(fs)}"
resolution="1">{base64.b64encode(data).decode()}</parsedwaveforms></waveforms>
</restingecgdata>
""")
    return out


def write_edf(hea: Path, out: Path) -> Path:
    import pyedflib

    adc, fs = load(hea)
    with pyedflib.EdfWriter(str(out), len(LEADS), file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders([{"label": f"ECG {lead}", "dimension": "mV", "sample_frequency": fs,
                             "physical_min": -32.768, "physical_max": 32.767,
                             "digital_min": -32768, "digital_max": 32767,
                             "transducer": "", "prefilter": ""} for lead in LEADS])
        w.writeSamples([np.ascontiguousarray(adc[:, k], dtype=np.int32) for k in
                        range(len(LEADS))], digital=True)
    return out


WRITERS = {"dicom": (write_dicom, ".dcm"), "aecg": (write_aecg, ".xml"),
           "muse": (write_muse, ".xml"), "philips": (write_philips, ".xml"),
           "edf": (write_edf, ".edf")}
