"""``ingest``: convert PTB-XL to a partitioned Parquet dataset."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from common.cli import (
    exit_codes,
    fail,
    n_jobs_option,
    progress_bar,
    setup_logging,
    terminating_cleanly,
    verbosity_options,
)
from common.cluster import ClusterError, ClusterExtraMissing, connect, scheduler_option
from common.errors import MetadataError
from ingest.convert import NothingConvertedError, convert_ptbxl
from ingest.download import PTBXL_URL, DownloadError, download_ptbxl
from schemas import RATES, ExitCode

_LOGGER = logging.getLogger("ingest")


@click.group()
@click.version_option(package_name="mi-screen")
def cli() -> None:
    """Turn ECG corpora into the pipeline's Parquet datasets.

    Exit codes: 0 all records converted; 1 some records failed (listed in errors.parquet);
    2 bad command line (also: --out is, contains or lies inside --root); 3 nothing done
    (unusable metadata, or no record could be converted); 4 output exists (use --overwrite);
    5 the output could not be written (disk full, read-only, permission); 143 stopped by
    SIGTERM (nothing left behind).
    """


@cli.command()
@click.option(
    "--root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="PTB-XL folder with ptbxl_database.csv, scp_statements.csv, records100/, records500/.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (created; must not exist unless --overwrite).",
)
@click.option(
    "--rate",
    type=click.Choice([str(r) for r in RATES]),
    default="100",
    show_default=True,
    help="Which copy of each record to convert (Hz).",
)
@n_jobs_option()
@scheduler_option("each chunk is a task; --root and --out must be folders every worker sees")
@click.option(
    "--measurements", is_flag=True,
    help="Add heart rate, RR, QRS duration and R/T amplitudes (lead II) per record (needs the "
         "signals extra; about 40 ms per record). Quality columns are always filled.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing --out once the new one is complete."
)
@verbosity_options
def ptbxl(
    root: Path, out: Path, rate: str, n_jobs: int, scheduler: str | None, measurements: bool,
    overwrite: bool, verbose: bool, quiet: bool,
) -> None:
    """Convert every record listed in ptbxl_database.csv to Parquet, partitioned by strat_fold.

    Each row holds the record's ids, patient metadata, SCP codes with likelihoods, diagnostic
    superclasses, the MI label (any SCP code whose diagnostic_class is MI), the signal-quality
    verdict (good / poor / unusable, as `infer score` judges it) and the int16 signal.
    Records that cannot be converted are listed in OUT/errors.parquet with the reason and the
    fix; the rest are converted. OUT/manifest.json records counts, checksums and versions.

    Example:

    \b
        ingest ptbxl --root data/ptbxl-sample --out out/ptbxl-100
        ingest ptbxl --root /data/ptb-xl-1.0.3 --out out/ptbxl-500 --rate 500
    """
    setup_logging(verbose, quiet)
    if measurements:
        from signals.measure import MeasurementExtraMissing, require_neurokit

        try:
            require_neurokit()
        except MeasurementExtraMissing as e:
            fail(str(e), ExitCode.FATAL)
    with exit_codes(MetadataError, NothingConvertedError, ClusterError, ClusterExtraMissing), \
            terminating_cleanly(), connect(scheduler) as client, \
            progress_bar(f"ingest {rate} Hz", enabled=not quiet) as update:
        summary = convert_ptbxl(
            root, out, rate=int(rate), n_jobs=n_jobs, overwrite=overwrite, progress=update,
            measurements=measurements, client=client,
        )
    for message in summary.first_errors:
        _LOGGER.warning(message)
    if summary.n_errors > len(summary.first_errors):
        _LOGGER.warning(
            "... %d more errors in %s", summary.n_errors - len(summary.first_errors),
            out / "errors.parquet",
        )
    click.echo(summary.line(), err=quiet)
    if summary.n_errors:
        raise SystemExit(int(ExitCode.PARTIAL))


@cli.command()
@click.option("--input", "input_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ECG5000 file: the UCR .txt (class first) or TensorFlow's ecg.csv (label "
                   "last); the layout is detected from the content.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created; must not exist unless --overwrite).")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --out once the new one is complete.")
@verbosity_options
def ecg5000(input_file: Path, out: Path, overwrite: bool, verbose: bool, quiet: bool) -> None:
    """Convert ECG5000 heartbeats (140 samples each) to OUT/beats.parquet.

    Each row holds the beat's line number, its class (1 normal, 2-5 abnormal types; empty for
    the two-class ecg.csv) and the binary label `abnormal` (any class but 1), with the 140
    samples. Rows that are not beats are listed in OUT/errors.parquet with the line, the
    problem and the fix; the rest are converted. ECG5000 comes from one patient with heart
    failure: models trained on it are demonstrations.

    Example:

    \b
        ingest ecg5000 --input data/ecg5000/ECG5000_TRAIN.txt --out out/ecg5000
    """
    from ingest.ecg5000 import BeatFileError, convert_ecg5000

    setup_logging(verbose, quiet)
    with exit_codes(BeatFileError, NothingConvertedError), terminating_cleanly():
        summary = convert_ecg5000(input_file, out, overwrite=overwrite)
    for message in summary.first_errors:
        _LOGGER.warning(message)
    click.echo(summary.line(), err=quiet)
    if summary.n_errors:
        raise SystemExit(int(ExitCode.PARTIAL))


@cli.command()
@click.option(
    "--dest",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to unpack PTB-XL into (new or empty).",
)
@click.option("--url", default=PTBXL_URL, show_default=True, help="Archive to download.")
@verbosity_options
def download(dest: Path, url: str, verbose: bool, quiet: bool) -> None:
    """Download the full PTB-XL corpus from PhysioNet (about 1.7 GB) and unpack it.

    Needs internet access; offline it stops with exit code 3 and says how to get the corpus by
    hand. Then convert it with `ingest ptbxl --root DEST --out ...`.

    Example:

    \b
        ingest download --dest ~/data/ptb-xl
        make ingest train export PTBXL_DIR=~/data/ptb-xl
    """
    setup_logging(verbose, quiet)
    try:
        root = download_ptbxl(dest, url=url)
    except DownloadError as e:
        fail(str(e), ExitCode.FATAL)
    click.echo(f"PTB-XL is in {root}")


if __name__ == "__main__":  # pragma: no cover
    cli()
