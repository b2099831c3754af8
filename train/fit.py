"""Training: folds in, a run folder out (model, metrics, plots, report, log)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.io import (
    commit_output,
    make_temp_dir,
    package_versions,
    prepare_output,
    sha256_file,
)
from signals.criteria import REFERRAL_VERSION
from signals.windows import WindowSpec, aggregate, commutes
from train.calibrate import (
    METHODS,
    Calibrator,
    brier,
    choose_calibrator,
    expected_calibration_error,
    reliability,
)
from train.dataset import (
    QUALITY_LEVELS,
    Split,
    check_disjoint,
    fit_normalization,
    load_split,
    tf_dataset,
)
from train.evaluate import (
    Bands,
    band_report,
    bootstrap_auc_ci,
    choose_bands,
    evaluate,
    plot_all,
    roc_auc,
    write_report,
)
from train.model import ARCHITECTURES, NOT_KERAS, TRAINING_DEFAULTS, build_model

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Everything that determines a training run (with the data, it makes the run reproducible)."""

    arch: str = "criteria"
    train_folds: tuple[int, ...] = tuple(range(1, 9))
    val_folds: tuple[int, ...] = (9,)
    test_folds: tuple[int, ...] = (10,)
    epochs: int | None = None  # None: the architecture's default
    batch_size: int | None = None
    learning_rate: float | None = None
    patience: int = 8
    seed: int = 0
    min_sensitivity: float = 0.95
    min_specificity: float = 0.95
    bands: tuple[float, float] | None = None  # override the validation-chosen bands
    min_quality: str = "poor"  # leave out records the quality gate calls worse (unusable)
    cross_fit: bool = True  # choose bands and calibration on out-of-fold predictions
    confidence: float = 0.95  # band targets must hold at this one-sided confidence (0: estimates)
    window_seconds: float | None = None  # crop/window length; 0: whole records
    stride_seconds: float | None = None  # between scoring windows; None: half a window
    aggregation: str | None = None  # window probabilities -> record (signals.windows)
    one_cycle: bool | None = None  # cosine one-cycle learning rate
    #: the same corpus ingested at another rate: training draws each record from either copy,
    #: the other brought to this rate by the scorer's resampler (rate consistency)
    mix_rate_data: str | None = None
    #: the criteria model: boosted models averaged (None: train.criteria.BAGS)
    bags: int | None = None
    #: the criteria model's learner (train.criteria.LEARNERS)
    learner: str = "blend"
    #: the criteria trees' smoothing (None: train.criteria.TREE_SMOOTHING; 0: hard steps)
    smoothing: float | None = None

    def setting(self, name: str) -> Any:
        value = getattr(self, name, None)
        return TRAINING_DEFAULTS[self.arch][name] if value is None else value

    def windows(self, split: Split) -> WindowSpec:
        """The windows this configuration trains on (crops) and scores ``split`` by."""
        seconds = self.setting("window_seconds")
        length = split.n_samples if not seconds else min(split.n_samples,
                                                          round(seconds * split.fs))
        stride_s = self.setting("stride_seconds")
        stride = round(stride_s * split.fs) if stride_s else max(1, length // 2)
        return WindowSpec(length, min(stride, length), self.setting("aggregation"))


def quality_counts(data_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Records per quality verdict in the dataset's manifest (empty for older datasets)."""
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    return manifest.get("counts", {}).get("quality", {})


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and make TF ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def predict_windows(model, split: Split, spec: WindowSpec,
                    batch_records: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of every scoring window of ``split`` (float32 mV, cut as the scorer cuts
    them) and each window's record index."""
    probs, owners = [], []
    for i in range(0, len(split), batch_records):
        x, own = split.windows(spec, slice(i, i + batch_records))
        probs.append(np.asarray(model.predict_on_batch(x)).reshape(-1))
        owners.append(own + i)
    if not probs:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(probs), np.concatenate(owners)


def predict(model, split: Split, spec: WindowSpec) -> np.ndarray:
    """MI probability of every record of ``split``: its windows' aggregated as the scorer
    aggregates them (:func:`signals.windows.aggregate`)."""
    p, owners = predict_windows(model, split, spec)
    return aggregate(p, owners, len(split), spec.aggregation)


class _WindowedValidation:
    """Keras callback: validation ROC AUC and loss of the aggregated record probabilities,
    so early stopping judges what the scorer will output (crops are not records)."""

    def __new__(cls, val: Split, spec: WindowSpec):
        import keras

        class WindowedValidation(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                p = predict(self.model, val, spec)
                q = np.clip(p, 1e-7, 1 - 1e-7)
                logs["val_auc"] = roc_auc(val.y, p)
                logs["val_loss"] = float(-np.mean(val.y * np.log(q) + (1 - val.y) * np.log1p(-q)))

        return WindowedValidation()


class _EpochLog:
    """Keras callback that logs one line per epoch (to the terminal and train.log)."""

    def __new__(cls, logger: logging.Logger):
        import keras

        class EpochLog(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                text = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())
                                if isinstance(v, int | float))
                logger.info("epoch %d: %s (%.1f s)", epoch + 1, text,
                            time.perf_counter() - self.t0)

        return EpochLog()


def train_model(
    train: Split, val: Split, config: FitConfig, verbose: int = 0
) -> tuple[Any, dict[str, list[float]], int]:
    """Fit ``config.arch`` on ``train``, early-stopping on validation ROC AUC if the
    architecture asks for it.  Returns (model with the best weights, history, best epoch)."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {config.arch!r}")
    if config.arch == "criteria":
        from train.criteria import fit_learner

        t0 = time.perf_counter()
        model = fit_learner(config.learner, train, seed=config.seed, bags=config.bags,
                            smoothing=config.smoothing)
        _LOGGER.info("criteria %s on %d records in %.1f s; most used: %s", config.learner,
                     len(train), time.perf_counter() - t0, ", ".join(
                         f"{n} ({k})" for n, k in model.importances(8)))
        return model, {}, 0
    import keras

    seed_everything(config.seed)
    spec = config.windows(train)
    mean, var = fit_normalization(train)
    batch_size = config.setting("batch_size")
    steps = -(-len(train) // batch_size) * config.setting("epochs")
    model = build_model(config.arch, spec.length, train.fs, mean, var,
                        learning_rate=config.learning_rate,
                        total_steps=steps if config.setting("one_cycle") else None)
    callbacks = [_WindowedValidation(val, spec), _EpochLog(_LOGGER)]
    if TRAINING_DEFAULTS[config.arch]["early_stopping"]:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=config.patience, restore_best_weights=True,
            verbose=0,
        ))
    class_weight = None
    if TRAINING_DEFAULTS[config.arch]["class_weight"]:
        # inverse class frequency, so MI (about 1 in 7 records) counts as much as the rest
        pos = float(train.y.mean())
        class_weight = {0: 0.5 / (1 - pos), 1: 0.5 / pos}
    hist = model.fit(
        tf_dataset(train, batch_size, shuffle=True, seed=config.seed,
                   augment=TRAINING_DEFAULTS[config.arch]["augment"], crop=spec.length),
        epochs=config.setting("epochs"),
        class_weight=class_weight,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, reproducibly
        verbose=verbose,
    )
    history = {k: [float(x) for x in v] for k, v in hist.history.items()}
    if "val_auc" in history and TRAINING_DEFAULTS[config.arch]["early_stopping"]:
        best_epoch = int(np.argmax(history["val_auc"])) + 1
    else:
        best_epoch = len(history.get("loss", []))
    return model, history, best_epoch


def fit(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: FitConfig = FitConfig(),
    overwrite: bool = False,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train, choose bands on the validation folds, evaluate on the test folds, write a run.

    The run folder (written to a temporary folder and moved into place when complete) holds
    ``model.keras``, ``run.json`` (configuration, bands, data checksum, versions),
    ``metrics.json``, ``history.csv``, ``train.log``, ``predictions.parquet``, the PNG plots and
    ``report.md``.  Returns the content of ``run.json``.
    """
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir)
    prepare_output(out_dir, overwrite)
    splits = {
        "train": load_split(data_dir, config.train_folds, config.min_quality,
                            alt_dir=config.mix_rate_data),
        "validation": load_split(data_dir, config.val_folds, config.min_quality),
        "test": load_split(data_dir, config.test_folds, config.min_quality),
    }
    check_disjoint(splits)
    for name, s in splits.items():
        if s.y.sum() == 0 or s.y.sum() == len(s):
            raise ValueError(f"the {name} folds {list(s.folds)} hold records of one class only")
    with run_folder(out_dir, overwrite) as tmp:
        t0 = time.perf_counter()
        _LOGGER.info("data %s: %s", data_dir, {k: f"{len(s)} records, {int(s.y.sum())} MI, "
                                                   f"folds {list(s.folds)}"
                                               for k, s in splits.items()})
        _LOGGER.info("config %s", asdict(config))
        _LOGGER.info("quality of the dataset's records: %s; training uses %s", quality_counts(
            data_dir), " and ".join(QUALITY_LEVELS[: QUALITY_LEVELS.index(config.min_quality) + 1]))
        model, history, best_epoch = train_model(splits["train"], splits["validation"], config,
                                                 verbose=verbose)
        seconds = time.perf_counter() - t0
        spec = config.windows(splits["train"])
        raw = {name: predict(model, s, spec) for name, s in splits.items()}
        # bands and calibration are chosen on predictions for records no model trained on:
        # out-of-fold over every non-test fold (cross-fitting), or the validation folds alone
        if config.cross_fit:
            from train.cv import out_of_fold

            folds = tuple(sorted(config.train_folds + config.val_folds))
            _LOGGER.info("cross-fitting over folds %s: %d models", list(folds), len(folds))
            oof = out_of_fold(data_dir, folds, config)
            chosen_on = f"out-of-fold predictions of {len(folds)} cross-fitted models, folds " \
                        f"{list(folds)}"
            oof_y, oof_p, oof_ids = oof.y, oof.p, oof.ecg_id
            # only calibrators that give the same record probability whether applied before
            # (the scorer: inside the graph, per window) or after aggregation (here)
            methods = tuple(m for m in METHODS if commutes(m, spec.aggregation))
            calibrator, calibration = choose_calibrator(oof_p, oof_y, oof.fold, methods)
        else:
            v = splits["validation"]
            oof_y, oof_p, oof_ids = v.y, raw["validation"], v.ecg_id
            chosen_on = f"validation folds {list(config.val_folds)}"
            # one fold cannot tell calibrators apart on held-out data: none
            calibrator, calibration = Calibrator(), {"chosen": "none", "held_out": {},
                                                     "criterion": "no cross-fitting"}
        scores = {name: calibrator(p) for name, p in raw.items()}
        oof_cal = calibrator(oof_p)
        # a measurements model's scorer sends a wide QRS of left bundle branch block shape to
        # borderline whatever its probability (signals.criteria.lbbb_like): so do the bands
        refer = referrals(splits, config)
        oof_refer = None if refer is None else _by_id(refer, splits, oof_ids)
        if config.bands is not None:
            bands = Bands(*config.bands)
        else:
            bands = choose_bands(oof_y, oof_cal, config.min_sensitivity, config.min_specificity,
                                 confidence=config.confidence, refer=oof_refer)
        chosen = band_report(oof_y, oof_cal, bands, config.min_sensitivity,
                             config.min_specificity, config.confidence, refer=oof_refer)
        for side in ("low", "high"):
            if "statement" in chosen[side]:
                _LOGGER.warning(chosen[side]["statement"])
        metrics = {
            name: evaluate(splits[name].y, scores[name], bands, seed=config.seed,
                           refer=None if refer is None else refer[name])
            for name in ("validation", "test")
        }
        ty = splits["test"].y
        calibration["test"] = {
            "brier_raw": brier(ty, raw["test"]), "brier": brier(ty, scores["test"]),
            "ece_raw": expected_calibration_error(ty, raw["test"]),
            "ece": expected_calibration_error(ty, scores["test"]),
            "reliability_raw": reliability(ty, raw["test"]),
            "reliability": reliability(ty, scores["test"]),
        }
        metrics["calibration"] = calibration
        if config.cross_fit:
            # the alternative export: the K fold models averaged in one graph (train export
            # --ensemble); how it compares on the test folds with the final model
            # the graph averages the members' window probabilities, then aggregates
            members = [predict_windows(m, splits["test"], spec) for m in oof.models]
            ens = aggregate(np.mean([p for p, _ in members], axis=0), members[0][1],
                            len(splits["test"]), spec.aggregation)
            lo_e, hi_e = bootstrap_auc_ci(ty, ens, seed=config.seed)
            metrics["ensemble"] = {"models": len(oof.models), "test_roc_auc": roc_auc(ty, ens),
                                   "test_roc_auc_ci95": [lo_e, hi_e],
                                   "test_brier": brier(ty, calibrator(ens))}
        metrics["bands_out_of_fold"] = chosen
        metrics["bands_test"] = band_report(ty, scores["test"], bands, config.min_sensitivity,
                                            config.min_specificity, config.confidence,
                                            refer=None if refer is None else refer["test"])
        ext = model_extension(config.arch)
        model.save(tmp / f"model{ext}")
        if config.cross_fit:
            (tmp / "fold_models").mkdir()
            for f, m in zip(folds, oof.models, strict=True):
                m.save(tmp / "fold_models" / f"fold_{f}{ext}")
        _write_history(tmp / "history.csv", history)
        pq.write_table(
            pa.table({
                "ecg_id": np.concatenate([*(s.ecg_id for s in splits.values()), oof_ids]),
                "split": np.concatenate([*([n] * len(s) for n, s in splits.items()),
                                         ["out_of_fold"] * len(oof_y)]),
                "mi": np.concatenate([*(s.y for s in splits.values()), oof_y]).astype(bool),
                "mi_probability": np.concatenate([*scores.values(), oof_cal]).astype(np.float64),
                "raw_probability": np.concatenate([*raw.values(), oof_p]).astype(np.float64),
                **({} if refer is None else {"lbbb_pattern": np.concatenate(
                    [*refer.values(), oof_refer]).astype(bool)}),
            }),
            tmp / "predictions.parquet",
        )
        run = {
            "arch": config.arch,
            "config": asdict(config),
            "fs": splits["train"].fs,
            "input_samples": spec.length,
            "window": {"length": spec.length, "stride": spec.stride,
                       "aggregation": spec.aggregation, "seconds": spec.length / splits[
                           "train"].fs, "stride_seconds": spec.stride / splits["train"].fs,
                       "record_samples": splits["train"].n_samples,
                       "one_cycle": bool(config.setting("one_cycle"))},
            "folds": {"train": list(config.train_folds), "val": list(config.val_folds),
                      "test": list(config.test_folds)},
            "records": {k: len(s) for k, s in splits.items()},
            "min_quality": config.min_quality,
            "quality_counts": quality_counts(data_dir),
            "bands": {"low": bands.low, "high": bands.high,
                      "chosen_on": "fixed" if config.bands else chosen_on,
                      "min_sensitivity": config.min_sensitivity,
                      "min_specificity": config.min_specificity,
                      "confidence": config.confidence,
                      "achieved": chosen,
                      **({} if refer is None else {
                          "referral": REFERRAL_VERSION,
                          "referred": {k: int(v.sum()) for k, v in refer.items()}})},
            "calibration": asdict(calibrator),
            **({"features": features_contract(splits["train"].fs)}
               if config.arch == "criteria" else {}),
            "data_dir": str(data_dir),
            "data_manifest_sha256": sha256_file(data_dir / "manifest.json"),
            "epochs_run": len(history.get("loss", [])),
            "best_epoch": best_epoch,
            "train_seconds": round(seconds, 2),
            "train_samples_per_second": round(
                len(splits["train"]) * max(1, len(history.get("loss", []))) / seconds, 1),
            "versions": package_versions(
                "mi-screen", *(("scikit-learn",) if config.arch in NOT_KERAS else
                               ("tensorflow-cpu", "keras")), "numpy", "pyarrow"),
        }
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plots = plot_all(tmp, splits["test"].y, scores["test"], bands, history,
                         f"{config.arch}, folds {list(config.test_folds)}",
                         raw_test=raw["test"])
        write_report(tmp, run, metrics, plots)
        t = metrics["test"]
        _LOGGER.info("test ROC AUC %.3f (95%% CI %.3f-%.3f), PR AUC %.3f; bands %.4f / %.4f",
                     t["roc_auc"], *t["roc_auc_ci95"], t["pr_auc"], bands.low, bands.high)
    return run


def referrals(splits: dict, config: FitConfig) -> dict[str, np.ndarray] | None:
    """Per split, the records a measurements model's bands send to borderline whatever their
    probability (:func:`signals.criteria.lbbb_like`); None for a network model, whose scorer
    measures nothing by default."""
    if config.arch != "criteria":
        return None
    from train.criteria import split_referrals

    return {name: split_referrals(s) for name, s in splits.items()}


def _by_id(per_split: dict[str, np.ndarray], splits: dict, ids: np.ndarray) -> np.ndarray:
    """The per-split values of ``per_split`` for the records ``ids``."""
    of = {int(i): bool(v) for name, s in splits.items()
          for i, v in zip(s.ecg_id, per_split[name], strict=True)}
    return np.array([of[int(i)] for i in ids], bool)


def model_extension(arch: str) -> str:
    """The saved model's file extension: ``.keras`` for networks, ``.pkl`` for the trees."""
    return ".pkl" if arch in NOT_KERAS else ".keras"


def features_contract(fs: int) -> dict[str, Any]:
    """What a criteria model's graph takes: the function, its version, the columns."""
    from signals.criteria import FEATURE_NAMES, FEATURES_VERSION
    from train.criteria import FEATURES_INPUT

    return {"function": FEATURES_VERSION, "input": FEATURES_INPUT, "fs": int(fs),
            "names": list(FEATURE_NAMES), "referral": REFERRAL_VERSION}


@contextlib.contextmanager
def run_folder(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary run folder, with ``train.log`` receiving the ``train`` loggers at INFO
    whatever ``-q`` says; moved into place at ``out_dir`` when the block succeeds, removed
    when it fails."""
    tmp = make_temp_dir(out_dir)
    handler = logging.FileHandler(tmp / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    train_logger = logging.getLogger("train")
    old_level = train_logger.level
    if train_logger.getEffectiveLevel() > logging.INFO:
        train_logger.setLevel(logging.INFO)
    train_logger.addHandler(handler)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        train_logger.removeHandler(handler)
        train_logger.setLevel(old_level)
        handler.close()
    commit_output(tmp, out_dir, overwrite)


def _write_history(path: Path, history: dict[str, list[float]]) -> None:
    keys = sorted(history)
    rows = ["epoch," + ",".join(keys)]
    for i in range(len(history.get("loss", []))):
        rows.append(f"{i + 1}," + ",".join(f"{history[k][i]:.6f}" for k in keys))
    path.write_text("\n".join(rows) + "\n")
