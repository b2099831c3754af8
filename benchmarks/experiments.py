"""Model variants by 8-fold out-of-fold cross-validation on the shipped sample.

Every variant goes through the same folds, seed and code as ``train fit --cross-fit``: one
model per held-out fold (early-stopped on the next fold), its out-of-fold record
probabilities pooled.  Reported per variant: ROC AUC with a 95 % bootstrap CI; the Brier score
and ECE of the calibrator ``train fit`` would choose, on held-out folds; and the bands chosen on
the calibrated out-of-fold probabilities, with sensitivity at the low threshold and
specificity at the high one and their exact 95 % lower bounds.

    python benchmarks/experiments.py --work /tmp/benchwork --only crop-mean,resnet1d

Prints one Markdown row per variant and appends its figures to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: name -> (FitConfig overrides, what it changes)
VARIANTS: dict[str, tuple[dict, str]] = {
    "seed": ({"arch": "seed"}, "the reference notebook's model, whole 10 s records"),
    "cnnlstm": ({"arch": "cnnlstm"}, "CNN-LSTM on whole 10 s records (the former default)"),
    "cnnlstm-crop-logit": ({"arch": "cnnlstm", "window_seconds": 2.5, "stride_seconds": 1.25,
                            "aggregation": "logit_mean"},
                           "random 2.5 s crops; 7 windows (1.25 s stride), mean log-odds"),
    "cnnlstm-crop-max": ({"arch": "cnnlstm", "window_seconds": 2.5, "stride_seconds": 1.25,
                          "aggregation": "max"}, "as above, maximum over windows"),
    "cnnlstm-crop-1cycle": ({"arch": "cnnlstm", "window_seconds": 2.5, "stride_seconds": 1.25,
                             "aggregation": "logit_mean", "one_cycle": True},
                            "crops, mean log-odds, one-cycle learning rate"),
    "cnnlstm-crop5": ({"arch": "cnnlstm", "window_seconds": 5.0, "stride_seconds": 2.5,
                       "aggregation": "logit_mean"},
                      "random 5 s crops; 3 windows (2.5 s stride), mean log-odds"),
    "cnnlstm-mixrate": ({"arch": "cnnlstm", "mix_rate_data": "{work}/sample-500"},
                        "whole records, each drawn from its 100 Hz file or its 500 Hz file "
                        "through the scorer's resampler"),
    "resnet1d": ({"arch": "resnet1d"},
                 "residual CNN, 2.5 s crops, mean log-odds, one-cycle (its defaults)"),
    "resnet1d-max": ({"arch": "resnet1d", "aggregation": "max"}, "residual CNN, maximum"),
    "resnet1d-whole": ({"arch": "resnet1d", "window_seconds": 0.0},
                       "residual CNN on whole 10 s records, one-cycle"),
    "resnet1d-constant-lr": ({"arch": "resnet1d", "one_cycle": False},
                             "residual CNN, crops, constant learning rate 3e-3"),
    "criteria": ({"arch": "criteria", "learner": "trees"},
                 "gradient-boosted trees on the measured MI criteria (signals.criteria), "
                 "scored smoothed (train.criteria.TREE_SMOOTHING; before 2026-12-06: hard)"),
    "criteria-hard": ({"arch": "criteria", "learner": "trees", "smoothing": 0.0},
                      "the trees with their hard steps (the default before 2026-12-06)"),
    "criteria-blend": ({"arch": "criteria", "learner": "blend"},
                       "0.75 times the additive model's log-odds plus 0.25 times the smoothed "
                       "trees' (train.criteria.BLEND_WEIGHT)"),
    "criteria-single": ({"arch": "criteria", "learner": "trees", "bags": 1},
                        "one boosted model instead of the mean of ten on bootstrap samples"),
    "criteria-blend-mixrate": ({"arch": "criteria", "learner": "blend",
                                "mix_rate_data": "{work}/sample-500"},
                               "the blend fitted on both files' measurements, two rows per "
                               "training record (`--mix-rate-data`)"),
    "criteria-additive": ({"arch": "criteria", "learner": "additive"},
                          "an additive model on the same measurements: one smooth curve per "
                          "measurement (train.criteria.ADDITIVE_SETTINGS)"),
    "both": ({"arch": "criteria", "learner": "trees"},
             "mean log-odds of `cnnlstm` and `criteria`, each out of fold (no fitted weights)"),
    "both-additive": ({"arch": "criteria", "learner": "additive"},
                      "mean log-odds of `cnnlstm` and `criteria-additive`, each out of fold"),
}
#: variants combining others' out-of-fold probabilities (mean log-odds), not trained
FUSIONS = {"both": ("cnnlstm", "criteria"), "both-additive": ("cnnlstm", "criteria-additive")}
_OOF: dict[tuple[str, int], object] = {}


_REFER: dict[Path, dict[int, bool]] = {}


def _referrals(data: Path, ids):
    """:func:`signals.criteria.lbbb_like` of the records ``ids`` of ``data``'s folds 1-8."""
    import numpy as np

    from train.criteria import split_referrals
    from train.dataset import load_split

    if data not in _REFER:
        split = load_split(data, tuple(range(1, 9)))
        _REFER[data] = dict(zip(split.ecg_id.tolist(), split_referrals(split).tolist(),
                                strict=True))
    return np.array([_REFER[data][int(i)] for i in ids], bool)


