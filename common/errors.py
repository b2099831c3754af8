"""Typed exceptions for bad input.  Each message names the file, the problem and the fix."""

from __future__ import annotations


class RecordError(ValueError):
    """A single ECG record cannot be read; the batch goes on without it.

    ``kind`` is the short category written to the errors table.
    """

    kind = "unreadable_record"

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class HeaderError(RecordError):
    """A WFDB ``.hea`` file is malformed."""

    kind = "corrupt_header"


class MetadataError(ValueError):
    """``ptbxl_database.csv`` or ``scp_statements.csv`` is missing or malformed: nothing can run."""


class OutputExistsError(FileExistsError):
    """The output exists and ``overwrite`` was not asked for."""


class OutputIsInputError(ValueError):
    """The output is, contains or lies inside an input: refused whatever --overwrite says."""


class OutputError(OSError):
    """Writing an output failed (disk full, read-only, permission, a parent that is a file).

    The message is one line: the path, the problem and the fix.  Nothing partial is left.
    """
