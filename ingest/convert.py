"""PTB-XL to partitioned Parquet: chunked, joblib-parallel, deterministic, atomic.

Layout of the output folder::

    OUT/
      records/strat_fold=K/part-NNNNN.parquet   one file per chunk (RECORD_SCHEMA)
      errors.parquet                            one row per record not converted (ERRORS_SCHEMA)
      manifest.json                             counts, checksums, versions, parameters

Records are sorted by (strat_fold, ecg_id) and cut into fixed-size chunks that never span a
fold, so chunk ``NNNNN`` holds the same records for any ``n_jobs`` and the dataset is byte-for-byte
identical.  Each worker reads its records and writes its own file, so the parent never holds
signals and peak memory does not grow with the corpus.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from common.errors import OutputError, RecordError
from common.io import (
    check_not_input,
    commit_output,
    discard,
    make_temp_dir,
    output_error,
    package_versions,
    prepare_output,
    sha256_file,
)
from common.records import adc_to_mv, read_record
from ingest.metadata import ScpTable, load_database, load_scp_statements, record_row
from schemas import (
    ERRORS_SCHEMA,
    LEADS,
    PARTITION_SCHEMA,
    RATES,
    RECORD_SCHEMA,
    RECORD_SECONDS,
)
from signals.measure import measurement_row
from signals.quality import ecg_quality

_LOGGER = logging.getLogger(__name__)

#: Records per chunk (one Parquet file, one row group) at 100 Hz; at other rates the chunk
#: holds as many samples (102 records at 500 Hz), so a worker's memory does not depend on the
#: rate.  Fixed, not derived from n_jobs, so the output does not depend on the parallelism.
CHUNK_SIZE = 512
#: LZ4: Parquet stores int16 in 32-bit slots, so some compression is needed to stay near the
#: raw .dat size; LZ4 writes and reads about twice as fast as zstd level 1 for 1.4x the size
#: (measured on 512 PTB-XL records: 115 vs 195 ms to write, 55 vs 100 ms to read, 13.3 vs
#: 9.7 MB; the .dat files are 12.3 MB).  Training reads the dataset far more often than ingest
#: writes it.
COMPRESSION = "lz4"

_META_SCHEMA = pa.schema([f for f in RECORD_SCHEMA if f.name != "signal"])
# Dictionaries and min/max statistics help the metadata columns; for the signal they only
# cost time.
_DICTIONARY_COLUMNS = [f.name for f in _META_SCHEMA]


def default_chunk_size(rate: int) -> int:
    """Records per chunk at ``rate`` Hz: as many samples as CHUNK_SIZE records at 100 Hz."""
    return max(1, CHUNK_SIZE * 100 // rate)


@dataclass
class ChunkResult:
    """What a worker sends back: counts and errors, never signals."""

    chunk_id: int
    fold: int
    n_records: int
    n_ok: int = 0
    n_mi: int = 0
    quality: dict[str, int] = field(default_factory=dict)
    sha256: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ConversionSummary:
    """Outcome of :func:`convert_ptbxl`."""

    out_dir: Path
    n_listed: int
    n_converted: int
    n_errors: int
    n_mi: int
    seconds: float
    manifest: dict[str, Any]
    first_errors: list[str]

    def line(self) -> str:
        quality = ", ".join(f"{v} {k}" for k, v in self.manifest["counts"]["quality"].items())
        return (
            f"{self.n_converted}/{self.n_listed} records converted "
            f"({self.n_mi} MI; quality: {quality or 'none'}), {self.n_errors} errors, "
            f"{self.seconds:.1f} s -> {self.out_dir}"
        )


class NothingConvertedError(ValueError):
    """Every listed record failed: no dataset is written (an empty one would train nothing)."""


def _int_or_none(text: str) -> int | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return int(v) if math.isfinite(v) and v == int(v) and 1 <= v < 2**31 else None


def _error(ecg_id: int | None, path: str, exc: RecordError) -> dict[str, Any]:
    return {"ecg_id": ecg_id, "path": path, "kind": exc.kind, "message": str(exc)}


def _check_record(rec, rate: int, path: str) -> np.ndarray:
    """Return the record's int16 samples in LEADS order, or raise RecordError."""
    if rec.fs != rate:
        raise RecordError(
            f"{path}.hea: sampling rate is {rec.fs:g} Hz but this run converts {rate} Hz records; "
            f"the database row points at the wrong file, or pass --rate {rec.fs:g}",
            kind="wrong_rate",
        )
    names = [n.upper() for n in rec.sig_names]
    if sorted(names) != sorted(LEADS) or len(names) != len(LEADS):
        raise RecordError(
            f"{path}.hea: leads are {','.join(rec.sig_names)}; expected the 12 standard leads "
            f"{','.join(LEADS)}",
            kind="bad_shape",
        )
    if len(set(rec.adc_gain.tolist())) != 1 or len(set(rec.baseline.tolist())) != 1:
        raise RecordError(
            f"{path}.hea: leads have different ADC gains or baselines; this dataset stores one "
            "gain per record",
            kind="unsupported_format",
        )
    expected = int(round(rate * RECORD_SECONDS))
    if rec.n_samples != expected:
        raise RecordError(
            f"{path}.hea: {rec.n_samples} samples ({rec.n_samples / rate:g} s); PTB-XL records "
            f"are {RECORD_SECONDS} s, {expected} samples at {rate} Hz; re-download the record",
            kind="bad_shape",
        )
    missing = rec.missing_samples()
    if missing.any():
        leads = [rec.sig_names[i] for i in np.flatnonzero(missing)]
        raise RecordError(
            f"{path}.hea: {int(missing.sum())} samples missing (WFDB value -32768) in leads "
            f"{','.join(leads)}; the recording has gaps, leave it out or re-record",
            kind="missing_samples",
        )
    if (rec.signal.max(axis=0) == rec.signal.min(axis=0)).all():
        raise RecordError(
            f"{path}.hea: the signal is constant on every lead (no ECG in it); leave the record "
            "out or re-download it",
            kind="no_signal",
        )
    if set(u.lower() for u in rec.units) != {"mv"}:
        raise RecordError(
            f"{path}.hea: units are {','.join(sorted(set(rec.units)))}; PTB-XL records are in mV",
            kind="bad_units",
        )
    sig = rec.signal
    if names != list(LEADS):
        sig = sig[:, [names.index(lead) for lead in LEADS]]
    return np.ascontiguousarray(sig)


