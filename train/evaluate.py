"""Evaluation: metrics with bootstrap intervals, threshold bands, plots and a short report.

All metrics come from :func:`evaluate`, plain numpy, checked against scikit-learn in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas import Band


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # mid-ranks: every tie group gets the mean of its ranks
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mid, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR AUC as average precision: sum over thresholds of (R_n - R_(n-1)) * P_n."""
    y = np.asarray(y).astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="mergesort")
    p_sorted, y_sorted = np.asarray(p)[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    last = np.r_[np.diff(p_sorted) != 0, True]  # last index of each distinct score
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds descending."""
    y = np.asarray(y).astype(bool)
    thresholds = np.r_[np.inf, np.unique(p)[::-1]]
    tpr = np.array([(p[y] >= t).mean() for t in thresholds])
    fpr = np.array([(p[~y] >= t).mean() for t in thresholds])
    return fpr, tpr, thresholds


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Confusion matrix and rates when ``p >= threshold`` is called MI."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p) >= threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    sens, ppv = ratio(tp, tp + fn), ratio(tp, tp + fp)
    return {
        "threshold": float(threshold),
        "sensitivity": sens,
        "specificity": ratio(tn, tn + fp),
        "ppv": ppv,
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, len(y)),
        "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def bootstrap_auc_ci(
    y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC AUC (resamples with one class are skipped)."""
    y, p = np.asarray(y), np.asarray(p)
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            aucs.append(roc_auc(y[idx], p[idx]))
    if not aucs:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(aucs, alpha)), float(np.quantile(aucs, 1 - alpha))


@dataclass(frozen=True)
class Bands:
    """Threshold bands: ``p < low`` normal, ``p >= high`` MI, between them borderline."""

    low: float
    high: float

    def assign(self, p: np.ndarray) -> np.ndarray:
        return np.where(p >= self.high, Band.MI.value,
                        np.where(p < self.low, Band.NORMAL.value, Band.BORDERLINE.value))


def choose_bands(
    y: np.ndarray, p: np.ndarray, min_sensitivity: float = 0.95, min_specificity: float = 0.95
) -> Bands:
    """Bands from validation scores.

    ``low`` is the highest threshold whose sensitivity (``p >= low`` called positive) is at
    least ``min_sensitivity``; ``high`` the lowest threshold whose specificity is at least
    ``min_specificity``.  If ``low > high`` the model meets both targets with one threshold;
    both bands then meet at their midpoint (no borderline band).
    """
    y = np.asarray(y).astype(bool)
    pos, neg = np.sort(np.asarray(p)[y]), np.sort(np.asarray(p)[~y])
    if pos.size == 0 or neg.size == 0:
        raise ValueError("choosing bands needs validation records of both classes")
    # at most floor((1 - s) * n_pos) positives may fall below `low`
    k = int(math.floor((1.0 - min_sensitivity) * pos.size + 1e-9))
    low = float(pos[k])
    # at least ceil(s * n_neg) negatives must be strictly below `high`
    m = int(math.ceil(min_specificity * neg.size - 1e-9))
    high = float(np.nextafter(neg[m - 1], np.inf)) if m > 0 else 0.0
    high = min(high, 1.0)
    if low > high:
        low = high = (low + high) / 2.0
    return Bands(low=low, high=high)


