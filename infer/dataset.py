"""Partitioned results for large runs: a Parquet dataset of parts, a plan and a manifest.

``infer score --out DIR/`` writes, in DIR (a local folder or an fsspec URL such as
``s3://bucket/tonight/``)::

    _run.json            what the run is: model (SHA-256), options, bands, number of parts
    _plan.parquet        every input with the part it belongs to (fixed when the run starts)
    part-00000.parquet   the results rows of part 0 (RESULTS_SCHEMA), in input order
    ...
    _manifest.json       written last: parts, rows, counts per status and band

Each part is written whole (a temporary name renamed into place, or one object upload), so a
run killed at any moment leaves only finished parts.  ``--resume`` reads the plan, checks that
the model and options are the run's own, and scores only the parts that are missing; the
finished dataset is the one an uninterrupted run writes (``scored_at`` aside, which is the
time each part was scored).  The folder is a dataset without the manifest too: readers
(``pyarrow.dataset``, pandas, Spark, DuckDB) skip names starting with ``_`` or ``.``;
:func:`read_results` reads a file or a dataset and refuses an unfinished one.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import OutputError, OutputExistsError
from common.storage import Folder, is_url
from infer.score import (
    CHUNK_RECORDS,
    Model,
    ScoreOptions,
    ScoreSummary,
    _chunks,
    finish_rows,
    new_summary,
    score_chunks,
    skipped_rows,
)
from schemas import RESULTS_SCHEMA

_LOGGER = logging.getLogger(__name__)

RUN, PLAN, MANIFEST = "_run.json", "_plan.parquet", "_manifest.json"
PLAN_SCHEMA = pa.schema([
    pa.field("path", pa.string(), nullable=False),
    pa.field("format", pa.string(), nullable=False),  # "skipped": set aside by discovery
    pa.field("part", pa.int32(), nullable=False),
    pa.field("reason", pa.string()),  # why a skipped input was set aside
])


class ResumeError(ValueError):
    """``--resume`` on a folder that is not this run's: another model, options or inputs."""


class UnfinishedDatasetError(ValueError):
    """A results dataset without its manifest: the run was stopped before the end."""


def is_dataset_target(out: str) -> bool:
    """``--out`` names a partitioned dataset: it ends in a slash, or is an existing folder."""
    import os

    return out.endswith("/") or (not is_url(out) and os.path.isdir(out))


def part_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _run_identity(model: Model, options: ScoreOptions, bands, n_parts: int,
                  n_inputs: int) -> dict[str, Any]:
    """What a resumed run must share with the run it finishes."""
    return {
        "model_sha256": model.sha256,
        "model_name": model.contract.model_name,
        "options": asdict(options),
        "bands": list(bands) if bands is not None else None,
        "parts": n_parts,
        "inputs": n_inputs,
        "results_schema": RESULTS_SCHEMA.metadata[b"contract"].decode(),
    }


def _plan_table(chunks: Sequence[Sequence[tuple[str, str]]],
                skipped: Sequence[tuple[str, str]]) -> pa.Table:
    """The plan as a table, built part by part (no list of every path on the way: the
    client's memory stays that of the inputs themselves)."""
    batches = []
    for i, chunk in enumerate(chunks):
        batches.append(pa.record_batch(
            [[p for p, _ in chunk], [f for _, f in chunk], pa.array([i] * len(chunk), pa.int32()),
             pa.nulls(len(chunk), pa.string())], schema=PLAN_SCHEMA))
    if skipped:  # a part of their own, after the inputs
        batches.append(pa.record_batch(
            [[p for p, _ in skipped], ["skipped"] * len(skipped),
             pa.array([len(chunks)] * len(skipped), pa.int32()), [w for _, w in skipped]],
            schema=PLAN_SCHEMA))
    return pa.Table.from_batches(batches, schema=PLAN_SCHEMA)


def _plan_parts(plan: pa.Table) -> dict[int, list[tuple[str, str]]]:
    """``{part: [(path, format), ...]}``; the skipped part holds ``(path, reason)``."""
    out: dict[int, list] = {}
    for path, fmt, part, reason in zip(*(plan.column(c).to_pylist() for c in plan.column_names),
                                       strict=True):
        out.setdefault(part, []).append((path, reason) if fmt == "skipped" else (path, fmt))
    return out