def _add_quality(meta: list[dict[str, Any]], signals: list[np.ndarray], rate: int,
                 measurements: bool) -> None:
    """Quality verdict (and measurements, if asked) of each record, added to its row.

    The gate runs vectorised over the chunk's records of one length (all of them, in PTB-XL),
    on the same millivolts training and scoring see.
    """
    by_len: dict[int, list[int]] = {}
    for k, sig in enumerate(signals):
        by_len.setdefault(sig.shape[0], []).append(k)
    for idx in by_len.values():
        gains = np.array([meta[k]["adc_gain"] for k in idx])[:, None, None]
        bases = np.array([meta[k]["adc_baseline"] for k in idx])[:, None, None]
        mv = adc_to_mv(np.stack([signals[k] for k in idx]), gains, bases)
        try:
            verdicts = ecg_quality(mv, rate)
        except ValueError:  # too short to judge
            verdicts = [None] * len(idx)
        for j, (k, q) in enumerate(zip(idx, verdicts, strict=True)):
            meta[k]["quality"] = None if q is None else str(q.level)
            meta[k]["quality_issues"] = None if q is None else q.summary
            if measurements:
                meta[k].update(measurement_row(mv[j], rate, LEADS))


def _convert_chunk(
    chunk_id: int,
    fold: int,
    rows: list[tuple[int, dict[str, str]]],
    root: str,
    rate: int,
    tmp: str,
    scp: ScpTable,
    database_csv: str,
    measurements: bool = False,
) -> ChunkResult:
    """Worker: validate a chunk's metadata rows, read their records, write one Parquet file.

    ``rows`` are ``(line number, raw CSV row)``.  Pure apart from the file it writes.
    """
    result = ChunkResult(chunk_id=chunk_id, fold=fold, n_records=len(rows))
    digest = hashlib.sha256()
    meta, signals = [], []
    filename_field = "filename_lr" if rate == 100 else "filename_hr"
    for lineno, raw in rows:
        where = f"{database_csv}: row {lineno} (ecg_id {raw['ecg_id']})"
        try:
            _, row = record_row(raw, scp, filename_field, where)
        except RecordError as e:
            result.errors.append(_error(_int_or_none(raw["ecg_id"]), database_csv, e))
            continue
        path = os.path.join(root, row["filename"])
        try:
            rec = read_record(path, root=root)
            sig = _check_record(rec, rate, path)
        except RecordError as e:
            result.errors.append(_error(row["ecg_id"], path, e))
            continue
        digest.update(row["filename"].encode())
        digest.update(rec.signal.tobytes())
        meta.append(
            {
                **row,
                "fs": rate,
                "n_samples": sig.shape[0],
                "n_leads": sig.shape[1],
                "adc_gain": float(rec.adc_gain[0]),
                "adc_baseline": int(rec.baseline[0]),
            }
        )
        signals.append(sig)
    result.sha256 = digest.hexdigest()
    if not meta:
        return result
    _add_quality(meta, signals, rate, measurements)
    offsets = np.zeros(len(signals) + 1, dtype=np.int32)
    np.cumsum([s.size for s in signals], out=offsets[1:])
    flat = np.concatenate([s.reshape(-1) for s in signals])
    table = pa.Table.from_pylist(meta, schema=_META_SCHEMA).append_column(
        RECORD_SCHEMA.field("signal"), pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    ).cast(RECORD_SCHEMA)
    part_dir = os.path.join(tmp, "records", f"strat_fold={fold}")
    os.makedirs(part_dir, exist_ok=True)
    pq.write_table(
        table,
        os.path.join(part_dir, f"part-{chunk_id:05d}.parquet"),
        compression=COMPRESSION,
        use_dictionary=_DICTIONARY_COLUMNS,
        write_statistics=_DICTIONARY_COLUMNS,
        row_group_size=len(meta),
    )
    result.n_ok = len(meta)
    for r in meta:
        key = r["quality"] or "not assessed"
        result.quality[key] = result.quality.get(key, 0) + 1
    result.n_mi = sum(1 for r in meta if r["mi"])
    del table, flat, signals
    # Arrow's allocator keeps freed chunks for reuse; hand them back so a long-lived worker's
    # memory stays that of one chunk
    pa.default_memory_pool().release_unused()
    return result



