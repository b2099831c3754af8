"""Signal conventions and table schemas shared by ingest, train and infer."""

from __future__ import annotations

import enum
import functools
import re

import pyarrow as pa

#: Standard 12-lead order used everywhere (PTB-XL's header order).  Every array the
#: pipeline hands to a model is ``(n_samples, 12)`` in exactly this order.
LEADS: tuple[str, ...] = (
    "I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
#: Physical unit of every float signal the pipeline produces or a model consumes.
UNITS = "mV"
#: PTB-XL stores format-16 samples at 1000 ADC units per mV (1 uV resolution).
ADC_GAIN = 1000.0
#: Sampling rates PTB-XL ships (Hz).
RATES: tuple[int, ...] = (100, 500)
#: Length of a PTB-XL record in seconds; models take windows of this length.
RECORD_SECONDS = 10

_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}

# Names people actually use for the standard leads (matched case-insensitively after
# dropping "lead", spaces, underscores and dashes).  MLII is the Holter name of lead II;
# C1..C6 is the European name of the chest leads.
_LEAD_ALIASES = {
    **{lead.lower(): lead for lead in LEADS},
    "mlii": "II",
    "mli": "I",
    "mliii": "III",
    **{f"c{i}": f"V{i}" for i in range(1, 7)},
}


def lead_sign(name: str) -> int:
    """-1 for an inverted lead label such as ``-aVR`` (Cabrera displays), else 1."""
    return -1 if str(name).strip()[:1] in ("-", "\u2212") else 1


@functools.lru_cache(maxsize=1024)
def canonical_lead(name: str) -> str | None:
    """Return the standard name in :data:`LEADS` for a lead label, or None if unknown.

    An inverted label (``-aVR``) names the same lead; :func:`lead_sign` says it is inverted.

    >>> [canonical_lead(n) for n in ("aVR", "MLII", "lead v5", "-aVR", "x")]
    ['AVR', 'II', 'V5', 'AVR', None]
    """
    key = str(name).strip()
    if lead_sign(key) < 0:
        key = key[1:]
    key = re.sub(r"[\s_\-]+", "", key.lower())
    if key.startswith("lead"):
        key = key[4:]
    return _LEAD_ALIASES.get(key)


def unit_scale_to_mv(units: str) -> float | None:
    """Factor that converts a signal in ``units`` to millivolts, or None if not a voltage."""
    return _UNIT_SCALE.get(str(units).strip().lower())


def _list(item: pa.DataType) -> pa.DataType:
    # Parquet's compliant nested naming ("element"), so a schema read back from a file equals
    # the declared one exactly.
    return pa.list_(pa.field("element", item))


#: Per-record measurements (``signals.measure.ecg_measure``), as (column, Arrow type, unit):
#: the reference tutorial's features on lead II.  In the ingest dataset with
#: ``ingest ptbxl --measurements`` and in the results with ``infer score --measurements``;
#: null otherwise, and NaN-free (null) where a wave was not found.
MEASUREMENT_FIELDS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("n_beats", pa.float32(), "beats"),
    ("hr_bpm", pa.float32(), "1/min"),
    ("rr_mean_ms", pa.float32(), "ms"),
    ("rr_sd_ms", pa.float32(), "ms"),
    ("qrs_ms", pa.float32(), "ms"),
    *((f"{w}_amp_{s}_mv", pa.float32(), "mV") for w in ("r", "t")
      for s in ("mean", "median", "sd", "sum")),
)


