"""Batch scoring with onnxruntime: discover, read, preprocess, score, write."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from common.errors import RecordError
from common.io import (
    commit_output,
    discard,
    make_temp_file,
    output_error,
    prepare_output,
    sha256_file,
)
from infer.preprocess import Conformed, conform, to_windows
from infer.readers import discover, read_csv, read_wfdb, record_id
from schemas import RESULTS_SCHEMA, Band, ModelContract, ModelContractError, band_for
from signals.measure import measurement_row
from signals.quality import Quality, QualityLevel, ecg_quality

_LOGGER = logging.getLogger(__name__)

#: Records read and scored per step; bounds memory (a step holds its windows only).
CHUNK_RECORDS = 512
#: Below this many inputs, reading in worker processes costs more than it saves.
MIN_PARALLEL_RECORDS = 2 * CHUNK_RECORDS


class NoInputError(FileNotFoundError):
    """The input folder holds nothing to score."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ScoreOptions:
    """How inputs are read and preprocessed (see ``infer score --help``)."""

    csv_fs: float | None = None  # None: the model's rate
    csv_units: str = "mV"
    pad_short: bool = False
    allow_missing_leads: bool = False
    measurements: bool = False  # R peaks and the MEASUREMENT_FIELDS (needs the signals extra)


class Model:
    """An exported MI model: an onnxruntime session and the contract from its metadata.

    One process, one session with ``threads`` intra-op threads (default: all cores).  Readers
    run in separate steps, so processes and threads never compete for the cores.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"{self.path}: model not found; run `make export` or pass --model PATH")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or available_cores()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelContractError(f"{self.path}: not a readable ONNX model ({e})") from e
        props = self.session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(props, source=str(self.path))
        names = [i.name for i in self.session.get_inputs()]
        if names != [self.contract.input_name]:
            raise ModelContractError(f"{self.path}: graph inputs {names} do not match the "
                                     f"contract's {self.contract.input_name!r}")
        self.sha256 = sha256_file(self.path)

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """MI probability per window; ``x`` is float32 ``(n, input_samples, n_leads)`` mV."""
        out = [
            self.session.run(None, {self.contract.input_name: x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out).reshape(-1) if out else np.zeros(0, np.float32)


def _read_one(path: str, fmt: str, contract: ModelContract, options: ScoreOptions):
    """Read one input and put its leads in the model's order; never raises for bad input
    (returns an error row instead)."""
    row: dict[str, Any] = {"record_id": record_id(path), "path": path, "format": fmt}
    try:
        if fmt == "wfdb":
            raw = read_wfdb(path)
        else:
            raw = read_csv(path, fs=options.csv_fs or contract.fs, units=options.csv_units)
        row["input_fs"] = raw.fs
        row["duration_s"] = raw.signal.shape[0] / raw.fs
        return row, conform(raw, contract, options.allow_missing_leads)
    except RecordError as e:
        row.update(status="error", message=str(e))
    except Exception as e:  # noqa: BLE001  a batch never dies for one file
        row.update(status="error", message=f"{path}: unexpected {type(e).__name__}: {e}")
    return row, None


def _gate(conformed: list[Conformed], contract: ModelContract) -> list[Quality | None]:
    """The quality gate over a chunk, vectorised over the records of each rate and length."""
    groups: dict[tuple[float, int], list[int]] = {}
    for k, c in enumerate(conformed):
        groups.setdefault((c.raw.fs, c.signal.shape[0]), []).append(k)
    out: list[Quality | None] = [None] * len(conformed)
    for (fs, _), idx in groups.items():
        x = np.stack([conformed[k].signal for k in idx])
        absent = np.array([[lead in conformed[k].leads_filled for lead in contract.leads]
                           for k in idx])
        try:
            verdicts = ecg_quality(x, fs, contract.leads, absent)
        except ValueError:  # too short to judge (the model refuses it too, unless --pad-short)
            continue
        for k, q in zip(idx, verdicts, strict=True):
            out[k] = q
    return out


def _prepare_chunk(items, contract: ModelContract, options: ScoreOptions):
    """Read, gate and window a chunk of inputs: ``[(row, windows or None)]`` in input order.

    Runs in a worker process for large batches; never raises for bad input.
    """
    read = [_read_one(p, f, contract, options) for p, f in items]
    ok = [k for k, (_, c) in enumerate(read) if c is not None]
    verdicts = dict(zip(ok, _gate([read[k][1] for k in ok], contract), strict=True))
    out = []
    for k, (row, c) in enumerate(read):
        if c is None:
            out.append((row, None))
            continue
        q = verdicts[k]
        if q is not None:
            row["quality"] = str(q.level)
            row["quality_issues"] = q.summary
        row["leads_found"] = ",".join(c.leads_found)
        row["leads_filled"] = ",".join(c.leads_filled)
        if q is not None and q.level == QualityLevel.UNUSABLE:
            row.update(status="error", message=f"{row['path']}: {q.message()}")
            out.append((row, None))
            continue
        if q is not None and q.level == QualityLevel.POOR:
            c.warnings.append(q.message())
        if options.measurements:
            row.update(measurement_row(c.signal, c.raw.fs, contract.leads))
        try:
            prepared = to_windows(c, contract, options.pad_short)
        except RecordError as e:
            row.update(status="error", message=str(e))
            out.append((row, None))
            continue
        if q is None:
            prepared.notes.append("quality not assessed: too short to judge")
        row["n_windows"] = len(prepared.windows)
        row["status"] = "warning" if prepared.warnings else "ok"
        row["message"] = "; ".join(prepared.warnings + prepared.notes)
        out.append((row, prepared.windows))
    return out


@dataclass
class ScoreSummary:
    """Counts of a scoring run, for the summary line and the exit code."""

    n: int = 0
    status: dict[str, int] = field(default_factory=lambda: {"ok": 0, "warning": 0, "error": 0})
    bands: dict[str, int] = field(default_factory=lambda: {b.value: 0 for b in Band})
    seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.n / self.seconds if self.seconds else 0.0
        return (f"{self.n} records: {self.status['ok']} ok, {self.status['warning']} warnings, "
                f"{self.status['error']} errors; bands: "
                + ", ".join(f"{k} {v}" for k, v in self.bands.items())
                + f"; {rate:.0f} records/s")


def score_inputs(
    inputs: Sequence[tuple[str, str]],
    model: Model,
    options: ScoreOptions = ScoreOptions(),
    bands: tuple[float, float] | None = None,
    n_jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop_on_error: bool = False,
) -> tuple[pa.Table, ScoreSummary]:
    """Score ``(path, format)`` inputs; one RESULTS_SCHEMA row per input, in input order.

    Inputs are processed in chunks of :data:`CHUNK_RECORDS`: a chunk is read and preprocessed
    (in ``n_jobs`` worker processes when there are many inputs), then scored in one
    onnxruntime call per batch, so memory stays flat whatever the number of inputs.
    With ``stop_on_error`` the first error raises :class:`RecordError` instead.
    """
    import joblib

    t0 = time.perf_counter()
    contract = model.contract
    low, high = bands if bands is not None else (contract.band_low, contract.band_high)
    n_jobs = n_jobs or available_cores()
    parallel = n_jobs > 1 and len(inputs) >= MIN_PARALLEL_RECORDS
    pool = joblib.Parallel(n_jobs=n_jobs) if parallel else None
    scored_at = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    summary = ScoreSummary()
    for start in range(0, len(inputs), CHUNK_RECORDS):
        chunk = list(inputs[start : start + CHUNK_RECORDS])
        if pool is not None:
            per = -(-len(chunk) // n_jobs)
            parts = pool(joblib.delayed(_prepare_chunk)(chunk[i : i + per], contract, options)
                         for i in range(0, len(chunk), per))
            prepared = [item for part in parts for item in part]
        else:
            prepared = _prepare_chunk(chunk, contract, options)
        good = [(row, w) for row, w in prepared if w is not None]
        if good:
            probs = model.predict(np.concatenate([w for _, w in good]))
            offset = 0
            for row, w in good:
                p = float(np.mean(probs[offset : offset + len(w)]))
                offset += len(w)
                row["mi_probability"] = p
                row["band"] = band_for(p, low, high).value
        for row, _ in prepared:
            row.setdefault("message", "")
            row["model_name"] = contract.model_name
            row["model_sha256"] = model.sha256
            row["scored_at"] = scored_at
            summary.status[row["status"]] += 1
            if row.get("band"):
                summary.bands[row["band"]] += 1
            if row["status"] == "error":
                if stop_on_error:
                    raise RecordError(row["message"], kind="stopped")
                if len(summary.first_errors) < 5:
                    summary.first_errors.append(row["message"])
            rows.append(row)
        if progress:
            progress(len(chunk), len(inputs))
    summary.n = len(rows)
    summary.seconds = time.perf_counter() - t0
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), summary


def score_dir(
    input_dir: str | os.PathLike[str],
    model: Model,
    pattern: str | None = None,
    recursive: bool = True,
    **kwargs: Any,
) -> tuple[pa.Table, ScoreSummary]:
    """Score every WFDB record and CSV file under ``input_dir`` (see :func:`score_inputs`)."""
    inputs = discover(input_dir, pattern=pattern, recursive=recursive)
    if not inputs:
        raise NoInputError(
            f"{input_dir}: no .hea or .csv files to score"
            + (f" matching {pattern!r}" if pattern else "")
            + ("" if recursive else " (not searching subfolders: drop --no-recursive)")
        )
    return score_inputs(inputs, model, **kwargs)


def write_results(table: pa.Table, out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write results atomically: Parquet, or CSV when ``out`` ends in ``.csv``.

    Raises OutputExistsError, or OutputError (one line: path, problem, fix) on any I/O failure;
    nothing partial is left either way.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = Path(out)
    prepare_output(out, overwrite)
    tmp = make_temp_file(out)
    try:
        try:
            if out.suffix.lower() == ".csv":
                pacsv.write_csv(table, tmp)
            else:
                pq.write_table(table, tmp)
        except OSError as e:
            raise output_error(out, e) from e
        commit_output(tmp, out, overwrite)
    except BaseException:
        discard(tmp)
        raise
    return out