def _plan(
    root: Path, chunk_size: int
) -> tuple[pd.DataFrame, list[tuple[int, int, np.ndarray]], list[dict[str, Any]], dict, ScpTable]:
    """Check both tables and cut the rows into chunks (one fold each, sorted by ecg_id).

    Only what grouping needs is parsed here (``strat_fold``, ``ecg_id``); each row is fully
    validated by the worker that converts it, so validation runs in parallel too.  Chunks are
    row positions: rows are materialised one chunk at a time, as workers ask for them.
    """
    database_csv, scp_csv = root / "ptbxl_database.csv", root / "scp_statements.csv"
    # Both tables are checked before any record is touched: a bad table stops the run.
    scp = load_scp_statements(scp_csv)
    db = load_database(database_csv)
    id_f = pd.to_numeric(db["ecg_id"]).to_numpy(dtype=np.float64)
    id_ok = np.isfinite(id_f) & (id_f == np.round(id_f)) & (id_f >= 1) & (id_f < 2**31)
    ids = np.where(id_ok, id_f, -1).astype(np.int64)
    folds = pd.to_numeric(db["strat_fold"], errors="coerce").to_numpy()
    valid = id_ok & np.isfinite(folds) & (folds == np.round(folds)) & (folds >= 1) & (folds <= 10)
    errors = []
    for i in np.flatnonzero(~valid):
        # the row validator words the error, exactly as for any other field
        row = db.iloc[i].to_dict()
        where = f"{database_csv}: row {i + 2} (ecg_id {row['ecg_id']})"
        try:
            record_row(row, scp, "filename_lr", where)
        except RecordError as e:
            exc = e
        else:  # record_row checks ids and folds as `valid` does; this is only a safety net
            exc = RecordError(f"{where}: ecg_id or strat_fold out of range", kind="bad_metadata")
        errors.append(_error(int(ids[i]) if id_ok[i] else None, str(database_csv), exc))
    chunks = []
    for fold in np.unique(folds[valid]).astype(int):
        positions = np.flatnonzero(valid & (folds == fold))
        positions = positions[np.argsort(ids[positions], kind="stable")]
        for start in range(0, len(positions), chunk_size):
            chunks.append((len(chunks), int(fold), positions[start : start + chunk_size]))
    inputs = {
        "ptbxl_database.csv": sha256_file(database_csv),
        "scp_statements.csv": sha256_file(scp_csv),
    }
    return db, chunks, errors, inputs, scp