def _out_of_fold(name: str, data: Path, seed: int):
    """Out-of-fold predictions of a variant, once per process (fusions reuse them)."""
    from train.cv import out_of_fold
    from train.fit import FitConfig

    if (name, seed) not in _OOF:
        overrides = {k: v.format(work=data.parent) if isinstance(v, str) else v
                     for k, v in VARIANTS[name][0].items()}
        t0 = time.perf_counter()
        oof = out_of_fold(data, tuple(range(1, 9)), FitConfig(seed=seed, **overrides))
        oof.seconds = time.perf_counter() - t0
        _OOF[(name, seed)] = oof
    return _OOF[(name, seed)]



def run(name: str, data: Path, seed: int = 0) -> dict:
    """Cross-validate one variant (``{work}`` in its settings is ``data``'s folder)."""
    import numpy as np

    from signals.criteria import FEATURES_VERSION, REFERRAL_VERSION
    from signals.windows import commutes
    from train.calibrate import METHODS, choose_calibrator
    from train.evaluate import (
        band_report,
        band_trade_off,
        bootstrap_auc_ci,
        choose_bands,
        roc_auc,
    )
    from train.fit import FitConfig

    overrides, what = VARIANTS[name]
    config = FitConfig(seed=seed, **overrides)
    if name in FUSIONS:
        parts = [_out_of_fold(v, data, seed) for v in FUSIONS[name]]
        for other in parts[1:]:
            assert (other.ecg_id == parts[0].ecg_id).all()
        eps = 1e-6
        z = np.mean([np.log(np.clip(o.p, eps, 1 - eps) / np.clip(1 - o.p, eps, 1))
                     for o in parts], axis=0)
        oof = parts[0]
        y, p, seconds = oof.y, 1 / (1 + np.exp(-z)), sum(o.seconds for o in parts)
    else:
        oof = _out_of_fold(name, data, seed)
        y, p, seconds = oof.y, oof.p, oof.seconds
    lo, hi = bootstrap_auc_ci(y, p, seed=seed)
    agg = config.setting("aggregation")
    methods = tuple(m for m in METHODS if commutes(m, agg))
    cal, table = choose_calibrator(p, y, oof.fold, methods)
    q = cal(p)
    # a measurements model's bands send a wide QRS of LBBB shape to borderline, as its
    # scorer does (train.fit.referrals); a fusion with a network is no product: no rule
    refer = (_referrals(data, oof.ecg_id)
             if config.arch == "criteria" and name not in FUSIONS else None)
    bands = choose_bands(y, q, 0.95, 0.95, confidence=0.95, refer=refer)
    report = band_report(y, q, bands, 0.95, 0.95, 0.95, refer=refer)
    borderline = float(np.mean(bands.assign(q, refer) == "borderline"))
    chosen = table["held_out"][table["chosen"]]
    return {
        "variant": name, "what": what, "config": VARIANTS[name][0], "seed": seed,
        "n": int(len(y)), "n_mi": int(y.sum()),
        "oof_roc_auc": roc_auc(y, p), "oof_roc_auc_ci95": [lo, hi],
        "per_fold_auc": {int(k): v["roc_auc"] for k, v in oof.per_fold.items()},
        "calibrator": table["chosen"], "brier": chosen["brier"], "ece": chosen["ece"],
        "brier_uncalibrated": table["held_out"]["none"]["brier"],
        "ece_uncalibrated": table["held_out"]["none"]["ece"],
        "bands": [bands.low, bands.high], "borderline_fraction": borderline,
        "sensitivity_low": report["low"]["estimate"], "sensitivity_low_lb": report["low"][
            "lower_bound"],
        "specificity_high": report["high"]["estimate"], "specificity_high_lb": report["high"][
            "lower_bound"],
        "cv_seconds": seconds,
        # the bands' own targets (95 % lower bounds), and the trade-offs the data can show
        "at_targets": band_trade_off(y, q, 0.95, 0.95, 0.95, refer=refer),
        "point_95_95": band_trade_off(y, q, 0.95, 0.95, None, refer=refer),
        "point_90_95": band_trade_off(y, q, 0.90, 0.95, None, refer=refer),
        "point_90_90": band_trade_off(y, q, 0.90, 0.90, None, refer=refer),
        # the measurements a criteria variant read (a new version re-measures its rows), and
        # the rule whose records its bands send to borderline (new rows beside the old)
        **({"features": FEATURES_VERSION} if config.arch == "criteria" else {}),
        **({"referral": REFERRAL_VERSION, "referred": int(refer.sum()),
            "referred_mi": int((refer & y.astype(bool)).sum())} if refer is not None else {}),
    }


