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
    """Threshold bands: ``p < low`` normal, ``p >= high`` positive (MI, or abnormal for a beat
    model), between them borderline."""

    low: float
    high: float
    positive: Band = Band.MI

    @property
    def names(self) -> tuple[Band, Band, Band]:
        return (Band.NORMAL, Band.BORDERLINE, self.positive)

    def assign(self, p: np.ndarray, refer: np.ndarray | None = None) -> np.ndarray:
        """The band of each score; records marked in ``refer`` are borderline whatever
        their score (:func:`referred_scores`)."""
        out = np.where(p >= self.high, self.positive.value,
                       np.where(p < self.low, Band.NORMAL.value, Band.BORDERLINE.value))
        if refer is not None:
            out = np.where(refer, Band.BORDERLINE.value, out)
        return out


def referred_scores(y, p, refer: np.ndarray | None) -> np.ndarray:
    """``p`` with the records marked in ``refer`` moved out of reach of both thresholds: a
    referred MI record above every ``low`` (it is never called normal), a referred non-MI
    record below every ``high`` (never called MI).  The bands are then chosen and judged over
    every record with the referred ones counted as what they are, borderline (the scorer
    refers a wide QRS of left bundle branch block shape: ``signals.criteria.lbbb_like``)."""
    p = np.asarray(p, dtype=np.float64)
    if refer is None:
        return p
    refer = np.asarray(refer, dtype=bool)
    return np.where(refer, np.where(np.asarray(y).astype(bool), np.inf, -np.inf), p)


def clopper_pearson_lower(k, n, confidence: float = 0.95):
    """Exact one-sided lower confidence bound of a proportion ``k / n`` (Clopper-Pearson).

    ``k`` and ``n`` may be arrays.  0 successes give 0; ``n == 0`` gives NaN.
    """
    from scipy.stats import beta

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lb = beta.ppf(1.0 - confidence, k, n - k + 1.0)
    lb = np.where(k <= 0, 0.0, lb)
    return np.where(n <= 0, np.nan, lb)


def choose_bands(
    y: np.ndarray, p: np.ndarray, min_sensitivity: float = 0.95, min_specificity: float = 0.95,
    confidence: float | None = None, refer: np.ndarray | None = None,
) -> Bands:
    """Bands from scores of records the model did not train on (those marked in ``refer``
    go to borderline whatever their score: :func:`referred_scores`).

    Without ``confidence``: ``low`` is the highest threshold whose sensitivity (``p >= low``
    called positive) is at least ``min_sensitivity``; ``high`` the lowest threshold whose
    specificity is at least ``min_specificity`` (``confidence`` 0 means the same: the targets
    as plain estimates, ``train fit --confidence 0``).  With ``confidence`` (0.95): the same,
    but for the exact one-sided lower confidence bound of sensitivity and specificity
    (:func:`clopper_pearson_lower`), so the targets hold on unseen patients with that
    confidence.  When even the widest threshold cannot show a target (too few records of a
    class), that threshold is the widest one (every record of the class on its side), and
    :func:`band_report` says the target is not supported.  If ``low > high`` the model meets
    both targets with one threshold; both bands then meet at their midpoint.
    """
    y = np.asarray(y).astype(bool)
    p = referred_scores(y, p, refer)
    pos, neg = np.sort(p[y]), np.sort(p[~y])
    if pos.size == 0 or neg.size == 0:
        raise ValueError("choosing bands needs records of both classes")
    if not confidence:
        # at most floor((1 - s) * n_pos) positives may fall below `low`
        k = int(math.floor((1.0 - min_sensitivity) * pos.size + 1e-9))
        low = float(pos[k])
        # at least ceil(s * n_neg) negatives must be strictly below `high`
        m = int(math.ceil(min_specificity * neg.size - 1e-9))
        high = float(np.nextafter(neg[m - 1], np.inf)) if m > 0 else 0.0
    else:
        # low: thresholds at the positives' scores; k(t) = positives at or above t
        k = pos.size - np.searchsorted(pos, pos, side="left")
        ok = clopper_pearson_lower(k, pos.size, confidence) >= min_sensitivity
        low = float(pos[np.flatnonzero(ok)[-1]]) if ok.any() else float(pos[0])
        # high: thresholds just above the negatives' scores; m(t) = negatives below t
        cand = np.nextafter(neg, np.inf)
        m = np.searchsorted(neg, cand, side="left")
        ok = clopper_pearson_lower(m, neg.size, confidence) >= min_specificity
        high = float(cand[np.flatnonzero(ok)[0]]) if ok.any() else float(cand[-1])
    low, high = float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))
    if low > high:
        low = high = (low + high) / 2.0
    return Bands(low=low, high=high)