def convert_ptbxl(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    rate: int = 100,
    n_jobs: int = -1,
    overwrite: bool = False,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    measurements: bool = False,
    client=None,
) -> ConversionSummary:
    """Convert every record listed in ``ptbxl_database.csv`` to a partitioned Parquet dataset.

    Parameters
    ----------
    root : PTB-XL folder holding ``ptbxl_database.csv``, ``scp_statements.csv`` and the records
    out_dir : output folder (see the module docstring for its layout); must not exist unless
        ``overwrite``
    rate : 100 or 500 (Hz): which of PTB-XL's two copies of each record to convert
    n_jobs : joblib worker processes (-1: one per core); the output does not depend on it
    overwrite : replace an existing ``out_dir`` (only once the new one is complete)
    chunk_size : records per Parquet file (default: :func:`default_chunk_size` of the rate)
    progress : called with (records just finished, records listed) after each chunk
    client : a ``distributed.Client``: chunks run as tasks on its Dask cluster (joblib's dask
        backend) instead of ``n_jobs`` local processes; ``root`` and ``out_dir`` must be
        folders every worker sees.  The output is the same.
    measurements : add the MEASUREMENT_FIELDS (R peaks, heart rate, QRS, R/T amplitudes on
        lead II; needs the ``signals`` extra, about 40 ms per record).  The quality columns
        are always filled.

    Returns
    -------
    ConversionSummary

    Raises
    ------
    MetadataError
        if either CSV table is missing or malformed (before any work is done)
    OutputExistsError
        if ``out_dir`` exists and ``overwrite`` is False (before any work is done)
    OutputIsInputError
        if ``out_dir`` is, contains or lies inside ``root`` (whatever ``overwrite`` says)
    NothingConvertedError
        if no record could be converted (nothing is written)
    OutputError
        if the output cannot be written (disk full, read-only, permission): nothing is left

    Notes
    -----
    A record that cannot be converted (missing or truncated file, corrupt header, checksum
    mismatch, unknown SCP code, malformed metadata field, wrong rate) becomes a row of
    ``errors.parquet`` and the rest of the corpus is converted.
    """
    if rate not in RATES:
        raise ValueError(f"rate must be one of {list(RATES)}, got {rate!r}")
    t0 = time.perf_counter()
    root, out_dir = Path(root), Path(out_dir)
    check_not_input(out_dir, [root], option="--out")
    prepare_output(out_dir, overwrite)
    chunk_size = chunk_size or default_chunk_size(rate)
    db, chunks, errors, inputs, scp = _plan(root, chunk_size)
    n_listed = len(db)
    database_csv = str(root / "ptbxl_database.csv")
    if progress and errors:
        progress(len(errors), n_listed)
    tmp = make_temp_dir(out_dir)
    try:
        results: list[ChunkResult] = []
        if client is None:
            backend = contextlib.nullcontext()
        else:
            backend = joblib.parallel_config(backend="dask", client=client)
        with backend:
            runner = joblib.Parallel(n_jobs=n_jobs if client is None else -1,
                                     return_as="generator")
            for res in runner(
                joblib.delayed(_convert_chunk)(
                    cid,
                    fold,
                    list(zip((pos + 2).tolist(), db.iloc[pos].to_dict("records"), strict=True)),
                    str(root),
                    rate,
                    str(tmp),
                    scp,
                    database_csv,
                    measurements,
                )
                for cid, fold, pos in chunks
            ):
                results.append(res)
                errors.extend(res.errors)
                if progress:
                    progress(res.n_records, n_listed)
        errors.sort(key=lambda e: (e["ecg_id"] if e["ecg_id"] is not None else -1, e["path"]))
        pq.write_table(pa.Table.from_pylist(errors, schema=ERRORS_SCHEMA), tmp / "errors.parquet")
        manifest = _manifest(root, rate, n_jobs, chunk_size, n_listed, results, errors, inputs,
                             measurements)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if not any(r.n_ok for r in results):
            raise NothingConvertedError(
                f"{root}: none of the {n_listed} records could be converted; nothing written. "
                "First errors:\n  " + "\n  ".join(e["message"] for e in errors[:5]))
        commit_output(tmp, out_dir, overwrite)
    except OSError as e:
        discard(tmp)
        if isinstance(e, OutputError):
            raise
        raise output_error(out_dir, e) from e
    except BaseException:
        discard(tmp)
        raise
    n_ok = sum(r.n_ok for r in results)
    summary = ConversionSummary(
        out_dir=out_dir,
        n_listed=n_listed,
        n_converted=n_ok,
        n_errors=len(errors),
        n_mi=sum(r.n_mi for r in results),
        seconds=time.perf_counter() - t0,
        manifest=manifest,
        first_errors=[e["message"] for e in errors[:5]],
    )
    _LOGGER.debug(summary.line())
    return summary


