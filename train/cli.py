"""``train``: fit the MI detector, evaluate it, and export it to ONNX."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from common.cli import exit_codes, fail, parse_bands, setup_logging, verbosity_options
from schemas import ExitCode
from train.criteria import LEARNERS
from train.dataset import SplitError, parse_folds
from train.model import ARCHITECTURES

#: the beat task's architectures (train.beats imports TensorFlow lazily, this list does not)
BEAT_ARCHITECTURES = ("beatcnn", "seed003")

_LOGGER = logging.getLogger("train")
# TensorFlow's C++ start-up chatter (CPU features, oneDNN) is not for our users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class FoldsType(click.ParamType):
    name = "FOLDS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_folds(value)
        except SplitError as e:
            self.fail(str(e), param, ctx)


@click.group()
@click.version_option(package_name="mi-screen")
def cli() -> None:
    """Train, evaluate and export the MI detector (needs the `train` extra: TensorFlow).

    Exit codes: 0 done; 2 bad command line; 3 unusable data or a failed export check;
    4 output exists (use --overwrite); 5 the output could not be written.
    """


@cli.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False,
              path_type=Path), help="Output folder of `ingest ptbxl` (or `ingest ecg5000` with "
              "--task beats).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder to create (model, metrics, plots, report, log).")
@click.option("--task", type=click.Choice(["mi", "beats"]), default="mi", show_default=True,
              help="mi: 12-lead records, MI or not (PTB-XL). beats: single heartbeats, "
                   "abnormal or not (ECG5000; a one-patient demonstration).")
@click.option("--arch", type=click.Choice(sorted(ARCHITECTURES) + sorted(BEAT_ARCHITECTURES)),
              default=None,
              help="mi: criteria (default: a model on the ECG's measured MI criteria, "
                   "--learner; no TensorFlow), cnnlstm, resnet1d, or seed (the reference "
                   "notebook's model). "
                   "beats: beatcnn (default, on the raw beat) or seed003 (the tutorial's "
                   "features and LSTM).")
@click.option("--learner", type=click.Choice(LEARNERS), default=None,
              help="mi, criteria: blend (default: 0.75 times the log-odds of an additive "
                   "model, one smooth curve per measurement, plus 0.25 times those of "
                   "smoothed gradient-boosted trees), trees (the smoothed trees alone), or "
                   "additive (the curves alone: a record scores nearly the same from its 100 "
                   "Hz and 500 Hz files, and each curve can be read on its own).")
@click.option("--window", "window_seconds", type=click.FloatRange(0), default=None,
              help="mi: train on random crops of this many seconds and score records by "
                   "sliding windows of it; 0 for whole records [default: the architecture's: "
                   "0 for cnnlstm and seed, 2.5 for resnet1d].")
@click.option("--stride", "stride_seconds", type=click.FloatRange(0, min_open=True),
              default=None, help="mi: seconds between scoring windows [default: half a "
                                 "window].")
@click.option("--aggregation", type=click.Choice(["logit_mean", "max"]), default=None,
              help="mi: how window probabilities make a record's [default: logit_mean, the "
                   "mean log-odds].")
@click.option("--mix-rate-data", type=click.Path(exists=True, file_okay=False), default=None,
              help="mi: the same corpus ingested at another rate (e.g. `ingest ptbxl --rate "
                   "500`). Each training record is drawn from either copy, the other "
                   "resampled by the scorer's own resampler, so 100 Hz and 500 Hz files of a "
                   "record score alike. criteria: every training record gives two rows of "
                   "measurements, one from each copy.")
@click.option("--denoiser", type=click.Choice(["none", "median", "bandpass", "wavelet"]),
              default="none", show_default=True,
              help="beats, seed003: filter applied to each beat before its features.")
@click.option("--cv-folds", type=click.IntRange(2), default=5, show_default=True,
              help="beats: stratified cross-validation folds.")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True,
              help="beats: cross-validation repeats (each with new folds).")
@click.option("--train-folds", type=FoldsType(), default="1-8", show_default=True)
@click.option("--val-folds", type=FoldsType(), default="9", show_default=True,
              help="Early stopping is chosen on these.")
@click.option("--test-folds", type=FoldsType(), default="10", show_default=True,
              help="Only used to report metrics.")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Maximum epochs [default: 10 for seed, 40 for cnnlstm and resnet1d; beats: "
                   "60 for beatcnn and seed003].")
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--learning-rate", type=float, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-sensitivity", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="The low band threshold keeps at least this sensitivity (lower bound). "
                   "For a criteria model a wide QRS of left bundle branch block shape is "
                   "borderline whatever its score (the criteria do not apply), and counts "
                   "as neither missed nor falsely called.")
@click.option("--min-specificity", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="The high band threshold keeps at least this specificity (lower bound).")
@click.option("--bands", callback=parse_bands, default=None, metavar="LOW,HIGH",
              help="Fixed band thresholds instead of choosing them on validation.")
@click.option("--min-quality", type=click.Choice(["good", "poor", "unusable"]), default="poor",
              show_default=True,
              help="Use records whose quality verdict (from ingest) is at least this good: "
                   "poor leaves out the unusable ones, as the scorer does; good also the poor "
                   "ones; unusable keeps every record.")
@click.option("--cross-fit/--no-cross-fit", default=True, show_default=True,
              help="Choose bands and calibration on out-of-fold predictions of one model per "
                   "non-test fold (slower, trustworthy), or on the validation folds alone.")
@click.option("--confidence", type=click.FloatRange(0, 0.999), default=0.95,
              show_default=True,
              help="The band targets must hold as one-sided lower confidence bounds at this "
                   "level (exact binomial; 0.5-0.999), or 0: as plain estimates on the "
                   "out-of-fold records (a trade-off the data can show when it cannot prove "
                   "the targets, e.g. --min-sensitivity 0.90 --confidence 0; the bounds are "
                   "still reported at 95 %).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@verbosity_options
def fit(data, out, task, arch, learner, window_seconds, stride_seconds, aggregation, mix_rate_data,
        denoiser, cv_folds,
        repeats, train_folds, val_folds, test_folds, epochs, batch_size, learning_rate,
        seed, min_sensitivity, min_specificity, bands, min_quality, cross_fit, confidence,
        overwrite, verbose, quiet):
    """Train an MI detector on PTB-XL folds and evaluate it (or, with --task beats, an
    abnormal-beat detector on ECG5000 by repeated cross-validation).

    Defaults follow PTB-XL's recommendation for the full corpus (train 1-8, validate 9, test
    10). The shipped sample holds folds 1-8 only: pass e.g. --train-folds 1-6 --val-folds 7
    --test-folds 8 (what `make train` does). Folds are patient-disjoint; the run checks it.

    Example:

    \b
        train fit --data out/ptbxl-100 --out out/run --train-folds 1-6 --val-folds 7 --test-folds 8
        train fit --data out/ptbxl-100 --out out/run-res --arch resnet1d --window 2.5 ...
        train fit --task beats --data out/ecg5000 --out out/run-beats --arch beatcnn
    """
    setup_logging(verbose, quiet)
    wanted = BEAT_ARCHITECTURES if task == "beats" else ARCHITECTURES
    if 0 < confidence < 0.5:
        fail(f"--confidence {confidence} is neither 0 (estimates) nor a level of 0.5-0.999",
             ExitCode.USAGE)
    arch = arch or ("beatcnn" if task == "beats" else "criteria")
    if arch not in wanted:
        fail(f"--arch {arch} is not a {task} architecture; choose one of {sorted(wanted)}",
             ExitCode.USAGE)
    if learner is not None and arch != "criteria":
        fail(f"--learner {learner} is for --arch criteria, not {arch}", ExitCode.USAGE)
    if task == "beats":
        _fit_beats(data, out, arch, denoiser, cv_folds, repeats, epochs, seed, min_sensitivity,
                   min_specificity, confidence, overwrite)
        return
    from train.fit import FitConfig
    from train.fit import fit as run_fit

    learner = learner or FitConfig.learner
    config = FitConfig(arch=arch, learner=learner, train_folds=train_folds, val_folds=val_folds,
                       test_folds=test_folds, epochs=epochs, batch_size=batch_size,
                       learning_rate=learning_rate, seed=seed, min_sensitivity=min_sensitivity,
                       min_specificity=min_specificity, bands=bands, min_quality=min_quality,
                       cross_fit=cross_fit, confidence=confidence,
                       window_seconds=window_seconds, stride_seconds=stride_seconds,
                       aggregation=aggregation,
                       mix_rate_data=str(mix_rate_data) if mix_rate_data else None)
    with exit_codes(SplitError, FileNotFoundError, ValueError):
        run = run_fit(data, out, config, overwrite=overwrite, verbose=0)
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    click.echo(
        (f"{arch} ({learner})" if arch == "criteria" else arch)
        + f": test ROC AUC {metrics['roc_auc']:.3f} "
        f"(95% CI {metrics['roc_auc_ci95'][0]:.3f}-{metrics['roc_auc_ci95'][1]:.3f}), "
        f"bands {run['bands']['low']:.4f}/{run['bands']['high']:.4f}"
        + ("" if arch == "criteria" else f", {run['epochs_run']} epochs")
        + f" -> {out}/report.md"
    )


def _fit_beats(data, out, arch, denoiser, cv_folds, repeats, epochs, seed, min_sensitivity,
               min_specificity, confidence, overwrite) -> None:
    from train.beats import BeatConfig, fit_beats

    config = BeatConfig(arch=arch, denoiser=denoiser, folds=cv_folds, repeats=repeats,
                        epochs=epochs, seed=seed, min_sensitivity=min_sensitivity,
                        min_specificity=min_specificity, confidence=confidence)
    with exit_codes(FileNotFoundError, ValueError):
        run = fit_beats(data, out, config, overwrite=overwrite)
    m = json.loads((out / "metrics.json").read_text())["cross_validation"]
    click.echo(
        f"{arch} (beats): cross-validated ROC AUC {m['roc_auc']:.3f} (95% CI "
        f"{m['roc_auc_ci95'][0]:.3f}-{m['roc_auc_ci95'][1]:.3f}), recall {m['recall']:.3f}, "
        f"specificity {m['specificity']:.3f}, bands {run['bands']['low']:.4f}/"
        f"{run['bands']['high']:.4f} -> {out}/report.md"
    )


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False,
              path_type=Path), help="Run folder of `train fit`.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="ONNX file to write (a model card is written beside it).")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest allowed |onnxruntime - Keras| on the test records.")
@click.option("--ensemble", is_flag=True,
              help="Export the mean of the run's cross-fitted fold models instead of the final "
                   "model (K times the scoring cost; metrics.json 'ensemble' says what it gains).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@verbosity_options
def export(run_dir, out, opset, tolerance, ensemble, overwrite, verbose, quiet):
    """Convert a trained model to ONNX, verify it against Keras, and embed its contract.

    The ONNX file takes float32 [batch, samples, 12] in mV (lead order, rate and length in its
    metadata) and carries the threshold bands, metrics and data checksum the scorer reads.

    Example:

    \b
        train export --run out/run-cnnlstm-100 --out out/model.onnx
    """
    from train.export import ExportError, export_onnx

    setup_logging(verbose, quiet)
    with exit_codes(ExportError, FileNotFoundError):
        result = export_onnx(run_dir, out, opset=opset, tolerance=tolerance, overwrite=overwrite,
                             ensemble=ensemble)
    click.echo(
        f"exported {out} ({result['bytes'] / 1e6:.2f} MB, opset {opset}); max |onnx - "
        f"{result['reference']}| = {result['max_abs_diff']:.2e} on {result['n_checked']} test "
        "records"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
