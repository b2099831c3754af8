"""Shared fixtures.  Paths resolve from this file, never from the current directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "ptbxl-sample"


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The shipped 353-record PTB-XL sample (read-only: copy before mutating)."""
    assert (SAMPLE / "ptbxl_database.csv").is_file(), "shipped sample is missing"
    return SAMPLE


def make_corpus(dst: Path, n_records: int | None = 24, rates=(100,)) -> Path:
    """Copy the first ``n_records`` shipped records (both CSVs filtered to match) into ``dst``."""
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    if n_records is not None:
        db = db.iloc[:n_records]
    dst.mkdir(parents=True, exist_ok=True)
    db.to_csv(dst / "ptbxl_database.csv", index=False)
    shutil.copy(SAMPLE / "scp_statements.csv", dst / "scp_statements.csv")
    for rate in rates:
        col = "filename_lr" if rate == 100 else "filename_hr"
        for rel in db[col]:
            for ext in (".hea", ".dat"):
                target = dst / (rel + ext)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(SAMPLE / (rel + ext), target)
    return dst


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """A writable 24-record copy of the sample (100 Hz) that a test may damage."""
    return make_corpus(tmp_path / "ptbxl")