#: The MI criteria of a scored record (``signals.criteria``, on the median beat at the model's
#: rate; ST at J+60 ms against the PR baseline): in the results whenever the model scores
#: them (a ``criteria`` model) or with ``infer score --measurements``; null otherwise.
CRITERIA_FIELDS: tuple[pa.Field, ...] = (
    pa.field("mi_criteria", pa.string()),  # the criteria met in 2+ contiguous leads, in words
    pa.field("q_leads", pa.string()),  # leads with a pathological Q wave (or QS complex)
    pa.field("st_elevation_leads", pa.string()),
    pa.field("st_depression_leads", pa.string()),
    pa.field("t_inversion_leads", pa.string()),
    pa.field("st_max_mv", pa.float32(), metadata={"units": "mV"}),  # highest ST, not aVR
    pa.field("st_min_mv", pa.float32(), metadata={"units": "mV"}),  # lowest ST, not aVR
    pa.field("median_qrs_ms", pa.float32(), metadata={"units": "ms"}),
    pa.field("poor_r_progression", pa.bool_()),  # R in V3 <= 0.3 mV
    # a wide QRS of left-bundle-branch-block shape (LBBB or ventricular pacing): the criteria
    # do not apply, and the record's band is "borderline" whatever its probability
    pa.field("lbbb_pattern", pa.bool_()),
)


def _measurement_fields() -> list[pa.Field]:
    return [pa.field(name, t, metadata={"units": unit}) for name, t, unit in MEASUREMENT_FIELDS]


#: Quality verdict columns (``signals.quality``): ``quality`` good / poor / unusable and
#: ``quality_issues`` (each finding as ``check in LEADS (detail)``, worst first).
QUALITY_FIELDS = [pa.field("quality", pa.string()), pa.field("quality_issues", pa.string())]


#: Partition key of the record dataset (hive style: ``strat_fold=K/``).
PARTITION_SCHEMA = pa.schema([pa.field("strat_fold", pa.int8())])

#: One row per converted PTB-XL record.  Columns:
#:
#: - identifiers: ``ecg_id``, ``patient_id``, ``filename`` (record path relative to the corpus root)
#: - patient and recording metadata, as in ``ptbxl_database.csv``: ``age`` (PTB-XL codes ages over
#:   89 as 300), ``sex`` (0 male, 1 female), ``height`` (cm), ``weight`` (kg), ``nurse``, ``site``,
#:   ``device``, ``recording_date``, ``report``, ``heart_axis``, ``infarction_stadium1/2``,
#:   ``validated_by``, ``second_opinion``, ``initial_autogenerated_report``, ``validated_by_human``,
#:   and the signal-quality notes ``baseline_drift``, ``static_noise``, ``burst_noise``,
#:   ``electrodes_problems``, ``extra_beats``, ``pacemaker``
#: - labels derived from ``scp_statements.csv``: ``scp_codes`` (code, likelihood in %),
#:   ``diagnostic_superclasses`` (sorted ``diagnostic_class`` values of the diagnostic codes),
#:   ``mi`` (any code whose ``diagnostic_class`` is MI) and ``mi_codes`` (those codes, sorted)
#: - ``quality``, ``quality_issues``: the signal-quality gate's verdict (QUALITY_FIELDS), and the
#:   MEASUREMENT_FIELDS (null unless ``ingest ptbxl --measurements``)
#: - the signal, lossless: ``signal`` holds the int16 ADC samples of the .dat file, sample-major
#:   and lead-interleaved in :data:`LEADS` order (reshape to ``(n_samples, n_leads)``);
#:   millivolts = (signal - adc_baseline) / adc_gain
#: - ``strat_fold`` is not stored in the files: it is the hive partition key (PARTITION_SCHEMA).
RECORD_SCHEMA = pa.schema(
    [
        pa.field("ecg_id", pa.int32(), nullable=False),
        pa.field("patient_id", pa.int64(), nullable=False),
        pa.field("filename", pa.string(), nullable=False),
        pa.field("age", pa.float32()),
        pa.field("sex", pa.int8()),
        pa.field("height", pa.float32()),
        pa.field("weight", pa.float32()),
        pa.field("nurse", pa.float32()),
        pa.field("site", pa.float32()),
        pa.field("device", pa.string()),
        pa.field("recording_date", pa.timestamp("ms")),
        pa.field("report", pa.string()),
        pa.field("heart_axis", pa.string()),
        pa.field("infarction_stadium1", pa.string()),
        pa.field("infarction_stadium2", pa.string()),
        pa.field("validated_by", pa.float32()),
        pa.field("second_opinion", pa.bool_()),
        pa.field("initial_autogenerated_report", pa.bool_()),
        pa.field("validated_by_human", pa.bool_()),
        pa.field("baseline_drift", pa.string()),
        pa.field("static_noise", pa.string()),
        pa.field("burst_noise", pa.string()),
        pa.field("electrodes_problems", pa.string()),
        pa.field("extra_beats", pa.string()),
        pa.field("pacemaker", pa.string()),
        pa.field(
            "scp_codes",
            _list(pa.struct([("code", pa.string()), ("likelihood", pa.float32())])),
            nullable=False,
        ),
        pa.field("diagnostic_superclasses", _list(pa.string()), nullable=False),
        pa.field("mi", pa.bool_(), nullable=False),
        pa.field("mi_codes", _list(pa.string()), nullable=False),
        pa.field("fs", pa.int16(), nullable=False, metadata={"units": "Hz"}),
        pa.field("n_samples", pa.int32(), nullable=False),
        pa.field("n_leads", pa.int8(), nullable=False),
        pa.field("adc_gain", pa.float32(), nullable=False, metadata={"units": "adu/mV"}),
        pa.field("adc_baseline", pa.int32(), nullable=False, metadata={"units": "adu"}),
        *QUALITY_FIELDS,
        *_measurement_fields(),
        pa.field(
            "signal",
            _list(pa.int16()),
            nullable=False,
            metadata={"units": "adu", "layout": "sample-major, leads interleaved",
                      "leads": ",".join(LEADS)},
        ),
    ],
    metadata={"contract": "mi-screen record v2"},
)