def score_to_dataset(
    inputs: Sequence[tuple[str, str]],
    model: Model,
    out: str,
    options: ScoreOptions | None = None,
    bands: tuple[float, float] | None = None,
    n_jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop_on_error: bool = False,
    skipped: Sequence[tuple[str, str]] = (),
    root: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    part_records: int = CHUNK_RECORDS,
    client=None,
) -> ScoreSummary:
    """Score ``inputs`` into the results dataset ``out`` (see the module docstring).

    ``client`` (a ``distributed.Client``) runs the parts on a Dask cluster
    (:mod:`infer.cluster`); otherwise they run here, read by ``n_jobs`` processes.  Returns
    the summary of the whole dataset (resumed parts included).

    Raises OutputExistsError (the folder holds files; ``resume`` or ``overwrite``),
    ResumeError (``resume`` with another model or options), OutputError (writing failed:
    the parts written so far are kept for ``resume``).
    """
    t0 = time.perf_counter()
    options = options or ScoreOptions()
    folder = Folder(out)
    names = folder.names()
    if names and not (resume or overwrite):
        finished = MANIFEST in names
        raise OutputExistsError(
            f"{out}: output exists"
            + ("" if finished else " (an unfinished run: pass --resume to finish it)")
            + "; pass --overwrite to replace it, or choose another --out")
    identity = None
    if names and resume and RUN in names:
        identity, plan = _check_resumable(folder, model, options, bands)
        if MANIFEST in names:
            _LOGGER.info("%s: the run is already complete; nothing to score", out)
            summary = _summary_from_manifest(folder, model)
            summary.scored_now = 0
            return summary
    elif names and resume:
        raise ResumeError(f"{out}: not a results dataset (no {RUN}); --resume continues a run "
                          "that `infer score --out DIR/` started: choose that folder")
    if identity is None:
        if names:  # --overwrite: the manifest goes first, so the folder reads as unfinished
            for name in [MANIFEST, *[n for n in names if n != MANIFEST]]:
                folder.remove(name)
        chunks = _chunks(inputs, part_records)
        plan = _plan_table(chunks, skipped)
        identity = _run_identity(model, options, bands, len(chunks) + bool(skipped),
                                 len(inputs))
        identity["started_at"] = datetime.now(UTC).isoformat()
        folder.write(PLAN, _parquet_bytes(plan))
        folder.write(RUN, (json.dumps(identity, indent=2) + "\n").encode())
        parts = dict(enumerate(chunks))  # the plan, without reading it back
        if skipped:
            parts[len(chunks)] = list(skipped)
        skipped_part = len(chunks) if skipped else None
    else:
        parts = _plan_parts(plan)
        skipped_part = len(parts) - 1 if skipped_part_exists(plan) else None
    del plan
    done = {n for n in folder.names() if n.startswith("part-")}
    todo = {i: items for i, items in parts.items() if part_name(i) not in done}
    if done:
        _LOGGER.info("%s: resuming: %d of %d parts done, %d inputs to score", out,
                     len(parts) - len(todo), len(parts),
                     sum(len(v) for v in todo.values()))
    scratch = new_summary(model)
    scored_now = 0
    for i, rows in _run_parts(todo, skipped_part, model, options, bands, n_jobs, root,
                              progress, client):
        finish_rows(rows, model, datetime.now(UTC), scratch, stop_on_error)
        scored_now += len(rows)
        _check_still_there(folder)
        folder.write(part_name(i), _parquet_bytes(
            pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)))
    summary = _summarise(folder, model, len(parts))
    summary.seconds = time.perf_counter() - t0
    summary.scored_now = scored_now
    manifest = {**identity, "finished_at": datetime.now(UTC).isoformat(),
                "rows": summary.n, "status": summary.status, "bands_count": summary.bands,
                "files": [part_name(i) for i in sorted(parts)],
                "first_errors": summary.first_errors}
    folder.write(MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return summary


def _check_still_there(folder: Folder) -> None:
    """Refuse to go on writing into a folder that vanished or was emptied mid-run (writing
    would re-create it and leave a dataset without its first parts, plan and run file)."""
    if not folder.exists(RUN):
        raise OutputError(
            f"{folder}: cannot write the output: the folder vanished or was emptied while the "
            f"run was working ({RUN} is gone); nothing more is written. Find what removed it, "
            "then run again (the inputs are all still to score)")


def skipped_part_exists(plan: pa.Table) -> bool:
    return "skipped" in set(plan.column("format").to_pylist())


def _run_parts(todo: dict[int, list], skipped_part: int | None, model: Model,
               options: ScoreOptions, bands, n_jobs, root, progress,
               client) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Yield ``(part, rows)`` for every part in ``todo``, here or on the cluster."""
    if skipped_part is not None and skipped_part in todo:
        yield skipped_part, skipped_rows(todo.pop(skipped_part))
    order = sorted(todo)
    if client is not None:
        from infer.cluster import score_parts

        yield from score_parts(client, {i: todo[i] for i in order}, model, options, bands,
                               root, progress)
        return
    chunks = [todo[i] for i in order]
    yield from zip(order, score_chunks(chunks, model, options, bands, n_jobs, root, progress),
                   strict=True)


def _check_resumable(folder: Folder, model: Model, options: ScoreOptions, bands):
    identity = json.loads(folder.read(RUN))
    plan = pq.read_table(io.BytesIO(folder.read(PLAN)))
    mine = _run_identity(model, options, bands, identity.get("parts"), identity.get("inputs"))
    for key, what in (("model_sha256", "model"), ("options", "options"), ("bands", "--bands"),
                      ("results_schema", "results schema")):
        if identity.get(key) != mine[key]:
            raise ResumeError(
                f"{folder}: the run was started with another {what} ({key}: "
                f"{identity.get(key)!r}, now {mine[key]!r}); resume it with the same --model "
                "and options, or start a new run (another --out, or --overwrite)")
    return identity, plan


def _summarise(folder: Folder, model: Model, n_parts: int) -> ScoreSummary:
    """Counts over every part of the dataset (the resumed ones too)."""
    summary = new_summary(model)
    for i in range(n_parts):
        try:
            data = folder.read(part_name(i))
        except OSError as e:
            raise OutputError(
                f"{folder.path(part_name(i))}: cannot read back a finished part ({e.strerror or e}"
                "); the folder was changed while the run was working: re-run with --resume") from e
        t = pq.read_table(io.BytesIO(data), columns=["status", "band", "message"])
        for status, band, message in zip(*(t.column(c).to_pylist() for c in t.column_names),
                                         strict=True):
            summary.n += 1
            summary.status[status] += 1
            if band:
                summary.bands[band] += 1
            if status == "error" and len(summary.first_errors) < 5:
                summary.first_errors.append(message)
    return summary


def _summary_from_manifest(folder: Folder, model: Model) -> ScoreSummary:
    m = json.loads(folder.read(MANIFEST))
    summary = new_summary(model)
    summary.n = m["rows"]
    summary.status.update(m["status"])
    summary.bands.update(m["bands_count"])
    summary.first_errors = m.get("first_errors", [])
    return summary


def read_results(path: str) -> pa.Table:
    """A results table: one Parquet or CSV file, or a finished dataset (its parts in order)."""
    if not is_dataset_target(path) and not (is_url(path) and path.endswith("/")):
        if path.lower().endswith(".csv"):
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
        return pq.read_table(path)
    folder = Folder(path)
    names = folder.names()
    if MANIFEST not in names:
        raise UnfinishedDatasetError(
            f"{path}: " + ("an unfinished run (no _manifest.json): finish it with `infer score "
                           "... --out DIR/ --resume`" if RUN in names else
                           "not a results dataset (no _manifest.json)"))
    files = json.loads(folder.read(MANIFEST))["files"]
    return pa.concat_tables(
        [pq.read_table(io.BytesIO(folder.read(n))) for n in files]).cast(RESULTS_SCHEMA)