def _manifest(root, rate, n_jobs, chunk_size, n_listed, results, errors, inputs,
              measurements) -> dict:
    folds: dict[str, dict[str, int]] = {}
    for r in results:
        f = folds.setdefault(str(r.fold), {"records": 0, "mi": 0})
        f["records"] += r.n_ok
        f["mi"] += r.n_mi
    records_digest = hashlib.sha256("".join(r.sha256 for r in results).encode()).hexdigest()
    kinds: dict[str, int] = {}
    for e in errors:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    return {
        "dataset": "PTB-XL",
        "schema": RECORD_SCHEMA.metadata[b"contract"].decode(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {
            "root": str(root),
            "rate": rate,
            "n_jobs": n_jobs,
            "chunk_size": chunk_size,
            "compression": COMPRESSION,
            "measurements": measurements,
        },
        "counts": {
            "listed": n_listed,
            "converted": sum(r.n_ok for r in results),
            "errors": len(errors),
            "mi": sum(r.n_mi for r in results),
            "errors_by_kind": dict(sorted(kinds.items())),
            "per_fold": dict(sorted(folds.items(), key=lambda kv: int(kv[0]))),
            "quality": _sum_counts(r.quality for r in results),
        },
        "checksums": {
            "inputs_sha256": inputs,
            "records_sha256": records_digest,
        },
        "versions": package_versions("mi-screen", "numpy", "pyarrow", "pandas", "joblib", "wfdb"),
    }


def _sum_counts(counts) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return dict(sorted(total.items()))


def open_dataset(out_dir: str | os.PathLike[str]) -> ds.Dataset:
    """Open the record dataset written by :func:`convert_ptbxl` (with ``strat_fold`` typed)."""
    records = Path(out_dir) / "records"
    if not records.is_dir():
        raise FileNotFoundError(
            f"{out_dir}: no records/ folder; is this the output of `ingest ptbxl`?"
        )
    return ds.dataset(
        records,
        format="parquet",
        schema=RECORD_SCHEMA.append(PARTITION_SCHEMA.field("strat_fold")),
        partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
    )


def signals_from_table(table: pa.Table) -> np.ndarray:
    """The ``signal`` column as one int16 array ``(n_records, n_samples, 12)``, zero-copy.

    All records must share one length (true of PTB-XL at a given rate).
    """
    col = table.column("signal").combine_chunks()
    n = len(col)
    if n == 0:
        return np.zeros((0, 0, len(LEADS)), dtype=np.int16)
    lengths = np.diff(col.offsets.to_numpy())
    if (lengths != lengths[0]).any():
        odd = np.flatnonzero(lengths != np.median(lengths))[:5]
        ids = (table.column("ecg_id").to_numpy()[odd].tolist()
               if "ecg_id" in table.column_names else odd.tolist())
        raise ValueError(
            "records have different lengths: ecg_id "
            + ", ".join(f"{i} ({n // len(LEADS)} samples)" for i, n in zip(ids, lengths[odd],
                                                                          strict=True))
            + f" differ from the usual {int(np.median(lengths)) // len(LEADS)}; re-ingest with "
            "this version (it refuses such records) or select one sampling rate")
    values = col.values.to_numpy(zero_copy_only=False)
    start = col.offsets[0].as_py()
    return values[start : start + n * lengths[0]].reshape(n, -1, len(LEADS))