def band_trade_off(y, q, min_sensitivity: float, min_specificity: float, confidence,
                   refer: np.ndarray | None = None) -> dict:
    """Bands for these targets on calibrated out-of-fold ``q``: the borderline share, MI
    records in "normal", non-MI in "MI", and the sensitivity and specificity lower bounds
    (records marked in ``refer`` borderline whatever their score)."""
    b = choose_bands(y, q, min_sensitivity, min_specificity, confidence=confidence,
                     refer=refer)
    rep = band_report(y, q, b, min_sensitivity, min_specificity, 0.95, refer=refer)
    y = np.asarray(y).astype(bool)
    got = b.assign(np.asarray(q), refer)
    return {"bands": [b.low, b.high],
            "borderline": float(np.mean(got == Band.BORDERLINE.value)),
            "normal": float(np.mean(got == Band.NORMAL.value)),
            "mi": float(np.mean(got == b.positive.value)),
            "mi_in_normal": float(np.mean(got[y] == Band.NORMAL.value)),
            "non_mi_in_mi": float(np.mean(got[~y] == b.positive.value)),
            "referred": int(np.sum(refer)) if refer is not None else 0,
            "sensitivity": rep["low"]["estimate"], "sensitivity_lb": rep["low"]["lower_bound"],
            "specificity": rep["high"]["estimate"],
            "specificity_lb": rep["high"]["lower_bound"]}


def band_report(y: np.ndarray, p: np.ndarray, bands: Bands, min_sensitivity: float,
                min_specificity: float, confidence: float = 0.95,
                refer: np.ndarray | None = None) -> dict[str, Any]:
    """What the bands achieve on ``(y, p)``: sensitivity at ``low`` and specificity at ``high``
    with their exact one-sided lower confidence bounds, whether each target is supported at
    that confidence, and a plain-words statement when it is not.  ``confidence`` 0 (bands
    chosen on plain estimates) reports the bounds at 95 %.  Records marked in ``refer`` are
    borderline whatever their score (:func:`referred_scores`): neither missed nor falsely
    called.  ``targets_as`` says which the bands were chosen on ("bounds" or "estimates"); with
    estimates each side's ``met`` says whether its estimate reaches the target, and its
    statement says what the bound leaves unproven."""
    as_estimates = not confidence
    confidence = confidence or 0.95
    y = np.asarray(y).astype(bool)
    p = referred_scores(y, p, refer)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    k = int((p[y] >= bands.low).sum())
    m = int((p[~y] < bands.high).sum())
    out: dict[str, Any] = {"confidence": confidence,
                           "targets_as": "estimates" if as_estimates else "bounds"}
    if refer is not None:
        out["referred"] = {"records": int(np.sum(refer)),
                           "mi": int(np.sum(np.asarray(refer, dtype=bool) & y))}
    for name, count, n, target, what, cls in (
        ("low", k, n_pos, min_sensitivity, "sensitivity", "MI"),
        ("high", m, n_neg, min_specificity, "specificity", "non-MI"),
    ):
        lb = float(clopper_pearson_lower(count, n, confidence))
        supported = bool(lb >= target)
        best = float(clopper_pearson_lower(n, n, confidence))
        estimate = count / n if n else float("nan")
        entry = {"threshold": getattr(bands, name), "metric": what, "target": target,
                 "estimate": estimate, "lower_bound": lb, "n": n, "supported": supported}
        if as_estimates:
            entry["met"] = bool(estimate >= target)
        if not supported:
            entry["statement"] = (
                (f"The {what} target of {target:.2f} is "
                 f"{'met' if entry.get('met') else 'NOT met'} as a plain estimate "
                 f"({estimate:.3f} on {n} {cls} records) but not supported as a bound: the "
                 if as_estimates else
                 f"The {what} target of {target:.2f} is not supported by the data: with {n} "
                 f"{cls} records the ")
                + f"{confidence:.0%} lower confidence bound of {what} is "
                f"{lb:.3f} at the {name} threshold" + (
                    f", and could not exceed {best:.3f} even if every {cls} record fell on its "
                    f"side; about {_records_needed(target, confidence)} {cls} records are "
                    "needed" if best < target else "")
                + ".")
        out[name] = entry
    return out


