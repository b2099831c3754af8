"""Batch scoring with onnxruntime: discover, read, preprocess, score, write."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from common.errors import RecordError
from common.io import atomic_write
from common.storage import is_url
from infer.preprocess import PLAUSIBLE_CSV_SECONDS, Conformed, conform, to_windows
from infer.readers import (
    BEAT_INPUT_FORMATS,
    INPUT_FORMATS,
    NotAnEcgError,
    discover,
    input_format,
    read_csv,
    read_wfdb,
    record_id,
    safe_text,
)
from schemas import (
    REFERRED_NOTE,
    RESULTS_SCHEMA,
    Band,
    ModelContract,
    ModelContractError,
    band_for,
)
from signals.measure import measurement_row
from signals.quality import Quality, QualityLevel, ecg_quality
from signals.windows import aggregate

_LOGGER = logging.getLogger(__name__)

#: Records read and scored per step; bounds memory with CHUNK_BYTES.
CHUNK_RECORDS = 512
#: ... and at most about this many bytes of input files (a long record is a chunk of its own).
CHUNK_BYTES = 32 << 20
#: Windows per onnxruntime call: this model runs 30 % faster at 32-64 than at 256 on 2 cores
#: (measured: 10,000 against 7,300 windows/s; batches of 512 are slower still).
BATCH_WINDOWS = 64
#: Records stacked at once for the quality gate (it makes its own cache-sized passes), and
#: at most this many samples per lead in a stack: 64 records a call were the fastest at
#: both rates (2026-12-01: 0.16 ms a record at 100 Hz, 0.89 ms at 500 Hz).
GATE_RECORDS, GATE_SAMPLES = 64, 1 << 21
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
    explain: bool = False  # occlusion attributions per lead and per second (infer.explain)
    plots: str | None = None  # folder for ECG pages of flagged and rejected records
    beats: bool = False  # beat models: cut 12-lead records into beats (needs the signals extra)
    beat_lead: str = "II"  # ... of this lead


class Model:
    """An exported MI model: an onnxruntime session and the contract from its metadata.

    One session with ``threads`` intra-op threads (default: all cores) for batches scored in
    this process; large batches are scored by worker processes with one-thread sessions of
    their own (:func:`score_slice`), so processes and threads never compete for the cores.
    ``data`` (the model file's bytes) builds it without the file, as workers do.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 data: bytes | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if data is None:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"{self.path}: model not found; run `make export` or pass --model PATH")
            data = self.path.read_bytes()
        #: the model file's bytes: what a cluster's workers load (they may not see the path)
        self.data = data
        self.threads = threads or available_cores()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(data, sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelContractError(f"{self.path}: not a readable ONNX model ({e})") from e
        props = self.session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(props, source=str(self.path))
        inputs = self.session.get_inputs()
        names = [i.name for i in inputs]
        #: what the graph's measurements input takes (empty: the graph takes the waveform)
        self.features = self.contract.features
        if names != [self.contract.input_name]:
            raise ModelContractError(f"{self.path}: graph inputs {names} do not match the "
                                     f"contract's {self.contract.input_name!r}")
        self.contract.validate(str(self.path), input_shape=inputs[0].shape)
        self.sha256 = hashlib.sha256(data).hexdigest()

    def predict(self, x: np.ndarray, batch_size: int = BATCH_WINDOWS) -> np.ndarray:
        """MI probability per window; ``x`` is float32 ``(n, input_samples, n_leads)`` mV (a
        measurements model measures each window with the function its contract names)."""
        if self.features:
            from signals.criteria import mi_features

            return self.predict_features(np.concatenate(
                [mi_features(x[i : i + batch_size], self.contract.fs)
                 for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0, 0)))
        out = [
            self.session.run(None, {self.contract.input_name: x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out).reshape(-1) if out else np.zeros(0, np.float32)

    def predict_features(self, f: np.ndarray) -> np.ndarray:
        """MI probability per row of measurements ``(n, len(features names))``."""
        if not len(f):
            return np.zeros(0, np.float32)
        return self.session.run(None, {self.contract.input_name: np.asarray(
            f, np.float32)})[0].reshape(-1)


#: Longest message kept in a results row (a header naming a million signals once produced a
#: 9.9 MB message); the rest is cut with a note of how much.
MAX_MESSAGE = 1000


def _cap(message: str) -> str:
    message = safe_text(message)
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}... ({len(message) - MAX_MESSAGE} more characters)"


def _unexpected(path: str, e: BaseException) -> str:
    """Cause and fix for failures that are not our own RecordError."""
    if isinstance(e, MemoryError):
        return f"{path}: too large to hold in memory; split the record into shorter files"
    if isinstance(e, PermissionError):
        return f"{path}: permission denied; make the file readable by this user"
    if isinstance(e, UnicodeError):
        return f"{path}: text in an unknown encoding; save the file as UTF-8"
    if isinstance(e, OSError):
        return (f"{path}: cannot be read ({e.strerror or e}); check that the file is complete "
                "and on a working disk")
    return (f"{path}: could not be read ({type(e).__name__}: {str(e)[:200]}); the file may be "
            "damaged: re-export it, or report it with the file if it looks right")


def _read_one(path: str, fmt: str, contract: ModelContract, options: ScoreOptions,
              root: str | None = None):
    """Read one input and put its leads in the model's order; never raises for bad input
    (returns an error or skipped row instead)."""
    row: dict[str, Any] = {"record_id": record_id(path), "path": safe_text(path), "format": fmt}
    try:
        if fmt == "wfdb":
            raw = read_wfdb(path, root=root)
        elif fmt == "csv":
            raw = read_csv(path, fs=options.csv_fs or contract.fs, units=options.csv_units)
            if options.csv_fs is None:
                _note_assumed_rate(raw, contract.fs)
        else:
            from infer.formats import read_export, sniff

            row["format"] = sniff(path) or "unknown"
            raw = read_export(path)
        row["input_fs"] = raw.fs
        row["duration_s"] = raw.signal.shape[0] / raw.fs
        return row, conform(raw, contract, options.allow_missing_leads)
    except NotAnEcgError as e:
        row.update(status="skipped", message=str(e))
    except RecordError as e:
        row.update(status="error", message=str(e))
    except Exception as e:  # noqa: BLE001  a batch never dies for one file
        row.update(status="error", message=_unexpected(path, e))
    return row, None


def _note_assumed_rate(raw, fs: int) -> None:
    """A CSV holds no rate: say which was assumed, and warn when it implies an odd duration."""
    seconds = raw.signal.shape[0] / fs
    if seconds > PLAUSIBLE_CSV_SECONDS:
        guess = raw.signal.shape[0] / 10.0
        raw.warnings.append(
            f"no rate in a CSV file: {fs} Hz (the model's) assumed, which makes it {seconds:.0f} s "
            f"long; if it is a 10 s recording its rate is {guess:g} Hz: pass --csv-fs {guess:g}")
    else:
        raw.notes.append(f"rate {fs} Hz assumed (CSV files carry none; --csv-fs sets it)")


def _gate(conformed: list[Conformed], contract: ModelContract) -> list[Quality | None]:
    """The quality gate over a chunk, vectorised over the records of each rate and length."""
    groups: dict[tuple[float, int], list[int]] = {}
    for k, c in enumerate(conformed):
        groups.setdefault((c.raw.fs, c.signal.shape[0]), []).append(k)
    out: list[Quality | None] = [None] * len(conformed)
    for (fs, n_samples), idx in groups.items():
        # stacked in slices of at most a few million samples: hour-long records one by one
        per = max(1, min(GATE_RECORDS, GATE_SAMPLES // max(1, n_samples)))
        for i in range(0, len(idx), per):
            part = idx[i : i + per]
            x = np.stack([conformed[k].signal for k in part])
            absent = np.array([[lead in conformed[k].leads_filled for lead in contract.leads]
                               for k in part])
            try:
                verdicts = ecg_quality(x, fs, contract.leads, absent)
            except ValueError:  # too short to judge (the model refuses it too, unless padded)
                break
            for k, q in zip(part, verdicts, strict=True):
                out[k] = q
    return out


def _measure_criteria(out: list, contract: ModelContract) -> None:
    """The MI criteria (:mod:`signals.criteria`) of the prepared records of a chunk, on the
    signal at the model's rate, batched by length: their columns into the rows; for a
    measurements model whose one window is the whole record, the model's input too (so it is
    not measured twice)."""
    from signals.criteria import measure

    groups: dict[int, list[int]] = {}
    for k, (_, w) in enumerate(out):
        if w is not None:
            groups.setdefault(w[0].shape[0], []).append(k)
    for n_samples, idx in groups.items():
        for i in range(0, len(idx), GATE_RECORDS):
            part = idx[i : i + GATE_RECORDS]
            x = np.stack([out[k][1][0] for k in part])
            absent = np.array([[lead in out[k][0]["leads_filled"].split(",")
                                for lead in contract.leads] for k in part])
            m = measure(x, contract.fs, absent,
                        readings="both" if contract.features else "clinical")
            feats = m.features() if contract.features else None
            for j, (k, summary) in enumerate(zip(part, m.summary(), strict=True)):
                row, (signal, starts, length, _) = out[k]
                row.update(summary)
                whole = len(starts) == 1 and length == n_samples
                out[k] = (row, (signal, starts, length,
                                feats[j] if feats is not None and whole else None))


def _prepare_chunk(items, contract: ModelContract, options: ScoreOptions,
                   root: str | None = None):
    """Read, gate and resample a chunk of inputs: ``[(row, (signal, window starts, window
    length, measurements or None) or None)]`` in input order.  Runs in a worker process for
    large batches; never raises for bad input.
    """
    read = [_read_one(p, f, contract, options, root) for p, f in items]
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
            row.update(status="error", message="; ".join(
                [f"{safe_text(c.raw.path)}: {q.message()}", *c.warnings]))
            if options.plots:  # the page shows what the gate rejected
                row["_plot"] = (c.signal, float(c.raw.fs))
            out.append((row, None))
            continue
        if q is not None and q.level == QualityLevel.POOR:
            c.warnings.append(q.message())
        if options.measurements:
            row.update(measurement_row(c.signal, c.raw.fs, contract.leads))
        try:
            prepared = to_windows(c, contract, options.pad_short)
        except RecordError as e:  # what was assumed on the way may be why: say it too
            row.update(status="error", message="; ".join([str(e), *c.warnings]))
            out.append((row, None))
            continue
        if q is None:
            prepared.notes.append("quality not assessed: too short to judge")
        row["n_windows"] = len(prepared.starts)
        row["status"] = "warning" if prepared.warnings else "ok"
        row["message"] = "; ".join(prepared.warnings + c.raw.notes + prepared.notes)
        # only what prediction needs goes back to the parent process (pickled)
        out.append((row, (prepared.signal, prepared.starts, prepared.length, None)))
    if contract.features or options.measurements:
        _measure_criteria(out, contract)
    return out


def _predict(model: Model, good: list[tuple[dict, tuple[np.ndarray, np.ndarray, int]]],
             batch_windows: int = BATCH_WINDOWS) -> list[float]:
    """Each record's probability: its windows' probabilities aggregated as the contract says
    (:func:`signals.windows.aggregate`, as in training).  Windows are views into each record's
    signal, copied into batches of ``batch_windows``, so memory is bounded whatever the
    records' lengths."""
    if model.features:
        return _predict_features(model, good)
    probs, batch, owners = [], [], []

    def flush():
        probs.append(model.predict(np.stack(batch), batch_size=batch_windows))
        batch.clear()

    for k, (_, (signal, starts, length, _)) in enumerate(good):
        for start in starts:
            batch.append(signal[start : start + length])
            owners.append(k)
            if len(batch) == batch_windows:
                flush()
    if batch:
        flush()
    return aggregate(np.concatenate(probs), np.asarray(owners), len(good),
                     model.contract.aggregation).tolist()


def _predict_features(model: Model, good) -> list[float]:
    """A measurements model: each record's measurements as ``_prepare_chunk`` took them, or
    (records of several windows) each window's, aggregated as the contract says."""
    from signals.criteria import mi_features

    rows, owners = [], []
    for k, (_, (signal, starts, length, feats)) in enumerate(good):
        if feats is not None:
            rows.append(feats[None])
            owners.append(np.array([k]))
        else:
            windows = np.stack([signal[a : a + length] for a in starts])
            rows.append(mi_features(windows, model.contract.fs))
            owners.append(np.full(len(starts), k))
    p = model.predict_features(np.concatenate(rows))
    return aggregate(p, np.concatenate(owners), len(good), model.contract.aggregation).tolist()


def _explain_and_plot(model: Model, prepared, options: ScoreOptions) -> None:
    """``--explain``: occlusion attributions into the rows of scored records.  ``--plots``: an
    ECG page for every record in the MI or borderline band and every record the quality gate
    rejected (with the attributions shaded when there are any)."""
    from infer.explain import occlusion

    contract = model.contract
    for row, w in prepared:
        plot = row.pop("_plot", None)
        if w is not None:
            signal, starts, length, _ = w
            if options.explain:
                _, leads, seconds = occlusion(model, signal, starts, length, contract.fs)
                for lead, a in zip(contract.leads, leads, strict=True):
                    row[f"attr_{lead}"] = float(a)
                row["attr_seconds"] = [float(a) for a in seconds]
            if options.plots and row.get("band") in (Band.MI.value, Band.BORDERLINE.value):
                plot = (signal, float(contract.fs))
        if plot is not None and options.plots:
            from infer.plots import ecg_page

            ecg_page(plot[0], plot[1], contract.leads, row, Path(options.plots))


def _chunks(inputs: Sequence[tuple[str, str]],
            max_records: int = CHUNK_RECORDS) -> list[list[tuple[str, str]]]:
    """Consecutive chunks of at most ``max_records`` inputs and about CHUNK_BYTES of files: a
    chunk of hour-long records holds a few of them, not 512.  (Sizes of files behind URLs are
    not looked up: their chunks are cut by count.)"""
    out, chunk, size = [], [], 0
    for path, fmt in inputs:
        try:
            base = path[:-4] if fmt == "wfdb" else path
            n = 0 if "://" in path else os.path.getsize(base + ".dat" if fmt == "wfdb" else base)
        except OSError:
            n = 0
        if chunk and (len(chunk) >= max_records or size + n > CHUNK_BYTES):
            out.append(chunk)
            chunk, size = [], 0
        chunk.append((path, fmt))
        size += n
    if chunk:
        out.append(chunk)
    return out


@dataclass
class ScoreSummary:
    """Counts of a scoring run, for the summary line and the exit code."""

    n: int = 0
    status: dict[str, int] = field(
        default_factory=lambda: {"ok": 0, "warning": 0, "error": 0, "skipped": 0})
    bands: dict[str, int] = field(
        default_factory=lambda: {b.value: 0 for b in (Band.NORMAL, Band.BORDERLINE, Band.MI)})
    seconds: float = 0.0
    unit: str = "records"  # what the rate in the summary line counts
    ignored: dict[str, int] = field(default_factory=dict)  # other files, by extension
    first_errors: list[str] = field(default_factory=list)
    #: what this run scored, when it is not ``n`` (a resumed run): the rate counts these
    scored_now: int | None = None

    @property
    def scored(self) -> int:
        return self.status["ok"] + self.status["warning"]

    def line(self) -> str:
        done = self.n if self.scored_now is None else self.scored_now
        rate = done / self.seconds if self.seconds else 0.0
        what = "inputs" if self.unit == "records" else self.unit
        return (f"{self.n} {what}: {self.status['ok']} ok, {self.status['warning']} warnings, "
                f"{self.status['error']} errors, {self.status['skipped']} skipped; bands: "
                + ", ".join(f"{k} {v}" for k, v in self.bands.items())
                + f"; {rate:.0f} {self.unit}/s"
                + ("" if self.scored_now is None or self.scored_now == self.n
                   else f" ({self.scored_now} scored by this run)"))


def score_inputs(
    inputs: Sequence[tuple[str, str]],
    model: Model,
    options: ScoreOptions = ScoreOptions(),
    bands: tuple[float, float] | None = None,
    n_jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop_on_error: bool = False,
    skipped: Sequence[tuple[str, str]] = (),
    root: str | os.PathLike[str] | None = None,
) -> tuple[pa.Table, ScoreSummary]:
    """Score ``(path, format)`` inputs; one RESULTS_SCHEMA row per input (a beat model: per
    beat), in input order, then one ``skipped`` row per ``(path, reason)`` in ``skipped``.

    Inputs are processed in chunks of at most :data:`CHUNK_RECORDS` records and about
    :data:`CHUNK_BYTES` of files: a chunk is read and preprocessed (in ``n_jobs`` worker
    processes when there are many inputs), then scored in batches of windows, so memory stays
    flat whatever the number and length of the inputs.  With ``root`` (the input folder), a
    WFDB header may not name signal files outside it (absolute paths, ``..``).  With
    ``stop_on_error`` the first error raises :class:`RecordError`.
    """
    t0 = time.perf_counter()
    summary = new_summary(model)
    scored_at = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for chunk_rows in score_chunks(_chunks(inputs), model, options, bands, n_jobs, root,
                                   progress):
        finish_rows(chunk_rows, model, scored_at, summary, stop_on_error)
        rows.extend(chunk_rows)
    extra = skipped_rows(skipped)
    finish_rows(extra, model, scored_at, summary, stop_on_error)
    rows.extend(extra)
    summary.n = len(rows)
    summary.seconds = time.perf_counter() - t0
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), summary


def new_summary(model: Model) -> ScoreSummary:
    """An empty summary with the bands of the model's task."""
    if model.contract.task == "beats":
        return ScoreSummary(unit="rows", bands={b.value: 0 for b in (
            Band.NORMAL, Band.BORDERLINE, Band.ABNORMAL)})
    return ScoreSummary()


def skipped_rows(skipped: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """One ``skipped`` row per ``(path, reason)`` that discovery set aside."""
    return [{"record_id": record_id(p), "path": safe_text(p),
             "format": input_format(p) or "folder", "status": "skipped",
             "message": f"{safe_text(p)}: {why}"} for p, why in skipped]


def score_chunks(
    chunks: Sequence[Sequence[tuple[str, str]]],
    model: Model,
    options: ScoreOptions = ScoreOptions(),
    bands: tuple[float, float] | None = None,
    n_jobs: int | None = None,
    root: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the rows of each chunk of inputs, chunk by chunk, in order (rows not yet
    finished: see :func:`finish_rows`).  The engine of :func:`score_inputs` and of partitioned
    runs (:mod:`infer.dataset`), where a chunk is a part of the output.

    Large batches of an MI model run in ``n_jobs`` worker processes, each reading, gating
    and scoring whole slices of chunks with its own one-thread onnxruntime session (the
    layout onnxruntime wants for N processes, and the one a Dask worker uses); the next
    slices are dispatched while the finished ones come back, so reading and inference overlap
    across processes.  Small batches run here, with the session's own threads.
    """
    contract = model.contract
    low, high = bands if bands is not None else (contract.band_low, contract.band_high)
    root = None if root is None else os.fspath(root)
    total = sum(len(c) for c in chunks)
    n_jobs = n_jobs or available_cores()
    if n_jobs > 1 and total >= MIN_PARALLEL_RECORDS and contract.task != "beats":
        yield from _score_in_processes(chunks, model, options, bands, n_jobs, root, progress,
                                       total)
        return
    for chunk in chunks:
        if contract.task == "beats":
            from infer.beats import beat_rows

            with _local_copy(chunk, root) as (local, where, restore):
                rows = [row for path, fmt in local
                        for row in beat_rows(path, fmt, model, options, low, high, where)]
            for row in rows:
                restore(row)
            yield rows
        else:
            yield _score_chunk(chunk, model, options, low, high, root)
        if progress:
            progress(len(chunk), total)


def _score_in_processes(chunks, model: Model, options: ScoreOptions, bands, n_jobs: int,
                        root: str | None, progress, total: int) -> Iterator[list[dict]]:
    """score_chunks in ``n_jobs`` processes: each chunk cut into ``n_jobs`` slices, scored by
    :func:`score_slice`, put back together in order."""
    import joblib

    tasks = []
    for k, chunk in enumerate(chunks):
        per = -(-len(chunk) // n_jobs)
        tasks += [(k, list(chunk[i : i + per])) for i in range(0, len(chunk), per)]
    pool = joblib.Parallel(n_jobs=n_jobs, return_as="generator", pre_dispatch="2 * n_jobs")
    results = pool(joblib.delayed(score_slice)(k, items, model.data, model.sha256, options,
                                               bands, root) for k, items in tasks)
    remaining = [0] * len(chunks)
    for k, _ in tasks:
        remaining[k] += 1
    rows: list[dict[str, Any]] = []
    for k, part in results:  # in task order, so a chunk's slices arrive together
        rows.extend(part)
        remaining[k] -= 1
        if remaining[k] == 0:
            yield rows
            if progress:
                progress(len(chunks[k]), total)
            rows = []


#: This process's onnxruntime sessions by model SHA-256 (worker processes of the local pool
#: and Dask workers keep one per model).
_SESSIONS: dict[str, Model] = {}


def process_model(data: bytes, sha256: str, threads: int = 1) -> Model:
    """This process's session for a model (made once per process, from the model's bytes)."""
    model = _SESSIONS.get(sha256)
    if model is None:
        model = Model("<model sent by the scorer>", threads=threads, data=data)
        _SESSIONS[sha256] = model
    return model


def score_slice(k: int, items: list[tuple[str, str]], data: bytes, sha256: str,
                options: ScoreOptions, bands, root: str | None,
                threads: int = 1) -> tuple[int, list[dict[str, Any]]]:
    """Task of a worker process (local pool or Dask): read, gate and score ``items`` with
    this process's session; return ``(k, rows)``."""
    model = process_model(data, sha256, threads)
    rows = next(iter(score_chunks([items], model, options, bands, n_jobs=1, root=root)))
    return k, rows


@contextlib.contextmanager
def _local_copy(chunk, root):
    """``(items, root, restore)``: the chunk itself, or for URLs a staged local copy."""
    if chunk and is_url(chunk[0][0]):
        from infer.remote import staged

        with staged(chunk) as staging:
            yield staging
    else:
        yield chunk, root, lambda row: None


def _score_chunk(chunk, model: Model, options: ScoreOptions, low: float, high: float,
                 root: str | None) -> list[dict[str, Any]]:
    """Read, gate, score (and explain, plot) one chunk of MI inputs: its rows in order."""
    with _local_copy(chunk, root) as (local, where, restore):
        rows = _score_local_chunk(local, model, options, low, high, where)
    for row in rows:
        restore(row)
    return rows


def _score_local_chunk(chunk, model: Model, options: ScoreOptions, low: float, high: float,
                       root: str | None) -> list[dict[str, Any]]:
    prepared = _prepare_chunk(chunk, model.contract, options, root)
    good = [(row, w) for row, w in prepared if w is not None]
    refers = bool(model.contract.features.get("referral"))
    if good:
        for (row, _), p in zip(good, _predict(model, good), strict=True):
            row["mi_probability"] = p
            row["band"] = band_for(p, low, high).value
            if refers and row.get("lbbb_pattern"):
                _refer_lbbb(row)
    if options.explain or options.plots:
        _explain_and_plot(model, prepared, options)
    for row, _ in prepared:
        row.pop("_plot", None)
    return [row for row, _ in prepared]


def _refer_lbbb(row: dict[str, Any]) -> None:
    """A record of left-bundle-branch-block shape (``signals.criteria``,
    ``Measurements.lbbb_like``) goes to "borderline" whatever its probability: its Q waves and
    ST-T changes come from the conduction, so neither the criteria nor a model trained on them
    can call it MI or normal.  The probability is kept; the message says what the band was."""
    note = (f"{REFERRED_NOTE} (alone it gives {row['band']}): wide QRS of left bundle branch "
            "block shape (LBBB or ventricular pacing), in which Q waves and ST-T changes are "
            "secondary and the MI criteria do not apply; a cardiologist reads it (for example "
            "by the Sgarbossa criteria)")
    row["band"] = Band.BORDERLINE.value
    row["message"] = "; ".join(m for m in (row.get("message"), note) if m)


def finish_rows(rows: list[dict[str, Any]], model: Model, scored_at, summary: ScoreSummary,
                stop_on_error: bool = False) -> None:
    """Stamp rows with the model and time, cap messages, count them into ``summary``."""
    for row in rows:
        row["message"] = _cap(row.get("message", ""))
        row.update(model_name=model.contract.model_name, model_sha256=model.sha256,
                   scored_at=scored_at)
        summary.status[row["status"]] += 1
        if row.get("band"):
            summary.bands[row["band"]] += 1
        if row["status"] == "error":
            if stop_on_error:
                raise RecordError(row["message"], kind="stopped")
            if len(summary.first_errors) < 5:
                summary.first_errors.append(row["message"])


def find_inputs(input_dir: str | os.PathLike[str], model: Model, pattern: str | None = None,
                recursive: bool = True):
    """The :class:`~infer.readers.Discovery` of a folder or URL; NoInputError when it holds
    nothing to score."""
    formats = BEAT_INPUT_FORMATS if model.contract.task == "beats" else INPUT_FORMATS
    if is_url(input_dir):
        from infer.remote import discover_url

        found = discover_url(os.fspath(input_dir), pattern=pattern, recursive=recursive,
                             formats=formats)
    else:
        found = discover(input_dir, pattern=pattern, recursive=recursive, formats=formats)
    if not found.inputs:
        skipped = found.skipped
        raise NoInputError(
            f"{input_dir}: no .hea or .csv files to score"
            + (f" matching {pattern!r}" if pattern else "")
            + ("" if recursive else " (not searching subfolders: drop --no-recursive)")
            + (f"; other files: {_ignored_text(found.ignored)}" if found.ignored else "")
            + (f"; {len(skipped)} skipped, e.g. {skipped[0][0]}: {skipped[0][1]}"
               if skipped else "")
        )
    return found


def score_dir(
    input_dir: str | os.PathLike[str],
    model: Model,
    pattern: str | None = None,
    recursive: bool = True,
    **kwargs: Any,
) -> tuple[pa.Table, ScoreSummary]:
    """Score every input under ``input_dir`` (a folder or an fsspec URL; see
    :func:`score_inputs`); candidates that discovery skips (hidden, unreadable folders, link
    loops, pipes) get a ``skipped`` row each, with the reason."""
    found = find_inputs(input_dir, model, pattern, recursive)
    root = None if is_url(input_dir) else input_dir
    table, summary = score_inputs(found.inputs, model, skipped=found.skipped, root=root,
                                  **kwargs)
    summary.ignored = found.ignored
    return table, summary


def _ignored_text(ignored: dict[str, int]) -> str:
    return ", ".join(f"{n} {ext}" for ext, n in list(ignored.items())[:8]) + (
        ", ..." if len(ignored) > 8 else "")


def write_results(table: pa.Table, out: str | os.PathLike[str], overwrite: bool = False) -> str:
    """Write results atomically: Parquet, or CSV when ``out`` ends in ``.csv``; ``out`` may be
    an fsspec URL (one upload of the finished file).

    Raises OutputExistsError, or OutputError (one line: path, problem, fix) on any I/O
    failure; nothing partial is left either way.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = os.fspath(out)
    csv = out.lower().endswith(".csv")
    if csv:
        # CSV has no lists: attr_seconds becomes "a;b;c"
        for i, f in enumerate(table.schema):
            if pa.types.is_list(f.type):
                text = [None if v is None else ";".join(f"{x:.6g}" for x in v)
                        for v in table.column(i).to_pylist()]
                table = table.set_column(i, pa.field(f.name, pa.string()),
                                         pa.array(text, pa.string()))

    def write(target) -> None:
        if csv:
            pacsv.write_csv(table, target)
        else:
            pq.write_table(table, target)

    if is_url(out):
        import io

        from common.errors import OutputExistsError
        from common.storage import Folder

        parent, name = out.rsplit("/", 1)
        folder = Folder(parent)
        if not overwrite and name in folder.names():
            raise OutputExistsError(f"{out}: output exists; pass --overwrite to replace it, or "
                                    "choose another --out")
        buf = io.BytesIO()
        write(buf)
        folder.write(name, buf.getvalue())
    else:
        atomic_write(Path(out), lambda tmp: write(str(tmp)), overwrite)
    return out
