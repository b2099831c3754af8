"""PTB-XL ingestion: WFDB records and metadata to a partitioned Parquet dataset."""

from common.errors import HeaderError, MetadataError, OutputExistsError, RecordError
from common.records import Record, adc_to_mv, parse_header, read_record
from ingest.convert import ConversionSummary, convert_ptbxl, open_dataset, signals_from_table
from ingest.metadata import load_database, load_scp_statements

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