def evaluate(
    y: np.ndarray, p: np.ndarray, bands: Bands, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Every reported metric of one set of scores, as a JSON-ready dict."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    lo, hi = bootstrap_auc_ci(y, p, n_boot=n_boot, seed=seed)
    assigned = bands.assign(p)
    by_band = {
        b.value: {
            "records": int((assigned == b.value).sum()),
            "mi": int(((assigned == b.value) & y).sum()),
        }
        for b in Band
    }
    return {
        "n": int(len(y)),
        "n_mi": int(y.sum()),
        "roc_auc": roc_auc(y, p),
        "roc_auc_ci95": [lo, hi],
        "pr_auc": average_precision(y, p),
        "prevalence": float(y.mean()) if len(y) else float("nan"),
        "thresholds": {
            "low": at_threshold(y, p, bands.low),
            "high": at_threshold(y, p, bands.high),
            "0.5": at_threshold(y, p, 0.5),
        },
        "bands": by_band,
    }


# ----------------------------------------------------------------------------- plots / report


def plot_all(
    out_dir: Path,
    y_test: np.ndarray,
    p_test: np.ndarray,
    bands: Bands,
    history: dict[str, list[float]],
    title: str,
) -> dict[str, str]:
    """Write the evaluation PNGs into ``out_dir``; return {name: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(y_test).astype(bool)
    p = np.asarray(p_test, dtype=np.float64)
    files = {}

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    fpr, tpr, thr = roc_curve(y, p)
    axes[0].plot(fpr, tpr, color="C0", label=f"ROC AUC {roc_auc(y, p):.3f}")
    axes[0].plot([0, 1], [0, 1], ls=":", color="grey")
    for name, t, c in (("low", bands.low, "C2"), ("high", bands.high, "C3")):
        m = at_threshold(y, p, t)
        axes[0].plot(1 - m["specificity"], m["sensitivity"], "o", color=c,
                     label=f"{name} band {t:.3f}")
    axes[0].set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (test folds)")
    axes[0].legend(loc="lower right")
    order = np.argsort(-p)
    tp = np.cumsum(y[order])
    precision = tp / np.arange(1, len(p) + 1)
    recall = tp / max(1, y.sum())
    axes[1].plot(recall, precision, color="C0", label=f"PR AUC {average_precision(y, p):.3f}")
    axes[1].axhline(y.mean(), ls=":", color="grey", label=f"prevalence {y.mean():.2f}")
    for name, t, c in (("low", bands.low, "C2"), ("high", bands.high, "C3")):
        m = at_threshold(y, p, t)
        if not math.isnan(m["ppv"]):
            axes[1].plot(m["sensitivity"], m["ppv"], "o", color=c, label=f"{name} band {t:.3f}")
    axes[1].set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall",
                ylim=(0, 1.02))
    axes[1].legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    files["roc_pr"] = "roc_pr.png"
    fig.savefig(out_dir / files["roc_pr"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, (name, t) in zip(axes, (("low", bands.low), ("high", bands.high)), strict=True):
        cm = at_threshold(y, p, t)["confusion_matrix"]
        grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
        ax.imshow(grid, cmap="Blues")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > grid.max() / 2 else "black", fontsize=14)
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["pred. not MI", "pred. MI"],
               yticklabels=["not MI", "MI"], title=f"{name} threshold {t:.3f}")
    fig.tight_layout()
    files["confusion"] = "confusion.png"
    fig.savefig(out_dir / files["confusion"], dpi=110)
    plt.close(fig)

    if history.get("loss"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        epochs = np.arange(1, len(history["loss"]) + 1)
        for ax, key in zip(axes, ("loss", "auc"), strict=True):
            ax.plot(epochs, history.get(key, []), label=f"train {key}")
            if f"val_{key}" in history:
                ax.plot(epochs, history[f"val_{key}"], label=f"validation {key}")
            ax.set(xlabel="epoch", title=key)
            ax.legend()
        fig.tight_layout()
        files["history"] = "history.png"
        fig.savefig(out_dir / files["history"], dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 26)
    ax.hist(p[~y], bins=bins, alpha=0.6, label=f"not MI (n={int((~y).sum())})", color="C0")
    ax.hist(p[y], bins=bins, alpha=0.6, label=f"MI (n={int(y.sum())})", color="C3")
    ax.axvline(bands.low, color="C2", ls="--", label=f"low {bands.low:.3f}")
    ax.axvline(bands.high, color="C3", ls="--", label=f"high {bands.high:.3f}")
    ax.set(xlabel="MI probability", ylabel="records", title="Scores by class (test folds)")
    ax.legend()
    fig.tight_layout()
    files["scores"] = "scores.png"
    fig.savefig(out_dir / files["scores"], dpi=110)
    plt.close(fig)
    return files


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def write_report(out_dir: Path, run: dict[str, Any], metrics: dict[str, Any],
                 plots: dict[str, str]) -> Path:
    """A short Markdown report linking the plots."""
    t = metrics["test"]
    lines = [
        f"# MI detector: {run['arch']} at {run['fs']} Hz",
        "",
        f"Trained on folds {run['folds']['train']}, bands chosen on folds {run['folds']['val']}, "
        f"evaluated on folds {run['folds']['test']} ({t['n']} records, {t['n_mi']} MI).",
        "",
        f"- ROC AUC **{_fmt(t['roc_auc'])}** (95% bootstrap CI {_fmt(t['roc_auc_ci95'][0])}-"
        f"{_fmt(t['roc_auc_ci95'][1])}); PR AUC {_fmt(t['pr_auc'])} "
        f"(prevalence {_fmt(t['prevalence'])})",
        f"- Validation ROC AUC {_fmt(metrics['validation']['roc_auc'])}; best epoch "
        f"{run.get('best_epoch')} of {run.get('epochs_run')}",
        "",
        "## Threshold bands (chosen on validation)",
        "",
        f"normal below {run['bands']['low']:.4f}, MI at or above {run['bands']['high']:.4f}, "
        "borderline (needs review) between.",
        "",
        "| band | test records | of which MI |",
        "|---|---|---|",
    ]
    for name, b in t["bands"].items():
        lines.append(f"| {name} | {b['records']} | {b['mi']} |")
    lines += ["", "| threshold | sens. | spec. | PPV | NPV | F1 | acc. | TP/FP/FN/TN |",
              "|---|---|---|---|---|---|---|---|"]
    for name, m in t["thresholds"].items():
        cm = m["confusion_matrix"]
        lines.append(
            f"| {name} ({m['threshold']:.4f}) | {_fmt(m['sensitivity'])} | "
            f"{_fmt(m['specificity'])} | {_fmt(m['ppv'])} | {_fmt(m['npv'])} | {_fmt(m['f1'])} | "
            f"{_fmt(m['accuracy'])} | {cm['tp']}/{cm['fp']}/{cm['fn']}/{cm['tn']} |"
        )
    lines += ["", "## Plots", ""]
    for name, f in plots.items():
        lines += [f"![{name}]({f})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
