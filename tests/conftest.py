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


def copy_records(dst: Path, n: int, rate: int = 100) -> Path:
    """Copy the first ``n`` shipped records of ``rate`` (header and signal file) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for hea in sorted(SAMPLE.glob(f"records{rate}/*/*.hea"))[:n]:
        for ext in (".hea", ".dat"):
            shutil.copy(hea.with_suffix(ext), dst)
    return dst


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """A writable 24-record copy of the sample (100 Hz) that a test may damage."""
    return make_corpus(tmp_path / "ptbxl")


@pytest.fixture(scope="session")
def data_100(tmp_path_factory) -> Path:
    """The shipped sample ingested at 100 Hz."""
    from ingest import convert_ptbxl

    out = tmp_path_factory.mktemp("data") / "ptbxl-100"
    convert_ptbxl(SAMPLE, out, rate=100, n_jobs=1)
    return out


@pytest.fixture(scope="session")
def data_500(tmp_path_factory) -> Path:
    """The shipped sample ingested at 500 Hz."""
    from ingest import convert_ptbxl

    out = tmp_path_factory.mktemp("data") / "ptbxl-500"
    convert_ptbxl(SAMPLE, out, rate=500, n_jobs=1)
    return out


SAMPLE_FOLDS = {"train_folds": (1, 2, 3, 4, 5, 6), "val_folds": (7,), "test_folds": (8,)}


@pytest.fixture(scope="session")
def trained(data_100: Path, tmp_path_factory) -> tuple[Path, dict, Path]:
    """A two-epoch cnnlstm run on the shipped sample and its ONNX export (run_dir, run, onnx)."""
    from train.export import export_onnx
    from train.fit import FitConfig, fit

    run_dir = tmp_path_factory.mktemp("run") / "run"
    run = fit(data_100, run_dir, FitConfig(arch="cnnlstm", epochs=2, **SAMPLE_FOLDS))
    onnx_path = run_dir.parent / "model.onnx"
    export_onnx(run_dir, onnx_path)
    return run_dir, run, onnx_path


@pytest.fixture(scope="session")
def trained_windowed(data_100: Path, tmp_path_factory) -> tuple[Path, dict, Path]:
    """A resnet1d run on random 2.5 s crops, scored by 7 windows (1.25 s stride) aggregated
    by their maximum, and its export: the windowed path, end to end (one epoch, no
    cross-fitting)."""
    from train.export import export_onnx
    from train.fit import FitConfig, fit

    run_dir = tmp_path_factory.mktemp("run_windowed") / "run"
    run = fit(data_100, run_dir, FitConfig(arch="resnet1d", epochs=1, cross_fit=False,
                                           aggregation="max", **SAMPLE_FOLDS))
    onnx_path = run_dir.parent / "model.onnx"
    export_onnx(run_dir, onnx_path)
    return run_dir, run, onnx_path
