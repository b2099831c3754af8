"""Is the learner what makes a record's 100 Hz and 500 Hz files score apart?

The criteria model misses the rate-consistency target (benchmarks/RESULTS.md, "The criteria
model").  This experiment holds the measurements fixed (:func:`signals.criteria.mi_features`
of each shipped record's 100 Hz file, and of its 500 Hz file brought to 100 Hz by the scorer's
resampler) and changes only the learner, out of fold over PTB-XL folds 1-8 (each fold's
records scored by learners fitted on the other seven):

- ``trees``: the trees with hard steps (:meth:`train.criteria.CriteriaModel.fit_features`
  with smoothing 0, the mean log-odds of :data:`train.criteria.BAGS` boosted models on
  bootstrap samples; the default recipe before 2026-12-06);
- ``trees-mixrate``: the same, fitted on both files' measurements of the training records;
- ``trees-smoothed-S``: the same trees scored smoothed, the exact mean over Gaussian noise of S
  times each measurement's spread (``--smoothings``; the ``trees`` learner's default is
  :data:`train.criteria.TREE_SMOOTHING`);
- ``logistic``: L2 logistic regression (C 0.003) on standardised, median-imputed measurements,
  a smooth function of them;
- ``logistic+trees``: the mean of the two log-odds;
- ``additive``: the additive learner (:class:`train.criteria.AdditiveModel`);
- ``blend-W``: ``1 - W`` times the additive model's log-odds plus ``W`` times the smoothed
  trees' (``--weights``; the ``blend`` learner's is :data:`train.criteria.BLEND_WEIGHT`);
  ``blend-W-sS`` with the trees smoothed by S (``--blend-smoothings``);
- ``blend-mixrate``: the blend at its default weight fitted on both files' measurements, two
  rows per training record (``train fit --mix-rate-data``).

Reported: out-of-fold ROC AUC; max, 95th percentile and count over 0.02 of |p100 - p500|,
before calibration and (max and count) after a Platt calibration fitted on the out-of-fold
100 Hz predictions, as ``train fit`` calibrates: the curves' log-odds are shrunk, so the
calibration's slope (2.35 in the exported blend's contract) stretches every difference, and
the exported model's figures are the calibrated ones; band changes with the two thresholds
placed at out-of-fold quantiles (three placements, so the count does not hang on one lucky
pair of thresholds).

    python benchmarks/rate_learners.py --work /tmp/w/bw --seed 0

``--exported FOLDS`` also re-creates the exported recipe for each blend (fitted on those
folds, calibrated out of fold, every record scored from both files) and counts its band
changes at its own bands and on average over 41 placements near them, the figure that
does not hang on one pair of thresholds (benchmarks/EXPERIMENTS.md, "The resampler's
cut-off, to a tenth of a hertz").

``--measure NAME=VALUE`` screens the measurement itself: it changes a constant of
:mod:`signals.criteria` for the run (``--measure ONSET_FRACTION=0.08``, the clinical onset;
``--measure MODEL_ONSET_SHIFT_S=0.005``, the model's; a pair as comma-separated values,
``--measure QS_BLEND_MV=0.025,0.125``; benchmarks/EXPERIMENTS.md, "The calibrated harness,
the QRS onset, and both rates' measurements", "A repeatable onset for the model" and "A
wider QS/rS blend").

Before 2026-12-06 (``mi_features/1``) ``trees-smoothed`` was the mean over 32 fixed jitters of
0.1 of each spread, not the exact mean.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (share below the low threshold, share below the high one): the default model's bands on
#: the shipped records (104 normal, 43 MI of 353), and two more decisive placements
PLACEMENTS = ((0.295, 0.878), (0.5, 0.85), (0.6, 0.8))


def features(work: Path):
    """Per-record folds, labels, the measurements of both files at 100 Hz, ecg ids, and both
    files' LBBB referrals (:meth:`signals.criteria.Measurements.lbbb_like`, 2 x n)."""
    from ingest import convert_ptbxl
    from signals.criteria import measure
    from signals.resample import resample
    from train.dataset import load_split

    for rate in (100, 500):
        if not (work / f"sample-{rate}").exists():
            convert_ptbxl(REPO / "data" / "ptbxl-sample", work / f"sample-{rate}", rate=rate,
                          n_jobs=1)
    fold, y, fa, fb, ids, refer, beats = [], [], [], [], [], [], 0
    for f in range(1, 9):
        a, b = load_split(work / "sample-100", [f]), load_split(work / "sample-500", [f])
        if not np.array_equal(a.ecg_id, b.ecg_id):
            raise SystemExit(f"fold {f}: the 100 Hz and 500 Hz folders hold different records")
        x5 = resample(b.millivolts(), b.fs, a.fs, axis=1)[:, : a.n_samples]
        fold += [f] * len(a)
        y.append(a.y.astype(int))
        ids.append(a.ecg_id)
        ma, mb = measure(a.millivolts(), a.fs), measure(x5, a.fs)
        fa.append(ma.features())  # what mi_features returns
        fb.append(mb.features())
        refer.append(np.stack([ma.lbbb_like(), mb.lbbb_like()]))  # what lbbb_like returns
        beats += int((ma.n_beats != mb.n_beats).sum())
    print(f"{beats} records keep a different number of beats from their two files")
    return (np.array(fold), np.concatenate(y), np.concatenate(fa), np.concatenate(fb),
            np.concatenate(ids), np.concatenate(refer, axis=1))


