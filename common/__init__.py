"""Code every stage shares: the WFDB reader, typed errors, atomic outputs, CLI helpers.

``ingest``, ``train`` and ``infer`` import from here (never from each other's internals), and
importing it is cheap: numpy only, so the scorer starts fast.
"""

from common.errors import (
    HeaderError,
    MetadataError,
    OutputError,
    OutputExistsError,
    OutputIsInputError,
    RecordError,
)
from common.records import Header, Record, adc_to_mv, parse_header, read_record

__all__ = [
    "Header",
    "HeaderError",
    "MetadataError",
    "OutputError",
    "OutputExistsError",
    "OutputIsInputError",
    "Record",
    "RecordError",
    "adc_to_mv",
    "parse_header",
    "read_record",
]
