"""Data contracts of the MI screening pipeline, declared once.

Every stage imports its schemas, lead order, units and rates from here; tests assert
``table.schema.equals(...)`` against these objects.
"""

from schemas.ecg import (
    ADC_GAIN,
    BEAT_SAMPLES,
    BEATS_SCHEMA,
    CRITERIA_FIELDS,
    ERRORS_SCHEMA,
    LEADS,
    MEASUREMENT_FIELDS,
    PARTITION_SCHEMA,
    RATES,
    RECORD_SCHEMA,
    RECORD_SECONDS,
    REFERRED_NOTE,
    RESULTS_SCHEMA,
    UNITS,
    Band,
    ExitCode,
    band_for,
    canonical_lead,
    lead_sign,
    unit_scale_to_mv,
)
from schemas.model import MODEL_CONTRACT_KEYS, ModelContract, ModelContractError

__all__ = [
    "ADC_GAIN",
    "BEAT_SAMPLES",
    "BEATS_SCHEMA",
    "ERRORS_SCHEMA",
    "LEADS",
    "CRITERIA_FIELDS",
    "MEASUREMENT_FIELDS",
    "MODEL_CONTRACT_KEYS",
    "PARTITION_SCHEMA",
    "RATES",
    "RECORD_SCHEMA",
    "RECORD_SECONDS",
    "REFERRED_NOTE",
    "RESULTS_SCHEMA",
    "UNITS",
    "Band",
    "ExitCode",
    "ModelContract",
    "ModelContractError",
    "band_for",
    "canonical_lead",
    "lead_sign",
    "unit_scale_to_mv",
]
