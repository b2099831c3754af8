"""Scoring on a Dask cluster (``infer score --scheduler ADDRESS``; the ``cluster`` extra).

The client plans the run and writes the output; each part of the plan is one task.  A worker
process keeps one onnxruntime session per model (its intra-op threads are the worker's
threads: start workers with ``--nthreads 1`` and one process per core, the layout onnxruntime
wants), reads the part's inputs itself and sends back only the results rows.  The model goes
to the workers as bytes, once, so they need not see the client's files; the inputs must be
reachable from every worker (a shared folder, or object storage URLs).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from common.cluster import ClusterError, distributed_module

#: Parts in flight per worker thread: enough to keep workers busy, few enough that the
#: client holds the rows of a handful of parts whatever the size of the run.
IN_FLIGHT_PER_THREAD = 3


def _score_part(i: int, items: list[tuple[str, str]], data: bytes, sha256: str, options,
                bands, root: str | None) -> tuple[int, list[dict[str, Any]]]:
    """Task: the rows of one part, read and scored in the worker with its own session, whose
    intra-op threads are the worker's threads."""
    from distributed import get_worker

    from infer.score import score_slice

    threads = max(1, int(get_worker().state.nthreads))
    return score_slice(i, items, data, sha256, options, bands, root, threads)


def score_parts(client, parts: dict[int, list[tuple[str, str]]], model, options, bands,
                root: str | None, progress: Callable[[int, int], None] | None = None
                ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Yield ``(part, rows)`` as the cluster finishes them (any order), keeping at most
    IN_FLIGHT_PER_THREAD parts per worker thread in flight."""
    distributed = distributed_module()
    threads = sum(client.nthreads().values()) or 1
    data = client.scatter(model.data, broadcast=True, hash=True)
    total = sum(len(v) for v in parts.values())
    pending = list(parts.items())
    pending.reverse()
    root = None if root is None else os.fspath(root)
    run = uuid.uuid4().hex[:12]  # task keys of two runs on one cluster never meet

    def submit():
        i, items = pending.pop()
        return client.submit(_score_part, i, items, data, model.sha256, options, bands, root,
                             key=f"mi-screen-{run}-part-{i}", retries=2)

    running = distributed.as_completed(
        [submit() for _ in range(min(len(pending), threads * IN_FLIGHT_PER_THREAD))],
        loop=client.loop)
    for future in running:
        try:
            i, rows = future.result()
        except Exception as e:  # a worker that died three times (KilledWorker), a lost link
            raise ClusterError(
                f"{future.key}: failed on the cluster ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}); the parts finished so far "
                "are kept: check the workers' logs and re-run with --resume") from e
        future.release()
        if pending:
            running.add(submit())
        if progress:
            progress(len(parts[i]), total)
        yield i, rows
