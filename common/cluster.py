"""Dask clusters for the stages that fan out (``ingest ptbxl`` and ``infer score``).

``--scheduler ADDRESS`` (or ``DASK_SCHEDULER_ADDRESS``) connects to a running scheduler; without
it every stage runs on this machine's processes.  Needs the ``cluster`` extra
(``pip install 'mi-screen[cluster]'``: dask.distributed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click


class ClusterExtraMissing(ImportError):
    """--scheduler was given but dask.distributed is not installed."""


class ClusterError(OSError):
    """The Dask scheduler cannot be reached, or the cluster has no workers."""


def distributed_module():
    try:
        import distributed
    except ImportError as e:
        raise ClusterExtraMissing(
            "--scheduler needs dask.distributed: pip install 'mi-screen[cluster]'") from e
    return distributed


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address`` (``tcp://host:8786``), or None without one.

    Raises ClusterError (one line: where, what, the fix) when the scheduler cannot be reached
    or has no workers within Dask's connect timeout (``distributed.comm.timeouts.connect``,
    30 s unless ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT`` says otherwise).
    """
    if not address:
        yield None
        return
    distributed = distributed_module()
    import dask

    timeout = dask.utils.parse_timedelta(
        dask.config.get("distributed.comm.timeouts.connect"), default="s")
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ClusterError(
            f"{address}: cannot reach the Dask scheduler ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else 'timed out'}); start it with "
            "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`, or drop "
            "--scheduler (and DASK_SCHEDULER_ADDRESS) to run on this machine") from e
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as e:
            raise ClusterError(
                f"{address}: the scheduler has no workers after {timeout:.0f} s; start some "
                "with `dask worker ADDRESS --nthreads 1`") from e
        yield client
    finally:
        client.close()


def scheduler_option(what: str):
    """``--scheduler ADDRESS`` (env DASK_SCHEDULER_ADDRESS) for a command that fans out."""
    return click.option(
        "--scheduler", envvar="DASK_SCHEDULER_ADDRESS", default=None, metavar="ADDRESS",
        help=f"Run on a Dask cluster (tcp://host:8786; env DASK_SCHEDULER_ADDRESS): {what} "
             "(needs the cluster extra) [default: this machine's processes].")
