"""K-fold cross-validation over PTB-XL's stratified folds (out-of-fold ROC AUC).

For each held-out fold ``k`` the model trains on the other folds except one inner validation
fold (the next fold, cyclically), which drives early stopping; fold ``k`` is only scored.  Nothing
is tuned on the fold being scored.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from train.dataset import load_split
from train.evaluate import average_precision, bootstrap_auc_ci, roc_auc
from train.fit import FitConfig, predict, train_model

_LOGGER = logging.getLogger(__name__)


@dataclass
class OutOfFold:
    """A prediction for every record of some folds, each from a model that did not see it."""

    ecg_id: np.ndarray
    fold: np.ndarray
    y: np.ndarray
    p: np.ndarray
    per_fold: dict[int, dict[str, Any]]
    seconds: float
    samples: int
    models: list[Any]  # the fold models, in the order of ``folds``


def out_of_fold(data_dir: str | os.PathLike[str], folds: tuple[int, ...],
                config: FitConfig) -> OutOfFold:
    """Cross-fit over ``folds``: for each fold, a model trained on the others (early-stopped
    on the next fold, cyclically) predicts it.  Nothing is tuned on the fold it predicts."""
    if len(folds) < 3:
        raise ValueError(f"cross-fitting needs at least 3 folds, got {list(folds)}")
    parts, per_fold, seconds, samples, models = [], {}, 0.0, 0, []
    for i, held_out in enumerate(folds):
        val_fold = folds[(i + 1) % len(folds)]
        train_folds = tuple(f for f in folds if f not in (held_out, val_fold))
        cfg = dataclasses.replace(config, train_folds=train_folds, val_folds=(val_fold,),
                                  test_folds=(held_out,))
        train = load_split(data_dir, train_folds, config.min_quality,
                           alt_dir=config.mix_rate_data)
        val = load_split(data_dir, (val_fold,), config.min_quality)
        test = load_split(data_dir, (held_out,), config.min_quality)
        t0 = time.perf_counter()
        model, history, best = train_model(train, val, cfg)
        seconds += time.perf_counter() - t0
        samples += len(train) * max(1, len(history.get("loss", [])))
        p = predict(model, test, cfg.windows(train))
        models.append(model)
        parts.append((test.ecg_id, np.full(len(test), held_out), test.y, p))
        per_fold[held_out] = {"roc_auc": roc_auc(test.y, p), "n": len(test),
                              "n_mi": int(test.y.sum()), "epochs": len(history.get("loss", [])),
                              "best_epoch": best}
        _LOGGER.info("%s fold %d: AUC %.3f", config.arch, held_out, per_fold[held_out]["roc_auc"])
    ecg_id, fold, y, p = (np.concatenate(c) for c in zip(*parts, strict=True))
    return OutOfFold(ecg_id=ecg_id, fold=fold, y=y, p=p, per_fold=per_fold, seconds=seconds,
                     samples=samples, models=models)


def cross_validate(
    data_dir: str | os.PathLike[str],
    folds: tuple[int, ...],
    config: FitConfig,
) -> dict[str, Any]:
    """Out-of-fold scores and ROC AUC (95% bootstrap CI) of ``config.arch`` over ``folds``."""
    oof = out_of_fold(data_dir, folds, config)
    y, p = oof.y, oof.p
    per_fold, seconds, samples = oof.per_fold, oof.seconds, oof.samples
    lo, hi = bootstrap_auc_ci(y, p, seed=config.seed)
    return {
        "arch": config.arch,
        "seed": config.seed,
        "oof_roc_auc": roc_auc(y, p),
        "oof_roc_auc_ci95": [lo, hi],
        "oof_pr_auc": average_precision(y, p),
        "n": int(len(y)),
        "n_mi": int(y.sum()),
        "per_fold": per_fold,
        "train_samples_per_second": samples / seconds,
    }
