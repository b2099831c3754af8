"""Pieces shared by the ``ingest``, ``train`` and ``infer`` command lines.

Library code raises typed exceptions and logs; only these helpers print or exit.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from schemas import ExitCode


def verbosity_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``-v/--verbose`` and ``-q/--quiet``, shared by every command."""
    f = click.option("-q", "--quiet", is_flag=True, help="Only print warnings and errors.")(f)
    f = click.option("-v", "--verbose", is_flag=True, help="Print debug messages.")(f)
    return f


def setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # the console keeps this level even where a logger is lowered for a file of its own
    # (train.log takes the train loggers at INFO under -q)
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    # object-storage and cluster clients narrate every connection at INFO
    for noisy in ("aiobotocore", "botocore", "s3fs", "fsspec", "distributed"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def fail(message: str, code: ExitCode) -> None:
    """Print ``Error: message`` to stderr and exit with ``code``."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(int(code))


@contextlib.contextmanager
def exit_codes(*fatal: type[BaseException]) -> Iterator[None]:
    """Turn the errors every command can meet into their exit codes (one line on stderr):
    an output that is an input (USAGE), an existing output (OUTPUT_EXISTS), an output that
    cannot be written (OUTPUT_ERROR), and the command's own ``fatal`` types (FATAL)."""
    from common.errors import OutputError, OutputExistsError, OutputIsInputError

    try:
        yield
    except OutputIsInputError as e:
        fail(str(e), ExitCode.USAGE)
    except OutputExistsError as e:
        fail(str(e), ExitCode.OUTPUT_EXISTS)
    except OutputError as e:
        fail(str(e), ExitCode.OUTPUT_ERROR)
    except fatal as e:
        fail(str(e), ExitCode.FATAL)


@contextlib.contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A click progress bar on a terminal (stderr), a no-op otherwise.

    Yields the library's progress callback ``(n_just_done, total)``; the bar is drawn from the
    first call, so the caller need not know the total in advance.
    """
    if not enabled or not sys.stderr.isatty():
        yield lambda n, total: None
        return
    bar = None

    def update(n: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
            bar.__enter__()
        bar.update(n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def parse_bands(ctx: click.Context, param: click.Parameter, value: str | None):
    """click callback for ``--bands LOW,HIGH`` (train fit and infer score)."""
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected LOW,HIGH such as 0.2,0.6; got {value!r}") from None
    if not 0 <= low <= high <= 1:
        raise click.BadParameter(f"need 0 <= LOW <= HIGH <= 1; got {value!r}")
    return low, high


def n_jobs_option(default: int = -1):
    """``--n-jobs``: worker processes, -1 one per core (-2 all but one, ...); 0 is refused."""

    def check(ctx: click.Context, param: click.Parameter, value):
        if value == 0:
            raise click.BadParameter("must be a positive number of workers, or -1 for one per "
                                     "core (-2 all but one, ...); 0 would run nothing")
        return value

    return click.option("--n-jobs", type=int, default=default, show_default=default is not None,
                        callback=check,
                        help="Worker processes (-1: one per core). The output is the same for "
                             "any value.")


def stop_workers() -> None:
    """Shut down joblib's reusable worker processes, which otherwise outlive the command by
    minutes (loky's idle timeout)."""
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None) if loky else None
    if executor is not None:
        with contextlib.suppress(Exception):
            executor.shutdown(wait=False, kill_workers=True)


@contextlib.contextmanager
def terminating_cleanly() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, ``kill``) ends the command like Ctrl-C: temporary outputs
    are removed by the code that made them, worker processes are stopped, and the exit code
    is 143 (128 + SIGTERM).  Workers are stopped at any exit."""

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (e.g. a test runner's worker): leave it alone
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        stop_workers()


class _SkipPandas:
    """A meta-path finder that answers "not installed" for pandas (see below)."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            raise ModuleNotFoundError("pandas skipped by mi-screen's start-up", name=name)
        return None


def skip_pyarrow_pandas_import() -> None:
    """Spare a command that never hands pandas objects to pyarrow the 0.15-0.2 s pyarrow spends
    importing pandas the first time it builds an array from Python values (its pandas shim
    looks for pandas types on every such call).

    The shim is asked once while pandas looks absent; it remembers that, and builds arrays
    without importing pandas from then on.  pandas itself stays importable, and anything that
    needs it through pyarrow (``Table.to_pandas``, ``Table.from_pandas``) still works: those
    calls import it when they run.  A no-op when pandas is already imported.
    """
    if "pandas" in sys.modules:
        return
    finder = _SkipPandas()
    sys.meta_path.insert(0, finder)
    try:
        import pyarrow as pa

        pa.array([0])
    finally:
        sys.meta_path.remove(finder)
