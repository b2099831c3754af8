"""PTB-XL ingestion: WFDB records and metadata to a partitioned Parquet dataset."""

from ingest.convert import ConversionSummary, convert_ptbxl, open_dataset, signals_from_table
from common.errors import HeaderError, MetadataError, OutputExistsError, RecordError
from ingest.metadata import load_database, load_scp_statements
from common.records import Record, adc_to_mv, parse_header, read_record

__all__ = [
    "ConversionSummary",
    "HeaderError",
    "MetadataError",
    "OutputExistsError",
    "Record",
    "RecordError",
    "adc_to_mv",
    "convert_ptbxl",
    "load_database",
    "load_scp_statements",
    "open_dataset",
    "parse_header",
    "read_record",
    "signals_from_table",
]
