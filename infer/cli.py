"""``infer``: score folders of ECG records with an exported ONNX model (no TensorFlow)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from common.cli import (
    exit_codes,
    fail,
    parse_bands,
    progress_bar,
    setup_logging,
    skip_pyarrow_pandas_import,
    terminating_cleanly,
    verbosity_options,
)
from common.cluster import scheduler_option
from common.errors import OutputError, OutputExistsError, OutputIsInputError, RecordError
from common.io import check_not_input
from schemas import ExitCode, ModelContractError

_LOGGER = logging.getLogger("infer")
#: Where `make export` writes the model; used when --model is not given.
DEFAULT_MODEL = os.environ.get("MI_SCREEN_MODEL", "out/model.onnx")


@click.group()
@click.version_option(package_name="mi-screen")
def cli() -> None:
    """Score ECG records for myocardial infarction with an exported ONNX model.

    Exit codes: 0 every record scored (warnings and skipped non-inputs included); 1 some
    records could not be scored (error rows in the results); 2 bad command line (also: --out is
    or lies inside an input, or is the model; --resume of a run with another model or
    options); 3 nothing scored: unusable model, empty input folder, every record failed (the
    results still list why), an error with --fail-on-error, an unreachable Dask scheduler, a
    missing extra; 4 output exists (use --overwrite, or --resume for an unfinished dataset);
    5 the results could not be written (disk full, read-only, permission, bucket: nothing
    partial is left; a dataset --out DIR/ keeps its finished parts for --resume); 143
    stopped by SIGTERM.
    """


def _input_location(ctx, param, value: str) -> str:
    """--input: a folder that exists, or an fsspec URL (checked when it is listed)."""
    from common.storage import is_url

    if not is_url(value) and not os.path.isdir(value):
        raise click.BadParameter(f"{value!r} is not a folder (nor a URL such as s3://bucket/x/)")
    return value


@cli.command()
@click.option("--input", "input_dir", required=True, callback=_input_location, metavar="DIR|URL",
              help="Folder, or fsspec URL (s3://, gs://, file://), searched for WFDB records "
                   "(.hea + signal file), CSV files and hospital exports (DICOM, HL7 aECG, GE "
                   "MUSE and Philips XML, EDF).")
@click.option("--out", required=True, metavar="FILE|DIR/",
              help="Results: a Parquet file, a CSV file (name ending in .csv), or, for large "
                   "runs, a partitioned dataset: a folder or URL ending in '/' (parts, plan, "
                   "manifest; resumable with --resume).")
@click.option("--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="ONNX model from `train export` (env MI_SCREEN_MODEL sets the default).")
@click.option("--pattern", default=None, metavar="GLOB",
              help="Only inputs whose relative path or name matches, e.g. '*_hr.hea'.")
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Search subfolders.")
@click.option("--csv-fs", type=click.FloatRange(min=1, min_open=False), default=None,
              metavar="HZ", help="Sampling rate of CSV inputs [default: the model's rate].")
@click.option("--csv-units", type=click.Choice(["mV", "uV", "V"]), default="mV",
              show_default=True, help="Units of CSV inputs.")
@click.option("--pad-short", is_flag=True,
              help="Score records shorter than the model input, padded with zeros (warning).")
@click.option("--allow-missing-leads", is_flag=True,
              help="Score records with missing leads, filled with zeros (warning).")
@click.option("--measurements", is_flag=True,
              help="Add heart rate, RR, QRS duration and R/T amplitudes (lead II) to each row "
                   "(needs the signals extra; about 40 ms per record), and the MI criteria "
                   "columns for any model (a criteria model adds those always).")
@click.option("--explain", is_flag=True,
              help="Add per-lead and per-second attributions (occlusion: how much the MI "
                   "probability falls when a lead, or a second of every lead, is set to 0 mV); "
                   "about 22 extra forward passes per 10 s record.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None,
              help="Write a 12-lead ECG page (PNG, 25 mm/s, 10 mm/mV) for every record in the "
                   "MI or borderline band and every record the quality gate rejects (needs "
                   "Pillow: the plots extra; a few ms a page); the page column of the results "
                   "names it.")
@click.option("--beats", is_flag=True,
              help="Beat models: cut 12-lead records into beats around R peaks (needs the "
                   "signals extra) and report per record the number and fraction of abnormal "
                   "beats. Beat files (.txt, .csv) are scored beat by beat without it.")
@click.option("--beat-lead", default="II", show_default=True,
              help="With --beats: the lead the beats are cut from.")
@click.option("--bands", callback=parse_bands, default=None, metavar="LOW,HIGH",
              help="Band thresholds [default: the model's, chosen on validation].")
@click.option("--n-jobs", type=int, default=None,
              help="Worker processes for large batches, each reading and scoring with its "
                   "own one-thread onnxruntime session [default: one per core].")
@scheduler_option("each part of a dataset --out is a task")
@click.option("--resume", is_flag=True,
              help="With --out DIR/: finish a run that was stopped (killed, crashed, disk "
                   "full); only the missing parts are scored. Refused if the model or options "
                   "differ. A finished run is left as it is.")
@click.option("--part-records", type=click.IntRange(min=1), default=512, show_default=True,
              help="With --out DIR/: inputs per part (the unit of resuming and of cluster "
                   "tasks).")
@click.option("--fail-on-error", is_flag=True,
              help="Stop at the first record that cannot be scored; write nothing (exit 3).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@verbosity_options
def score(input_dir, out, model_path, pattern, recursive, csv_fs, csv_units, pad_short,
          allow_missing_leads, measurements, explain, plots_dir, beats, beat_lead, bands, n_jobs,
          scheduler, resume, part_records, fail_on_error, overwrite, verbose, quiet):
    """Score every ECG record under --input and write one results row per record.

    Each row has the MI probability, a band (normal / borderline / MI, from the model's
    thresholds or --bands) and a status: ok, warning (scored; read the message) or error
    (not scored; the message names the problem and the fix). A signal-quality gate runs on
    every record first: an unusable recording (flat leads, no heartbeats, noise swamping the
    ECG) is never scored, a poor one is scored with a warning (columns quality and
    quality_issues). Records are put in the model's
    lead order and resampled to its rate; longer records are scored in overlapping windows
    whose probabilities are aggregated as the model's contract says.

    A criteria model (the default `train fit --arch criteria`) scores the ECG's own MI
    criteria, measured on the median beat at the model's rate against the PR baseline, and
    every row says what drove the verdict: mi_criteria (the criteria met in two or more
    contiguous leads, in words: pathological Q, ST elevation or depression at J+60 ms, T
    inversion, per lead group inferior II/III/aVF, lateral I/aVL/V5/V6, anterior V1-V4; poor R
    progression), q_leads, st_elevation_leads, st_depression_leads, t_inversion_leads,
    st_max_mv and st_min_mv (highest and lowest ST, aVR left out), median_qrs_ms and
    poor_r_progression. A record that cannot be measured (fewer than 3 clean beats) says so
    in mi_criteria. lbbb_pattern marks a wide QRS of left bundle branch block shape (QRS at
    least 120 ms, V1 negative, I and V6 upright: LBBB or ventricular pacing), whose Q waves
    and ST-T changes come from the conduction: the criteria do not apply, so such a record
    is borderline whatever its probability (mi_probability is kept; the message says what
    band it alone would give) and the model's bands were chosen counting it so.

    With a beat model (`train fit --task beats`, ECG5000), beat files get one row per beat
    (abnormal_probability, band normal / borderline / abnormal), and --beats cuts 12-lead
    records into beats of --beat-lead and reports beats_scored and abnormal_fraction per record.

    Example:

    \b
        infer score --input data/ptbxl-sample/records100 --out results.parquet
        infer score --input exports/ --out results.csv --pattern '*.csv' --csv-fs 500
        infer score --model out/beats.onnx --input data/ecg5000 --out beats.parquet
        infer score --model out/beats.onnx --input records/ --beats --out per-record.parquet

    Large runs write a partitioned dataset (--out ending in '/'), which a stopped run finishes
    with --resume, here or on a Dask cluster (docs/cluster.md):

    \b
        infer score --input /archive --out results/ --resume
        infer score --input s3://ecgs/2026-11-25/ --out s3://results/2026-11-25/ \\
            --scheduler tcp://scheduler:8786 --resume
    """
    skip_pyarrow_pandas_import()  # 0.15 s of a cold start; the scorer hands pyarrow no pandas
    from common.storage import StorageExtraMissing, is_url
    from infer.score import Model, NoInputError, ScoreOptions

    setup_logging(verbose, quiet)
    dataset = out.endswith("/") or (not is_url(out) and os.path.isdir(out))
    if resume and not dataset:
        fail(f"--resume needs a partitioned --out (a folder or URL ending in '/'); {out} is a "
             "single file, which a run writes whole or not at all", ExitCode.USAGE)
    if scheduler and not dataset:
        fail(f"--scheduler needs a partitioned --out (a folder or URL ending in '/'), such as "
             f"{out.rsplit('.', 1)[0]}/", ExitCode.USAGE)
    if plots_dir is not None and plots_dir.name.startswith("-"):
        # `--plots -q` would take the flag for the folder and write pages into ./-q
        fail(f"--plots takes the folder for the ECG pages, got {plots_dir.name!r} (an option?); "
             "write --plots DIR, e.g. --plots pages", ExitCode.USAGE)
    try:
        local = [p for p in (input_dir, model_path) if not is_url(os.fspath(p))]
        if not is_url(out):
            check_not_input(out, local)
        if plots_dir is not None:
            check_not_input(plots_dir, local, option="--plots")
    except OutputIsInputError as e:
        fail(str(e), ExitCode.USAGE)
    if plots_dir is not None:
        from infer.plots import PlotExtraMissing, require_pillow

        try:
            require_pillow()
        except PlotExtraMissing as e:
            fail(str(e), ExitCode.FATAL)
    if not dataset and not is_url(out) and os.path.exists(out) and not overwrite:
        fail(f"{out}: output exists; pass --overwrite to replace it, or choose another --out",
             ExitCode.OUTPUT_EXISTS)
    try:
        model = Model(model_path)
    except (FileNotFoundError, ModelContractError) as e:
        fail(str(e), ExitCode.FATAL)
    task = model.contract.task
    if beats and task != "beats":
        fail(f"--beats needs a beat model; {model_path} is an {task.upper()} model (train one "
             "with `train fit --task beats`)", ExitCode.USAGE)
    if beats:
        from schemas import canonical_lead

        lead = canonical_lead(beat_lead)
        if lead is None:
            fail(f"--beat-lead {beat_lead!r} is not a lead name (I, II, V1, aVR, ...)",
                 ExitCode.USAGE)
        beat_lead = lead
    if measurements or beats:
        from signals.measure import MeasurementExtraMissing, require_neurokit

        try:
            require_neurokit()
        except MeasurementExtraMissing as e:
            fail(str(e), ExitCode.FATAL)
    options = ScoreOptions(csv_fs=csv_fs, csv_units=csv_units, pad_short=pad_short,
                           allow_missing_leads=allow_missing_leads, measurements=measurements,
                           beats=beats, beat_lead=beat_lead, explain=explain,
                           plots=str(plots_dir) if plots_dir is not None else None)
    from common.cluster import ClusterError, ClusterExtraMissing
    from infer.dataset import ResumeError

    table = None
    try:
        with terminating_cleanly():
            with progress_bar("scoring", enabled=not quiet) as update:
                if dataset:
                    summary = _score_dataset(input_dir, out, model, options, pattern, recursive,
                                             bands, n_jobs, update, fail_on_error, resume,
                                             overwrite, part_records, scheduler)
                else:
                    from infer.score import score_dir, write_results

                    table, summary = score_dir(input_dir, model, pattern=pattern,
                                               recursive=recursive, options=options,
                                               bands=bands, n_jobs=n_jobs, progress=update,
                                               stop_on_error=fail_on_error)
            if table is not None:
                write_results(table, out, overwrite=overwrite)
    except NoInputError as e:
        fail(str(e), ExitCode.FATAL)
    except RecordError as e:
        fail(f"{e} (--fail-on-error: " + ("the parts finished so far are kept)" if dataset
                                           else "nothing written)"), ExitCode.FATAL)
    except OutputExistsError as e:
        fail(str(e), ExitCode.OUTPUT_EXISTS)
    except ResumeError as e:
        fail(str(e), ExitCode.USAGE)
    except OutputError as e:
        fail(str(e) + ("; the parts written so far are kept: re-run with --resume once it is "
                       "fixed" if dataset else ""), ExitCode.OUTPUT_ERROR)
    except (StorageExtraMissing, ClusterExtraMissing, ClusterError) as e:
        fail(str(e), ExitCode.FATAL)
    for message in summary.first_errors:
        _LOGGER.warning(message)
    if table is not None:
        for status, message in zip(table["status"].to_pylist(), table["message"].to_pylist(),
                                   strict=True):
            if status == "skipped":
                _LOGGER.info("skipped %s", message)
    click.echo(f"{summary.line()} -> {out}", err=quiet)
    if summary.ignored:
        from infer.score import _ignored_text

        click.echo(f"not ECG inputs, not scored: {_ignored_text(summary.ignored)} files "
                   "(inputs are WFDB .hea, .csv, DICOM, HL7 aECG / GE MUSE / Philips .xml, "
                   ".edf)", err=quiet)
    click.echo(_bands_line(model.contract, bands), err=quiet)
    if summary.status["error"] and not summary.scored:
        fail(f"none of the {summary.status['error']} records could be scored; {out} lists "
             "why, row by row", ExitCode.FATAL)
    if summary.status["error"]:
        raise SystemExit(int(ExitCode.PARTIAL))


def _score_dataset(input_dir, out, model, options, pattern, recursive, bands, n_jobs, progress,
                   fail_on_error, resume, overwrite, part_records, scheduler):
    """infer score --out DIR/: discover, then score part by part, here or on the cluster."""
    from common.cluster import connect
    from common.storage import is_url
    from infer.dataset import score_to_dataset
    from infer.score import find_inputs

    found = find_inputs(input_dir, model, pattern, recursive)
    with connect(scheduler) as client:
        if client is not None:
            _LOGGER.info("scoring on the Dask cluster at %s (%d workers)", scheduler,
                         len(client.scheduler_info().get("workers", {})))
        summary = score_to_dataset(
            found.inputs, model, out, options=options, bands=bands, n_jobs=n_jobs,
            progress=progress, stop_on_error=fail_on_error, skipped=found.skipped,
            root=None if is_url(input_dir) else input_dir, resume=resume, overwrite=overwrite,
            part_records=part_records, client=client)
    summary.ignored = found.ignored
    return summary


@cli.command()
@click.argument("results", metavar="RESULTS")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (self-contained: opens offline).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@verbosity_options
def report(results, out, overwrite, verbose, quiet):
    """Write a self-contained HTML report of a results table (a Parquet or CSV file, or a
    finished dataset folder of `infer score --out DIR/`): counts per status, band and
    quality, the score histogram, and a sortable, filterable table of every row with links to
    the ECG pages of `infer score --plots`.

    Example:

    \b
        infer score --input tonight/ --out tonight.parquet --plots tonight-pages
        infer report tonight.parquet --out tonight.html
    """
    from infer.report import write_report

    setup_logging(verbose, quiet)
    with exit_codes(FileNotFoundError, ValueError):
        check_not_input(out, [results])
        path = write_report(results, out, overwrite=overwrite)
    click.echo(f"wrote {path}", err=quiet)


@cli.command()
@click.option("--model", "model_path", default=DEFAULT_MODEL, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="ONNX model from `train export`.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@verbosity_options
def app(model_path, host, port, verbose, quiet):
    """Serve the interactive page: upload an ECG (WFDB .hea with its .dat, CSV, DICOM, HL7
    aECG, GE MUSE or Philips XML, EDF) and see the MI probability, band, quality and the ECG
    page with what drove the score. Scores exactly as `infer score --explain --plots`.
    Needs the app extra (Gradio). Stop it with Ctrl-C.

    Example:

    \b
        infer app --model out/model.onnx --port 7860
    """
    from infer.app import AppExtraMissing, build_app

    setup_logging(verbose, quiet)
    try:
        page = build_app(model_path)
    except AppExtraMissing as e:
        fail(str(e), ExitCode.FATAL)
    except (FileNotFoundError, ModelContractError) as e:
        fail(str(e), ExitCode.FATAL)
    page.launch(server_name=host, server_port=port, quiet=quiet)


def _bands_line(c, bands) -> str:
    """The bands in force and, from the contract, what they achieve with their bounds."""
    if bands is not None:
        return f"bands (--bands): {bands[0]:.4f} / {bands[1]:.4f} (bounds not known)"
    positive = "abnormal" if c.task == "beats" else "MI"
    line = f"bands: normal < {c.band_low:.4f} <= borderline < {c.band_high:.4f} <= {positive}"
    parts = []
    unit = "beats" if c.task == "beats" else "records"
    for side in ("low", "high"):
        b = c.band_bounds.get(side)
        if b and "met" in b:  # bands chosen on plain estimates (train fit --confidence 0)
            parts.append(f"{b['metric']} {b['estimate']:.2f} (target {b['target']:.2f} as an "
                         f"estimate {'met' if b['met'] else 'NOT met'}; lower bound "
                         f"{b['lower_bound']:.2f} on {b['n']} {unit})")
        elif b:
            parts.append(f"{b['metric']} {b['estimate']:.2f} (lower bound {b['lower_bound']:.2f} "
                         f"on {b['n']} {unit}, target {b['target']:.2f} "
                         f"{'met' if b['supported'] else 'NOT supported'})")
    return line + ("; " + ", ".join(parts) if parts else "")


if __name__ == "__main__":  # pragma: no cover
    cli()