def key(r: dict) -> str:
    """A result's key in ``--json``: variant, seed and, for a criteria variant, the version of
    the measurements it read (so a new version adds rows beside the old ones)."""
    return (f"{r['variant']}/seed{r['seed']}" + (f"/{_version(r)}" if "features" in r else "")
            + (f"/{_version(r, 'referral')}" if "referral" in r else ""))


def _version(r: dict, what: str = "features") -> str:
    return r[what].rsplit(".", 1)[-1]


def label(r: dict) -> str:
    """``variant`` (seed N[, mi_features/V[, lbbb_like/V]]): a result's name in the tables."""
    return (f"`{r['variant']}` (seed {r['seed']}"
            + (f", {_version(r)}" if "features" in r else "")
            + (f", {_version(r, 'referral')}" if "referral" in r else "") + ")")


def row(r: dict) -> str:
    return (f"| `{r['variant']}` | {r['what']} | **{r['oof_roc_auc']:.3f}** "
            f"({r['oof_roc_auc_ci95'][0]:.3f}-{r['oof_roc_auc_ci95'][1]:.3f}) | "
            f"{r['brier_uncalibrated']:.3f} -> {r['brier']:.3f} ({r['calibrator']}) | "
            f"{r['ece_uncalibrated']:.3f} -> {r['ece']:.3f} | "
            f"{r['sensitivity_low']:.3f} (>= {r['sensitivity_low_lb']:.3f}) | "
            f"{r['specificity_high']:.3f} (>= {r['specificity_high_lb']:.3f}) | "
            f"{r['borderline_fraction']:.0%} | {r['cv_seconds']:.0f} s |")


HEADER = ("| variant | change | out-of-fold ROC AUC (95% CI) | Brier raw -> calibrated | "
          "ECE raw -> calibrated | sensitivity at low (95% lower bound) | specificity at high "
          "(95% lower bound) | borderline | CV wall |\n|---|---|---|---|---|---|---|---|---|")


TRADE_HEADER = ("| variant | borderline at the 95 % bounds | 0.95 / 0.95 as estimates: borderline "
                "(MI in normal, non-MI in MI) | 0.90 / 0.95 as estimates: borderline (MI in "
                "normal, non-MI in MI) | 0.90 / 0.90 as estimates: borderline (MI in normal, "
                "non-MI in MI) |\n|---|---|---|---|---|")


def trade_row(r: dict) -> str:
    """The bands' trade-offs of one result: borderline share at the default 95 % bounds and
    with the targets as plain estimates (``train fit --confidence 0``)."""
    def cell(t: dict) -> str:
        return f"**{t['borderline']:.0%}** ({t['mi_in_normal']:.1%}, {t['non_mi_in_mi']:.1%})"

    return (f"| {label(r)} | {r['at_targets']['borderline']:.0%} | "
            f"{cell(r['point_95_95'])} | {cell(r['point_90_95'])} | "
            f"{cell(r['point_90_90']) if 'point_90_90' in r else 'not recorded'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/benchwork"))
    ap.add_argument("--only", default=",".join(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "EXPERIMENTS.json")
    ap.add_argument("--table", action="store_true",
                    help="print the table of every result in --json and stop")
    args = ap.parse_args()
    if args.table:
        print(HEADER)
        everything = json.loads(args.json.read_text()).values()
        for r in everything:
            print(row(r).replace(f"| `{r['variant']}` |", f"| {label(r)} |", 1))
        traded = [r for r in everything if "point_90_95" in r]
        if traded:
            print("\n" + TRADE_HEADER)
            print("\n".join(trade_row(r) for r in traded))
        return
    from ingest import convert_ptbxl

    data = args.work / "sample-100"
    for rate in (100, 500):
        if not (args.work / f"sample-{rate}").exists():
            convert_ptbxl(REPO / "data" / "ptbxl-sample", args.work / f"sample-{rate}",
                          rate=rate, n_jobs=1)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results = {key(r): r for r in results.values()}
    print(HEADER, flush=True)
    for name in args.only.split(","):
        r = run(name, data, args.seed)
        results[key(r)] = r
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(row(r), flush=True)


if __name__ == "__main__":
    main()