#: One row per record (or input file) that could not be converted.  ``kind`` is a short
#: machine-readable category (see ``common.errors``); ``message`` names the file, the problem
#: and the fix.
ERRORS_SCHEMA = pa.schema(
    [
        pa.field("ecg_id", pa.int32()),
        pa.field("path", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)


class Band(enum.StrEnum):
    """Threshold band of a scored record: below the low threshold, between, or above the high."""

    NORMAL = "normal"
    BORDERLINE = "borderline"
    MI = "MI"
    ABNORMAL = "abnormal"  #: a beat model's positive band


#: How a results row's message says its band was set to borderline whatever its probability
#: (a wide QRS of left bundle branch block shape, ``signals.criteria.lbbb_like``).
REFERRED_NOTE = "referred to borderline whatever its probability"


def band_for(probability: float, low: float, high: float, positive: Band = Band.MI) -> Band:
    """Band of one probability: ``p < low`` normal, ``p >= high`` positive (MI, or abnormal for
    a beat model), otherwise borderline."""
    if probability >= high:
        return positive
    if probability < low:
        return Band.NORMAL
    return Band.BORDERLINE


#: ``infer score --explain``: per lead, how much the MI probability falls when the lead is
#: set to 0 mV (occlusion, ``infer.explain``), and the same per second of all leads.
ATTRIBUTION_FIELDS = [
    *(pa.field(f"attr_{lead}", pa.float32()) for lead in LEADS),
    pa.field("attr_seconds", pa.list_(pa.field("element", pa.float32()))),
]


#: One row per input record found by ``infer score``.  Columns:
#:
#: - ``record_id``: file stem; ``path``: the input file; ``format``: ``wfdb`` or ``csv``
#: - ``input_fs`` (Hz), ``duration_s``: as read, before resampling
#: - ``leads_found``: the input's leads mapped to :data:`LEADS`, comma separated;
#:   ``leads_filled``: leads filled with zeros (only with ``--allow-missing-leads``)
#: - ``quality``: the signal-quality gate's verdict, ``good``, ``poor`` (scored, status warning)
#:   or ``unusable`` (not scored, status error); null when the record could not be read or is
#:   too short to judge.  ``quality_issues``: each finding as ``check in LEADS (detail)``, worst
#:   first (see ``signals.quality``)
#: - ``n_windows``: model-length windows scored (their probabilities aggregated as the model's
#:   contract says)
#: - ``mi_probability`` and ``band`` (normal / borderline / MI); null when status is ``error``
#: - beat models (ECG5000): ``beat_index`` (0-based row of a beat file; one row a beat),
#:   ``abnormal_probability`` and ``band`` (normal / borderline / abnormal) per beat; with
#:   ``infer score --beats`` on 12-lead records one row a record with ``n_beats``,
#:   ``abnormal_beats`` (beats in the abnormal band) and ``abnormal_fraction``
#: - ``status``: ``ok``, ``warning`` (scored, but read the message), ``error`` (not scored) or
#:   ``skipped`` (not an input: a hidden file, a folder that cannot be read, a link loop, a
#:   pipe, a CSV that is not an ECG table); ``message``: for warnings, errors and skips what is
#:   wrong and how to fix it (at most 1000 characters); for ok rows, notes such as resampling
#:   or an assumed rate (empty when there is nothing to say)
#: - the MEASUREMENT_FIELDS (null unless ``--measurements``)
#: - the CRITERIA_FIELDS (with a measurements model or ``--measurements``; null otherwise)
#: - the ATTRIBUTION_FIELDS (null unless ``--explain``)
#: - ``page``: the record's ECG page (PNG) with ``--plots``, for MI, borderline and rejected
#:   records
#: - ``model_name``, ``model_sha256`` (of the .onnx file), ``scored_at`` (UTC)
RESULTS_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("input_fs", pa.float32(), metadata={"units": "Hz"}),
        pa.field("duration_s", pa.float32(), metadata={"units": "s"}),
        pa.field("leads_found", pa.string()),
        pa.field("leads_filled", pa.string()),
        *QUALITY_FIELDS,
        pa.field("n_windows", pa.int32()),
        pa.field("mi_probability", pa.float32()),
        pa.field("band", pa.string()),
        pa.field("beat_index", pa.int32()),
        pa.field("abnormal_probability", pa.float32()),
        pa.field("beats_scored", pa.int32()),
        pa.field("abnormal_beats", pa.int32()),
        pa.field("abnormal_fraction", pa.float32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        *_measurement_fields(),
        *CRITERIA_FIELDS,
        *ATTRIBUTION_FIELDS,
        pa.field("page", pa.string()),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ],
    metadata={"contract": "mi-screen results v5"},
)


#: Samples per ECG5000 heartbeat.
BEAT_SAMPLES = 140

#: One row per heartbeat of ``ingest ecg5000``: ``beat_id`` is the 1-based line of the input
#: file, ``class`` the ECG5000 class (1 normal; 2 R-on-T PVC, 3 PVC, 4 supraventricular or
#: ectopic, 5 unclassified; null for the two-class TensorFlow ``ecg.csv`` layout),
#: ``abnormal`` the binary label (any class but 1; the positive class, as MI is for records),
#: ``signal`` the 140 z-normalised samples.
BEATS_SCHEMA = pa.schema(
    [
        pa.field("beat_id", pa.int32(), nullable=False),
        pa.field("class", pa.int8()),
        pa.field("abnormal", pa.bool_(), nullable=False),
        pa.field("signal", pa.list_(pa.field("element", pa.float32()), BEAT_SAMPLES),
                 nullable=False, metadata={"units": "z-score", "samples": str(BEAT_SAMPLES)}),
    ],
    metadata={"contract": "mi-screen beats v1"},
)


class ExitCode(enum.IntEnum):
    """Process exit codes shared by the ``ingest``, ``train`` and ``infer`` commands.

    A nightly scheduler can carry on at OK, alert on PARTIAL, page on FATAL, fix the job on
    USAGE and OUTPUT_EXISTS, and fix the output location (disk, permissions) on OUTPUT_ERROR.
    """

    OK = 0  #: everything processed
    PARTIAL = 1  #: the run finished, but some records failed (see the errors table / rows)
    USAGE = 2  #: bad command line (click's own code)
    FATAL = 3  #: nothing was done: unusable metadata, model, or input folder
    OUTPUT_EXISTS = 4  #: the output exists; pass --overwrite to replace it
    OUTPUT_ERROR = 5  #: the output could not be written (disk full, read-only, permission):
    #: nothing partial is left; fix the location and re-run