def _standardise(train: np.ndarray, f: np.ndarray) -> np.ndarray:
    med = np.nan_to_num(np.nanmedian(train, axis=0))
    sd = np.nanstd(train, axis=0)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    return np.clip((np.where(np.isnan(f), med, f) - med) / sd, -5, 5)


def blend_name(weight: float, smoothing: float) -> str:
    """A blend's row name: ``blend-W``, or ``blend-W-sS`` smoothed otherwise than the default
    (:data:`train.criteria.TREE_SMOOTHING`)."""
    from train.criteria import TREE_SMOOTHING

    return f"blend-{weight:g}" + ("" if smoothing == TREE_SMOOTHING else f"-s{smoothing:g}")


def out_of_fold(fold, y, fa, fb, seed: int = 0, smoothings=(0.3,), weights=(0.25,),
                blend_only: bool = False, blend_smoothings=None,
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Out-of-fold log-odds of each learner for the 100 Hz and the 500 Hz measurements
    (``blend_only``: the additive model and the blends alone, a quicker screen).  The blends
    are every pair of ``weights`` and ``blend_smoothings`` (default: the trees' default
    smoothing alone), all from the same trees."""
    from sklearn.linear_model import LogisticRegression

    from train.criteria import TREE_SMOOTHING, AdditiveModel, BlendModel, CriteriaModel, noise_scale

    blend_smoothings = tuple(blend_smoothings or (TREE_SMOOTHING,))
    names = ["trees", "trees-mixrate", *(f"trees-smoothed-{s:g}" for s in smoothings),
             "logistic", "additive", "blend-mixrate"]
    if blend_only:
        names, smoothings = ["additive", "blend-mixrate"], ()
    z = {n: (np.zeros(len(y)), np.zeros(len(y))) for n in names}
    blend = {(w, s): (np.zeros(len(y)), np.zeros(len(y)))
             for w in weights for s in blend_smoothings}
    for f in np.unique(fold):
        tr, te = np.flatnonzero(fold != f), fold == f
        trees = CriteriaModel.fit_features(fa[tr], y[tr], 100, seed=seed, smoothing=0)
        # what `train fit --mix-rate-data` fits: both files' rows; its hard trees too
        mixed_blend = BlendModel.fit_features(np.concatenate([fa[tr], fb[tr]]),
                                              np.concatenate([y[tr], y[tr]]), 100, seed=seed)
        mixed = CriteriaModel(mixed_blend.trees.estimators, 100)
        smoothed = {s: CriteriaModel(trees.estimators, 100, noise_scale(fa[tr], s))
                    for s in {*smoothings, *blend_smoothings}}
        additive = AdditiveModel.fit_features(fa[tr], y[tr], 100)
        for i, x in enumerate((fa[te], fb[te])):
            if not blend_only:
                z["trees"][i][te] = trees.log_odds(x)
                z["trees-mixrate"][i][te] = mixed.log_odds(x)
            for s in smoothings:
                z[f"trees-smoothed-{s:g}"][i][te] = smoothed[s].log_odds(x)
            z["additive"][i][te] = additive.log_odds(x)
            z["blend-mixrate"][i][te] = mixed_blend.log_odds(x)
            for w, s in blend:
                blend[w, s][i][te] = ((1 - w) * z["additive"][i][te]
                                      + w * smoothed[s].log_odds(x))
        if blend_only:
            continue
        lr = LogisticRegression(C=0.003, max_iter=3000).fit(_standardise(fa[tr], fa[tr]), y[tr])
        z["logistic"][0][te] = lr.decision_function(_standardise(fa[tr], fa[te]))
        z["logistic"][1][te] = lr.decision_function(_standardise(fa[tr], fb[te]))
    if not blend_only:
        z["logistic+trees"] = tuple((z["logistic"][i] + z["trees"][i]) / 2 for i in range(2))
    z.update({blend_name(w, s): v for (w, s), v in blend.items()})
    return z


def row(name: str, y, za, zb) -> str:
    """One learner's line: AUC; the two files' agreement before calibration and after a Platt
    calibration fitted on these out-of-fold 100 Hz predictions (as ``train fit`` calibrates
    on out-of-fold predictions; the slope it finds stretches every difference); band changes
    before calibration (a monotone calibration moves thresholds and scores alike)."""
    from sklearn.metrics import roc_auc_score

    from train.calibrate import fit_calibrator

    pa, pb = 1 / (1 + np.exp(-za)), 1 / (1 + np.exp(-zb))
    d = np.abs(pa - pb)
    cal = fit_calibrator("platt", pa, y)
    dc = np.abs(cal(pa) - cal(pb))
    changes = []
    for lo, hi in PLACEMENTS:
        t = np.quantile(pa, [lo, hi])
        changes.append(int(sum(((pa > v) != (pb > v)).sum() for v in t)))
    return (f"| `{name}` | {roc_auc_score(y, pa):.3f} | {d.max():.3f} | "
            f"{np.percentile(d, 95):.4f} | {(d > 0.02).sum()} | {dc.max():.3f} | "
            f"{(dc > 0.02).sum()} | {' / '.join(map(str, changes))} |")


def export_fit(fold, y, fa, seed: int, train_folds):
    """The exported recipe's parts, fitted on ``train_folds`` alone (as ``make export`` trains
    on the sample's folds 1-6): the hard trees and the additive model, which every weight and
    smoothing of :func:`exported` shares."""
    from train.criteria import AdditiveModel, CriteriaModel

    tr = np.isin(fold, train_folds)
    return (CriteriaModel.fit_features(fa[tr], y[tr], 100, seed=seed, smoothing=0),
            AdditiveModel.fit_features(fa[tr], y[tr], 100))


def exported(fold, y, fa, fb, ids, refer, oof_z, fitted, train_folds, weight: float,
             smoothing: float) -> str:
    """The exported recipe's agreement: the blend (``weight``, trees smoothed by
    ``smoothing``) of the parts ``fitted`` on ``train_folds`` (:func:`export_fit`) scores
    every record from both files, through a Platt calibration fitted on the
    blend's out-of-fold 100 Hz log-odds ``oof_z`` (as ``train fit`` calibrates).  Unlike out
    of fold, a record can then sit at a split its own measurements placed; the figures are
    given for the training folds and the others.

    Band changes: at the recipe's own bands (:func:`train.evaluate.choose_bands` on the
    calibrated out-of-fold scores, the Makefile's targets: sensitivity 0.90, specificity 0.95,
    plain estimates; ``refer`` (the two files' LBBB referrals) borderline whatever the score),
    and their mean over 41 placements of both thresholds shifted together by -0.5 to +0.5
    log-odds: how many records a threshold near these bands would split, which does not hang
    on where one pair of thresholds happened to fall."""
    from train.calibrate import fit_calibrator
    from train.criteria import BlendModel, CriteriaModel, noise_scale
    from train.evaluate import Bands, choose_bands

    tr = np.isin(fold, train_folds)
    hard, additive = fitted
    model = BlendModel(additive,
                       CriteriaModel(hard.estimators, 100, noise_scale(fa[tr], smoothing)),
                       weight, 100)
    p_oof = 1 / (1 + np.exp(-oof_z))
    cal = fit_calibrator("platt", p_oof, y)
    pa, pb = (cal(1 / (1 + np.exp(-model.log_odds(x)))) for x in (fa, fb))
    d = np.abs(pa - pb)
    worst = np.argsort(-d)[:3]
    bands = choose_bands(y, cal(p_oof), 0.90, 0.95, refer=refer[0])

    def changes(b: Bands) -> np.ndarray:
        return b.assign(pa, refer[0]) != b.assign(pb, refer[1])

    own = np.flatnonzero(changes(bands))
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    near = np.mean([changes(Bands(1 / (1 + np.exp(-logit(bands.low) - s)),
                                  1 / (1 + np.exp(-logit(bands.high) - s)))).sum()
                    for s in np.linspace(-0.5, 0.5, 41)])
    return (f"exported recipe ({blend_name(weight, smoothing)}, fitted on folds "
            f"{','.join(map(str, train_folds))}, calibrated out of fold): calibrated max "
            f"{d.max():.3f} (training folds {d[tr].max():.3f}, the others {d[~tr].max():.4f}), "
            f"mean {d.mean():.4f}, over 0.02: {int((d > 0.02).sum())}; largest "
            + ", ".join(f"{ids[i]:05d} {d[i]:.3f}" for i in worst)
            + f"; bands {bands.low:.4f} / {bands.high:.4f}: {len(own)} band changes ("
            + (", ".join(f"{ids[i]:05d}" for i in own) or "none")
            + f"), {near:.2f} on average near them")


def set_measurement(settings: list[str]) -> list[str]:
    """``NAME=VALUE`` pairs set as constants of :mod:`signals.criteria` for this run (a
    screen of the measurement itself; an exported model always measures with its contract's
    ``mi_features`` version).  Returns them as text for the report."""
    import signals.criteria as sc

    done = []
    for item in settings:
        name, _, value = item.partition("=")
        old = getattr(sc, name, None)
        pair = isinstance(old, tuple) and all(isinstance(v, float) for v in old)
        if not (isinstance(old, float) or pair):
            raise SystemExit(f"--measure {item!r}: signals.criteria has no float constant "
                             f"{name!r} (nor a tuple of floats); one of e.g. ONSET_FRACTION, "
                             "END_FRACTION, MIN_BEAT_CORRELATION, QS_BLEND_MV")
        try:
            new = (tuple(float(v) for v in value.split(",")) if pair else float(value))
        except ValueError:
            raise SystemExit(f"--measure {item!r}: {value!r} is not a number"
                             + (" list" if pair else "")) from None
        if pair and len(new) != len(old):
            raise SystemExit(f"--measure {item!r}: {name} takes {len(old)} comma-separated "
                             f"values, e.g. {name}={','.join(f'{v:g}' for v in old)}")
        setattr(sc, name, new)
        done.append(f"{name}=" + (",".join(f"{v:g}" for v in new) if pair else f"{new:g}"))
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/benchwork"),
                    help="where the sample is ingested at 100 and 500 Hz (kept for re-runs)")
    ap.add_argument("--seed", type=int, default=0, help="the trees' bootstrap seed")
    ap.add_argument("--smoothings", default="0.1,0.2,0.3,0.5",
                    help="the smoothed trees' noise, in spreads of each measurement")
    ap.add_argument("--weights", default="0.2,0.25,0.33",
                    help="the blend's weights on the smoothed trees")
    ap.add_argument("--blend-smoothings", default="",
                    help="the blends' tree smoothings (default: train.criteria.TREE_SMOOTHING); "
                         "every pair with --weights is a blend, from the same trees")
    ap.add_argument("--measure", action="append", default=[], metavar="NAME=VALUE",
                    help="measure with a signals.criteria constant changed, e.g. "
                         "ONSET_FRACTION=0.08 (repeatable; a screen, not what a model uses)")
    ap.add_argument("--exported", metavar="FOLDS", default="",
                    help="also fit the blend on these folds (e.g. 1-6, the sample's export) "
                         "and report both files' agreement on every record")
    ap.add_argument("--blend-only", action="store_true",
                    help="only the additive model and the blends (a quicker screen)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    changed = set_measurement(args.measure)
    if changed:
        print("measured with " + ", ".join(changed))
    fold, y, fa, fb, ids, refer = features(args.work)
    from signals.criteria import FEATURE_NAMES

    counts = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("n_")]
    flips = (fa[:, counts] != fb[:, counts]).any(axis=1)
    print(f"{len(y)} records, {int(y.sum())} MI; {int(flips.sum())} records meet a criterion "
          f"in a different number of leads from their 500 Hz file than from their 100 Hz one")
    print("\n| learner | out-of-fold AUC | max \\|p100 - p500\\| | 95th pct | over 0.02 | "
          "calibrated: max | calibrated: over 0.02 | band changes ("
          + " / ".join(f"{lo:.0%}-{hi:.0%}" for lo, hi in PLACEMENTS) + ") |")
    print("|---|---|---|---|---|---|---|---|")
    smoothings = tuple(float(v) for v in args.smoothings.split(","))
    weights = tuple(float(v) for v in args.weights.split(","))
    blend_smoothings = tuple(float(v) for v in args.blend_smoothings.split(",") if v)
    z = out_of_fold(fold, y, fa, fb, args.seed, smoothings, weights, args.blend_only,
                    blend_smoothings)
    for name, (za, zb) in z.items():
        print(row(name, y, za, zb), flush=True)
    if args.exported:
        from train.criteria import TREE_SMOOTHING
        from train.dataset import parse_folds

        train_folds = parse_folds(args.exported)
        fitted = export_fit(fold, y, fa, args.seed, train_folds)
        print()
        for w in weights:
            for sm in blend_smoothings or (TREE_SMOOTHING,):
                print(exported(fold, y, fa, fb, ids, refer, z[blend_name(w, sm)][0], fitted,
                               train_folds, w, sm), flush=True)


if __name__ == "__main__":
    main()
