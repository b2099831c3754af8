"""The beat task: abnormal-beat detection on ECG5000, trained and evaluated like the MI task.

Two models (``train fit --task beats --arch ...``):

- ``seed003``: the reference tutorial's model, without its leakage: the tutorial's per-beat
  features (:func:`signals.beats.beat_features`, after a denoiser from
  :mod:`signals.filters`) into an LSTM.  Feature scaling is a Normalization layer fitted on
  the training folds only (the tutorial fitted its MinMax scaler on every beat before
  splitting), and it is inside the graph.
- ``beatcnn``: a small 1-D CNN on the 140 samples themselves (scaling inside the graph too).

Evaluation is repeated stratified K-fold cross-validation (5 folds x 3 repeats by default,
the same folds for every model): out-of-fold probabilities of each repeat give ROC AUC, recall
and specificity with 95 % intervals.  The bands and calibration are chosen on the out-of-fold
probabilities (mean over repeats), as for MI; the exported model is then trained on all beats
for the number of epochs cross-validation ran.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.io import package_versions, prepare_output, sha256_file
from schemas import BEAT_SAMPLES, Band
from signals.beats import BEAT_FEATURES, beat_inputs

_LOGGER = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- models


def build_seed003(n_inputs: int, mean: np.ndarray, var: np.ndarray):
    """The tutorial's feature LSTM: features (scaled in the graph) as a sequence of one value
    each into LSTM(32), dropout, a sigmoid unit."""
    import keras
    from keras import layers

    inp = keras.Input((n_inputs,), name="beat_features")
    x = layers.Normalization(axis=-1, mean=mean, variance=var, name="scale")(inp)
    x = layers.Reshape((n_inputs, 1))(x)
    x = layers.LSTM(32, use_cudnn=False)(x)
    x = layers.Dropout(0.2)(x)
    out = layers.Dense(1, activation="sigmoid", name="abnormal_probability")(x)
    return keras.Model(inp, out, name="seed003")


def build_beatcnn(n_inputs: int, mean: np.ndarray, var: np.ndarray):
    """Raw-beat 1-D CNN: three Conv-BN-ReLU blocks (16, 32, 64 filters; pooling halves the
    length twice), concat pooling (average and max), dropout, a sigmoid unit."""
    import keras
    from keras import layers

    inp = keras.Input((n_inputs,), name="beat")
    x = layers.Normalization(axis=None, mean=float(mean.mean()), variance=float(var.mean()),
                             name="scale")(inp)
    x = layers.Reshape((n_inputs, 1))(x)
    for i, (filters, kernel) in enumerate([(16, 7), (32, 5), (64, 3)]):
        x = layers.Conv1D(filters, kernel, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        if i < 2:
            x = layers.MaxPooling1D(2)(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, activation="sigmoid", name="abnormal_probability")(x)
    return keras.Model(inp, out, name="beatcnn")


@dataclass(frozen=True)
class BeatArch:
    build: Callable
    inputs: str  # "features" or "beat"
    epochs: int
    batch_size: int
    learning_rate: float


BEAT_ARCHITECTURES: dict[str, BeatArch] = {
    "seed003": BeatArch(build_seed003, "features", epochs=60, batch_size=32, learning_rate=3e-3),
    "beatcnn": BeatArch(build_beatcnn, "beat", epochs=60, batch_size=32, learning_rate=1e-3),
}


@dataclass(frozen=True)
class BeatConfig:
    """Everything that determines a beat training run."""

    arch: str = "beatcnn"
    denoiser: str = "none"  # before features (seed003); see the bench for the comparison
    folds: int = 5
    repeats: int = 3
    epochs: int | None = None
    seed: int = 0
    min_sensitivity: float = 0.95
    min_specificity: float = 0.95
    confidence: float = 0.95

    @property
    def spec(self) -> BeatArch:
        if self.arch not in BEAT_ARCHITECTURES:
            raise ValueError(f"beat arch must be one of {sorted(BEAT_ARCHITECTURES)}, got "
                             f"{self.arch!r}")
        return BEAT_ARCHITECTURES[self.arch]


def model_inputs(beats: np.ndarray, arch: str, denoiser: str = "none") -> np.ndarray:
    """What the ``arch`` graph takes for these beats (:func:`signals.beats.beat_inputs`)."""
    return beat_inputs(beats, BEAT_ARCHITECTURES[arch].inputs, denoiser)


def _fit_one(x: np.ndarray, y: np.ndarray, config: BeatConfig, epochs: int):
    import keras

    keras.utils.set_random_seed(config.seed)
    spec = config.spec
    mean = x.mean(axis=0).astype(np.float32)
    var = np.maximum(x.var(axis=0), 1e-6).astype(np.float32)
    model = spec.build(x.shape[1], mean, var)
    model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    hist = model.fit(x, y, batch_size=spec.batch_size, epochs=epochs, shuffle=True, verbose=0)
    return model, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) per beat, each class dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def repeated_cv(x: np.ndarray, y: np.ndarray, config: BeatConfig) -> dict[str, Any]:
    """Out-of-fold probabilities per repeat ``(repeats, n)``, the folds used, and timing."""
    epochs = config.epochs or config.spec.epochs
    p = np.zeros((config.repeats, len(y)))
    folds = np.zeros((config.repeats, len(y)), dtype=np.int64)
    t0 = time.perf_counter()
    for r in range(config.repeats):
        folds[r] = stratified_folds(y, config.folds, seed=config.seed + r)
        for f in range(config.folds):
            test = folds[r] == f
            model, _ = _fit_one(x[~test], y[~test], config, epochs)
            p[r, test] = np.asarray(model.predict(x[test], verbose=0)).reshape(-1)
        _LOGGER.info("%s repeat %d: out-of-fold ROC AUC %.3f", config.arch, r + 1,
                     _auc(y, p[r]))
    return {"p": p, "folds": folds, "seconds": time.perf_counter() - t0, "epochs": epochs}


def _auc(y, p) -> float:
    from train.evaluate import roc_auc

    return roc_auc(y, p)


def cv_metrics(y: np.ndarray, p: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """ROC AUC (bootstrap 95 % CI over beats, pooled repeats' mean), recall and specificity at
    0.5 with exact 95 % intervals, from out-of-fold probabilities ``(repeats, n)``."""
    from scipy.stats import beta

    from train.evaluate import bootstrap_auc_ci, roc_auc

    y = np.asarray(y).astype(bool)
    mean_p = p.mean(axis=0)
    lo, hi = bootstrap_auc_ci(y, mean_p, seed=seed)

    def exact(k: int, n: int) -> list[float]:
        return [float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0,
                float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0]

    tp = int(((mean_p >= 0.5) & y).sum())
    tn = int(((mean_p < 0.5) & ~y).sum())
    return {
        "n": int(len(y)), "n_abnormal": int(y.sum()),
        "roc_auc": roc_auc(y, mean_p), "roc_auc_ci95": [lo, hi],
        "roc_auc_per_repeat": [roc_auc(y, pr) for pr in p],
        "recall": tp / int(y.sum()), "recall_ci95": exact(tp, int(y.sum())),
        "specificity": tn / int((~y).sum()), "specificity_ci95": exact(tn, int((~y).sum())),
        "accuracy": (tp + tn) / len(y),
    }


# ----------------------------------------------------------------------------- fit


def fit_beats(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
              config: BeatConfig = BeatConfig(), overwrite: bool = False) -> dict[str, Any]:
    """Cross-validate, choose calibration and bands out of fold, train the final model on all
    beats, and write a run folder like the MI task's (model.keras, run.json, metrics.json,
    predictions.parquet, plots, report.md, train.log)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ingest.ecg5000 import load_beats
    from train.calibrate import choose_calibrator
    from train.evaluate import band_report, choose_bands, evaluate, plot_all
    from train.fit import run_folder

    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir)
    config.spec  # noqa: B018  (validates the architecture before any work)
    prepare_output(out_dir, overwrite)
    beat_id, beats, y = load_beats(data_dir)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError(f"{data_dir}: the beats are of one class only; nothing to learn")
    if min(int(y.sum()), int(len(y) - y.sum())) < config.folds:
        raise ValueError(f"{data_dir}: fewer beats of a class than folds ({config.folds})")
    with run_folder(out_dir, overwrite) as tmp:
        t0 = time.perf_counter()
        x = model_inputs(beats, config.arch, config.denoiser)
        _LOGGER.info("%d beats (%d abnormal); %s on %s inputs of %d values", len(y),
                     int(y.sum()), config.arch, config.spec.inputs, x.shape[1])
        cv = repeated_cv(x, y, config)
        metrics = {"cross_validation": cv_metrics(y, cv["p"], config.seed)}
        oof = cv["p"].mean(axis=0)
        calibrator, calibration = choose_calibrator(oof, y, cv["folds"][0])
        oof_cal = calibrator(oof)
        bands = dataclasses.replace(
            choose_bands(y, oof_cal, config.min_sensitivity, config.min_specificity,
                         confidence=config.confidence), positive=Band.ABNORMAL)
        chosen = band_report(y, oof_cal, bands, config.min_sensitivity, config.min_specificity,
                             config.confidence)
        metrics["out_of_fold"] = evaluate(y, oof_cal, bands, seed=config.seed)
        metrics["calibration"] = calibration
        metrics["bands_out_of_fold"] = chosen
        model, history = _fit_one(x, y, config, cv["epochs"])
        seconds = time.perf_counter() - t0
        model.save(tmp / "model.keras")
        pq.write_table(pa.table({
            "beat_id": beat_id, "abnormal": y.astype(bool),
            "raw_probability": oof, "abnormal_probability": oof_cal,
            **{f"repeat_{r + 1}": cv["p"][r] for r in range(config.repeats)},
        }), tmp / "predictions.parquet")
        run = {
            "task": "beats", "arch": config.arch, "config": asdict(config),
            "inputs": config.spec.inputs, "input_samples": int(x.shape[1]),
            "features": list(BEAT_FEATURES) if config.spec.inputs == "features" else [],
            "beat_samples": BEAT_SAMPLES, "records": {"beats": len(y),
                                                      "abnormal": int(y.sum())},
            "bands": {"low": bands.low, "high": bands.high,
                      "chosen_on": f"out-of-fold probabilities, {config.folds}-fold x "
                                   f"{config.repeats} repeated stratified cross-validation",
                      "min_sensitivity": config.min_sensitivity,
                      "min_specificity": config.min_specificity,
                      "confidence": config.confidence, "achieved": chosen},
            "calibration": asdict(calibrator),
            "data_dir": str(data_dir),
            "data_manifest_sha256": sha256_file(data_dir / "manifest.json"),
            "epochs_run": cv["epochs"], "best_epoch": cv["epochs"],
            "cv_seconds": round(cv["seconds"], 2), "train_seconds": round(seconds, 2),
            "versions": package_versions("mi-screen", "tensorflow-cpu", "keras", "numpy"),
        }
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plots = plot_all(tmp, y, oof_cal, bands, history,
                         f"{config.arch}, ECG5000 out of fold", raw_test=oof,
                         positive="abnormal", unit="beats", where="out of fold")
        write_beats_report(tmp, run, metrics, plots)
        m = metrics["cross_validation"]
        _LOGGER.info("cross-validated ROC AUC %.3f (95%% CI %.3f-%.3f), recall %.3f, "
                     "specificity %.3f", m["roc_auc"], *m["roc_auc_ci95"], m["recall"],
                     m["specificity"])
    return run