def _records_needed(target: float, confidence: float) -> int:
    """Fewest records of a class for which all of them on the right side shows ``target``."""
    n = 1
    while clopper_pearson_lower(n, n, confidence) < target:
        n = n * 2 if n < 64 else n + max(1, n // 16)
    lo = n // 2
    while lo < n and clopper_pearson_lower(lo, lo, confidence) >= target:
        lo -= 1
    for m in range(max(1, lo), n + 1):
        if clopper_pearson_lower(m, m, confidence) >= target:
            return m
    return n


def evaluate(
    y: np.ndarray, p: np.ndarray, bands: Bands, n_boot: int = 1000, seed: int = 0,
    refer: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every reported metric of one set of scores, as a JSON-ready dict (the bands with the
    records marked in ``refer`` borderline; the thresholds' own figures on the scores)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    lo, hi = bootstrap_auc_ci(y, p, n_boot=n_boot, seed=seed)
    assigned = bands.assign(p, refer)
    by_band = {
        b.value: {
            "records": int((assigned == b.value).sum()),
            "mi": int(((assigned == b.value) & y).sum()),
        }
        for b in bands.names
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
    raw_test: np.ndarray | None = None,
    positive: str = "MI",
    unit: str = "records",
    where: str = "test folds",
) -> dict[str, str]:
    """Write the evaluation PNGs into ``out_dir``; return {name: file name}.  With
    ``raw_test`` (the scores before calibration) a reliability diagram compares both."""
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
        ax.set(xticks=[0, 1], yticks=[0, 1],
               xticklabels=[f"pred. not {positive}", f"pred. {positive}"],
               yticklabels=[f"not {positive}", positive], title=f"{name} threshold {t:.3f}")
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

    if raw_test is not None:
        from train.calibrate import reliability

        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
        for label, scores_, color in (("before calibration", raw_test, "C7"),
                                      ("calibrated (as exported)", p, "C0")):
            r = reliability(y, scores_)
            ax.plot([b["mean_p"] for b in r], [b["observed"] for b in r], "o-", color=color,
                    label=label)
            for b in r:
                ax.annotate(str(b["n"]), (b["mean_p"], b["observed"]), fontsize=7,
                            color=color, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=f"predicted {positive} probability (bin mean)",
               ylabel=f"observed {positive} rate",
               title=f"Reliability ({where}; numbers: {unit} per bin)", xlim=(0, 1),
               ylim=(0, 1))
        ax.legend(loc="upper left")
        fig.tight_layout()
        files["reliability"] = "reliability.png"
        fig.savefig(out_dir / files["reliability"], dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 26)
    ax.hist(p[~y], bins=bins, alpha=0.6, label=f"not {positive} (n={int((~y).sum())})", color="C0")
    ax.hist(p[y], bins=bins, alpha=0.6, label=f"{positive} (n={int(y.sum())})", color="C3")
    ax.axvline(bands.low, color="C2", ls="--", label=f"low {bands.low:.3f}")
    ax.axvline(bands.high, color="C3", ls="--", label=f"high {bands.high:.3f}")
    ax.set(xlabel=f"{positive} probability", ylabel=unit, title=f"Scores by class ({where})")
    ax.legend()
    fig.tight_layout()
    files["scores"] = "scores.png"
    fig.savefig(out_dir / files["scores"], dpi=110)
    plt.close(fig)
    return files


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _bounds_lines(bands: dict[str, Any]) -> list[str]:
    """The bands' achieved sensitivity and specificity with their confidence bounds, and the
    plain-words statement when a target is not supported."""
    achieved = bands.get("achieved")
    if not achieved:
        return []
    estimates = achieved.get("targets_as") == "estimates"
    out = (["The bands were chosen with the targets as plain out-of-fold estimates "
            "(`--confidence 0`): *met* says whether the estimate reaches a target, the bound "
            "what these records prove.", ""] if estimates else [])
    out += [f"| threshold | target | estimate |{' met |' if estimates else ''} "
            f"{achieved['confidence']:.0%} lower bound | records | supported as a bound |",
            "|---|---|---|---|---|---|" + ("---|" if estimates else "")]
    for side in ("low", "high"):
        a = achieved[side]
        met = f" {'yes' if a.get('met') else '**no**'} |" if estimates else ""
        out.append(f"| {side} {a['threshold']:.4f} | {a['metric']} >= {a['target']:.2f} | "
                   f"{_fmt(a['estimate'])} |{met} {_fmt(a['lower_bound'])} | {a['n']} | "
                   f"{'yes' if a['supported'] else '**no**'} |")
    out += ["", *(f"**{achieved[s]['statement']}**" for s in ("low", "high")
                  if "statement" in achieved[s])]
    return out


def write_report(out_dir: Path, run: dict[str, Any], metrics: dict[str, Any],
                 plots: dict[str, str]) -> Path:
    """A short Markdown report linking the plots."""
    t = metrics["test"]
    criteria = run["arch"] == "criteria"
    learner = run.get("config", {}).get("learner", "trees")
    lines = [
        f"# MI detector: {run['arch']}{f' ({learner})' if criteria else ''} at {run['fs']} Hz",
        "",
        f"Trained on folds {run['folds']['train']} ("
        + (f"folds {run['folds']['val']} only scored: the {learner} model's settings are fixed"
           if criteria else f"early stopping on folds {run['folds']['val']}")
        + f"); bands and calibration chosen on {run['bands']['chosen_on']}; "
        f"evaluated on folds {run['folds']['test']} ({t['n']} records, {t['n_mi']} MI).",
        "",
        f"- ROC AUC **{_fmt(t['roc_auc'])}** (95% bootstrap CI {_fmt(t['roc_auc_ci95'][0])}-"
        f"{_fmt(t['roc_auc_ci95'][1])}); PR AUC {_fmt(t['pr_auc'])} "
        f"(prevalence {_fmt(t['prevalence'])})",
        f"- Validation ROC AUC {_fmt(metrics['validation']['roc_auc'])}"
        + ("" if criteria else f"; best epoch {run.get('best_epoch')} of {run.get('epochs_run')}"),
        "",
        f"## Threshold bands (chosen on {run['bands']['chosen_on']})",
        "",
        f"normal below {run['bands']['low']:.4f}, MI at or above {run['bands']['high']:.4f}, "
        "borderline (needs review) between."
        + (f" A wide QRS of left bundle branch block shape (`{run['bands']['referral']}`) is "
           "borderline whatever its probability (the criteria do not apply): "
           + ", ".join(f"{n} {k}" for k, n in run["bands"]["referred"].items())
           + " records; the bands count them neither missed nor falsely called."
           if "referral" in run["bands"] else ""),
        "",
        *_bounds_lines(run["bands"]),
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
    cal = metrics.get("calibration")
    if cal:
        t2 = cal["test"]
        lines += ["", f"## Calibration: `{cal['chosen']}` ({cal['criterion']})", "",
                  "| method | held-out Brier | held-out ECE |", "|---|---|---|"]
        for name, m in cal["held_out"].items():
            lines.append(f"| {name} | {m['brier']:.4f} | {m['ece']:.4f} |")
        lines += ["", f"On the test folds: Brier {t2['brier_raw']:.4f} before calibration, "
                      f"{t2['brier']:.4f} after; expected calibration error {t2['ece_raw']:.4f} "
                      f"before, {t2['ece']:.4f} after (see the reliability diagram)."]
    lines += ["", "## Plots", ""]
    for name, f in plots.items():
        lines += [f"![{name}]({f})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
