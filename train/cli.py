"""``train``: fit the MI detector, evaluate it, and export it to ONNX."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from common.cli import fail, parse_bands, setup_logging, verbosity_options
from common.errors import OutputError, OutputExistsError
from schemas import ExitCode
from train.dataset import SplitError, parse_folds
from train.model import ARCHITECTURES

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
              path_type=Path), help="Output folder of `ingest ptbxl`.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder to create (model, metrics, plots, report, log).")
@click.option("--arch", type=click.Choice(sorted(ARCHITECTURES)), default="cnnlstm",
              show_default=True, help="Architecture: `seed` is the reference notebook's model.")
@click.option("--train-folds", type=FoldsType(), default="1-8", show_default=True)
@click.option("--val-folds", type=FoldsType(), default="9", show_default=True,
              help="Early stopping is chosen on these.")
@click.option("--test-folds", type=FoldsType(), default="10", show_default=True,
              help="Only used to report metrics.")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Maximum epochs [default: 10 for seed, 40 for cnnlstm].")
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--learning-rate", type=float, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--min-sensitivity", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="The low band threshold keeps at least this sensitivity (lower bound).")
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
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=0.95,
              show_default=True,
              help="The band targets must hold as one-sided lower confidence bounds at this "
                   "level (exact binomial).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@verbosity_options
def fit(data, out, arch, train_folds, val_folds, test_folds, epochs, batch_size, learning_rate,
        seed, min_sensitivity, min_specificity, bands, min_quality, cross_fit, confidence,
        overwrite, verbose, quiet):
    """Train an MI detector on PTB-XL folds and evaluate it.

    Defaults follow PTB-XL's recommendation for the full corpus (train 1-8, validate 9, test
    10). The shipped sample holds folds 1-8 only: pass e.g. --train-folds 1-6 --val-folds 7
    --test-folds 8 (what `make train` does). Folds are patient-disjoint; the run checks it.

    Example:

    \b
        train fit --data out/ptbxl-100 --out out/run --train-folds 1-6 --val-folds 7 --test-folds 8
    """
    from train.fit import FitConfig
    from train.fit import fit as run_fit

    setup_logging(verbose, quiet)
    config = FitConfig(arch=arch, train_folds=train_folds, val_folds=val_folds,
                       test_folds=test_folds, epochs=epochs, batch_size=batch_size,
                       learning_rate=learning_rate, seed=seed, min_sensitivity=min_sensitivity,
                       min_specificity=min_specificity, bands=bands, min_quality=min_quality,
                       cross_fit=cross_fit, confidence=confidence)
    try:
        run = run_fit(data, out, config, overwrite=overwrite, verbose=0)
    except OutputExistsError as e:
        fail(str(e), ExitCode.OUTPUT_EXISTS)
    except (SplitError, FileNotFoundError, ValueError) as e:
        fail(str(e), ExitCode.FATAL)
    except OutputError as e:
        fail(str(e), ExitCode.OUTPUT_ERROR)
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    click.echo(
        f"{arch}: test ROC AUC {metrics['roc_auc']:.3f} "
        f"(95% CI {metrics['roc_auc_ci95'][0]:.3f}-{metrics['roc_auc_ci95'][1]:.3f}), "
        f"bands {run['bands']['low']:.4f}/{run['bands']['high']:.4f}, "
        f"{run['epochs_run']} epochs -> {out}/report.md"
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
    try:
        result = export_onnx(run_dir, out, opset=opset, tolerance=tolerance, overwrite=overwrite,
                             ensemble=ensemble)
    except OutputExistsError as e:
        fail(str(e), ExitCode.OUTPUT_EXISTS)
    except (ExportError, FileNotFoundError) as e:
        fail(str(e), ExitCode.FATAL)
    except OutputError as e:
        fail(str(e), ExitCode.OUTPUT_ERROR)
    click.echo(
        f"exported {out} ({result['bytes'] / 1e6:.2f} MB, opset {opset}); max |onnx - keras| "
        f"= {result['max_abs_diff']:.2e} on {result['n_checked']} test records"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