def write_beats_report(out_dir: Path, run: dict[str, Any], metrics: dict[str, Any],
                       plots: dict[str, str]) -> Path:
    """report.md of a beat run: cross-validated metrics, bands with bounds, calibration, plots."""
    from train.evaluate import _bounds_lines, _fmt

    m = metrics["cross_validation"]
    cal = metrics["calibration"]
    o = metrics["out_of_fold"]
    lines = [
        f"# Abnormal-beat detector (ECG5000): {run['arch']}",
        "",
        "**ECG5000 comes from one patient with severe congestive heart failure (BIDMC chf07). "
        "This model demonstrates the beat pipeline; it is not a validated detector.**",
        "",
        f"{run['records']['beats']} beats ({run['records']['abnormal']} abnormal); "
        f"{run['config']['folds']}-fold stratified cross-validation repeated "
        f"{run['config']['repeats']} times; inputs: {run['inputs']}"
        + (f" (denoiser `{run['config']['denoiser']}`)" if run["inputs"] == "features" else "")
        + ".",
        "",
        f"- ROC AUC **{_fmt(m['roc_auc'])}** (95% bootstrap CI {_fmt(m['roc_auc_ci95'][0])}-"
        f"{_fmt(m['roc_auc_ci95'][1])}); per repeat "
        + ", ".join(_fmt(a) for a in m["roc_auc_per_repeat"]),
        f"- At 0.5: recall {_fmt(m['recall'])} ({_fmt(m['recall_ci95'][0])}-"
        f"{_fmt(m['recall_ci95'][1])}), specificity {_fmt(m['specificity'])} "
        f"({_fmt(m['specificity_ci95'][0])}-{_fmt(m['specificity_ci95'][1])}), accuracy "
        f"{_fmt(m['accuracy'])}",
        "",
        f"## Bands (chosen on {run['bands']['chosen_on']})",
        "",
        f"normal below {run['bands']['low']:.4f}, abnormal at or above "
        f"{run['bands']['high']:.4f}, borderline between.",
        "",
        *_bounds_lines(run["bands"]),
        "",
        "| band | beats | of which abnormal |",
        "|---|---|---|",
        *(f"| {k} | {v['records']} | {v['mi']} |" for k, v in o["bands"].items()),
        "",
        f"## Calibration: `{cal['chosen']}` ({cal['criterion']})",
        "",
        "| method | held-out Brier | held-out ECE |",
        "|---|---|---|",
        *(f"| {k} | {v['brier']:.4f} | {v['ece']:.4f} |" for k, v in cal["held_out"].items()),
        "",
        "## Plots (out-of-fold probabilities)",
        "",
    ]
    for name, f in plots.items():
        lines += [f"![{name}]({f})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
