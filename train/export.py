"""Export a trained run to ONNX with tf2onnx, verify it against Keras, embed its contract."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write_bytes, package_versions, prepare_output, sha256_file
from schemas import LEADS, UNITS, ModelContract
from train.calibrate import Calibrator
from train.dataset import load_split

_LOGGER = logging.getLogger(__name__)

#: ONNX opset pinned for reproducible graphs (onnxruntime >= 1.14 runs it).
DEFAULT_OPSET = 17
INPUT_NAME = "ecg_mv"


class ExportError(RuntimeError):
    """The ONNX graph could not be produced or does not match the Keras model."""


def _load_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no run.json; is this the output of `train fit`?")
    return json.loads(path.read_text())


def export_onnx(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    tolerance: float = 1e-4,
    overwrite: bool = False,
    ensemble: bool = False,
) -> dict[str, Any]:
    """Convert ``run_dir/model.keras`` to ONNX at ``out`` and write a model card beside it.

    With ``ensemble``, the exported graph is instead the mean of the run's cross-fitted fold
    models (``run_dir/fold_models``), followed by the same calibration: K times the scoring
    cost, for whatever the average gains (``metrics.json`` ``ensemble`` says what, on the test
    folds).

    The graph has one input ``ecg_mv`` float32 ``[batch, input_samples, 12]`` (dynamic batch)
    and one output, the calibrated MI probability ``[batch, 1]`` (the run's calibrator is
    appended to the graph).  Before anything is written,
    onnxruntime's outputs on the run's test records are compared with Keras's; a difference
    above ``tolerance`` raises :class:`ExportError`.

    Returns a dict with ``max_abs_diff``, ``n_checked`` and ``bytes``.
    """
    # tf2onnx logs every optimisation pass at INFO; keep our own log readable
    logging.getLogger("tf2onnx").setLevel(max(logging.WARNING, _LOGGER.getEffectiveLevel()))
    run_dir, out = Path(run_dir), Path(out)
    card_path = out.with_name(out.stem + "_card.md")
    prepare_output(out, overwrite)
    prepare_output(card_path, overwrite)  # the card is an output too: never replaced silently
    run = _load_run(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the runs that export as one model, with why they have no --ensemble
    single = {"criteria": (_export_criteria, "the criteria trees export as one model (the "
                           "fold models are kept for reference only)"),
              "beats": (_export_beats, "a beat run has no fold models to average")}
    kind = "criteria" if run.get("arch") == "criteria" else run.get("task")
    if kind in single:
        export_one, why = single[kind]
        if ensemble:
            raise ExportError(f"{run_dir}: {why}; export it without --ensemble")
        return export_one(run_dir, run, metrics, out, card_path, opset, tolerance, overwrite)
    import keras
    import tensorflow as tf

    n_samples = int(run["input_samples"])
    if ensemble:
        paths = sorted((run_dir / "fold_models").glob("fold_*.keras"))
        if not paths:
            raise ExportError(f"{run_dir}: no fold_models/; train with --cross-fit to export an "
                              "ensemble")
        members = [keras.models.load_model(p) for p in paths]
        inp = keras.Input((n_samples, len(LEADS)), name=INPUT_NAME)
        outs = []
        for i, m in enumerate(members):
            m.name = f"fold_{i}"  # distinct names inside one graph
            outs.append(m(inp))
        model = keras.Model(inp, keras.layers.Average(name="mi_probability")(outs),
                            name=f"{run['arch']}_ensemble{len(members)}")
    else:
        model = keras.models.load_model(run_dir / "model.keras")
    spec = (tf.TensorSpec((None, n_samples, len(LEADS)), tf.float32, name=INPUT_NAME),)
    proto = _convert(model, spec, opset, run_dir, "; if it was trained on a GPU, rebuild the "
                     "LSTM with use_cudnn=False")
    contract = _mi_contract(
        run, metrics, f"mi-screen-{run['arch']}{'-ensemble' if ensemble else ''}-{run['fs']}hz",
        INPUT_NAME, (f"{run['arch']} (mean of {len(members)} cross-fitted fold models)"
                     if ensemble else run["arch"]),
        package_versions("mi-screen", "tensorflow-cpu", "keras", "tf2onnx", "onnx",
                         "onnxruntime"))
    doc = ("MI screening model. Input ecg_mv: float32 [batch, samples, 12] in mV, leads "
           f"{','.join(LEADS)}, {run['fs']} Hz. Output: MI probability. Research use only.")
    # verified on the windows of the run's test records before anything is written
    test = load_split(run["data_dir"], run["folds"]["test"],
                      run["config"].get("min_quality", "unusable"))
    x, _ = test.windows(contract.windows)
    return _finish(proto, model, contract, run, doc, x, "the test records' windows", out,
                   card_path, overwrite, tolerance,
                   lambda sha, diff, n: model_card(contract, run, metrics, sha, diff, n))


def _mi_contract(run: dict[str, Any], metrics: dict[str, Any], name: str, input_name: str,
                 architecture: str, versions: dict[str, str], **extra) -> ModelContract:
    """The contract of an MI model from its run."""
    return ModelContract(
        model_name=name, input_name=input_name, fs=int(run["fs"]), leads=LEADS, units=UNITS,
        input_samples=int(run["input_samples"]), band_low=float(run["bands"]["low"]),
        band_high=float(run["bands"]["high"]), architecture=architecture,
        data_manifest_sha256=run["data_manifest_sha256"], metrics=_summary(metrics, run),
        versions=versions, calibration=run.get("calibration", {}),
        band_bounds=run["bands"].get("achieved", {}),
        window_stride=int(run.get("window", {}).get("stride", 0)),
        aggregation=run.get("window", {}).get("aggregation", "mean"), **extra)


def _export_criteria(run_dir: Path, run: dict[str, Any], metrics: dict[str, Any], out: Path,
                     card_path: Path, opset: int, tolerance: float, overwrite: bool
                     ) -> dict[str, Any]:
    """The criteria trees as one graph (``mi_features`` -> calibrated probability), checked
    against the Python model (scikit-learn's trees, or the additive model's tables in numpy)
    on the measurements of the run's test records."""
    from train.criteria import load_model, split_features

    model = load_model(run_dir / "model.pkl")
    features = run["features"]
    contract = _mi_contract(
        run, metrics, f"mi-screen-criteria-{run['fs']}hz", features["input"],
        model.architecture,
        package_versions("mi-screen", "scikit-learn", "onnx", "onnxruntime"), features=features)
    doc = (f"MI screening model. Input {features['input']}: float32 [batch, "
           f"{len(features['names'])}], the measurements of {features['function']} of a 12-lead "
           f"record in mV at {run['fs']} Hz. Output: MI probability. Research use only.")
    test = load_split(run["data_dir"], run["folds"]["test"],
                      run["config"].get("min_quality", "unusable"))
    x = split_features(test)
    return _finish(model.to_onnx(opset), model, contract, run, doc, x,
                   "the test records' measurements", out, card_path, overwrite, tolerance,
                   lambda sha, diff, n: model_card(contract, run, metrics, sha, diff, n,
                                                   model=model))


def _convert(model, spec, opset: int, run_dir: Path, hint: str = ""):
    """tf2onnx conversion of a Keras model; ExportError (with ``hint``) if it fails."""
    import tf2onnx

    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    except Exception as e:  # tf2onnx raises a zoo of types for unsupported ops
        raise ExportError(f"{run_dir}: tf2onnx could not convert the model ({type(e).__name__}: "
                          f"{e}){hint}") from e
    return proto


def _finish(proto, model, contract: ModelContract, run: dict[str, Any], doc: str,
            x: np.ndarray, what: str, out: Path, card_path: Path, overwrite: bool,
            tolerance: float, card) -> dict[str, Any]:
    """Append the run's calibration and the contract to ``proto``, check onnxruntime against
    Keras (then the same calibration) on ``x``, and write the model and its card
    (``card(sha256, max_diff, n_checked)``) only if they agree within ``tolerance``."""
    import onnx
    import onnxruntime as ort

    calibrator = Calibrator(**run["calibration"]) if run.get("calibration") else Calibrator()
    _append_calibration(proto, calibrator)
    onnx.helper.set_model_props(proto, contract.to_metadata())
    proto.producer_name = "mi-screen"
    proto.doc_string = doc
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    onnx_p = session.run(None, {contract.input_name: x})[0].reshape(-1)
    keras_p = calibrator(np.asarray(model.predict(x, batch_size=256, verbose=0)).reshape(-1))
    diff = float(np.max(np.abs(onnx_p - keras_p))) if len(x) else 0.0
    if not diff <= tolerance:
        raise ExportError(f"{out}: onnxruntime and {_reference(model)} differ by {diff:.2e} (> "
                          f"{tolerance:.0e}) on {what}; the export is not written")
    atomic_write_bytes(out, data, overwrite)
    atomic_write_bytes(card_path, card(sha256_file(out), diff, len(x)).encode(),
                       overwrite=overwrite)
    _LOGGER.info("wrote %s and %s", out, card_path)
    return {"max_abs_diff": diff, "n_checked": len(x), "bytes": len(data), "card": card_path,
            "reference": _reference(model)}


def _reference(model) -> str:
    """What an export is checked against: the criteria models name it, a network is Keras."""
    return getattr(model, "reference", "Keras")


def _export_beats(run_dir: Path, run: dict[str, Any], metrics: dict[str, Any], out: Path,
                  card_path: Path, opset: int, tolerance: float, overwrite: bool
                  ) -> dict[str, Any]:
    """Export a ``train fit --task beats`` run: input ``[batch, 140]`` beats or ``[batch, F]``
    features, output the calibrated probability that a beat is abnormal."""
    import keras
    import tensorflow as tf

    from ingest.ecg5000 import load_beats
    from train.beats import model_inputs

    model = keras.models.load_model(run_dir / "model.keras")
    n = int(run["input_samples"])
    name = "beat" if run["inputs"] == "beat" else "beat_features"
    proto = _convert(model, (tf.TensorSpec((None, n), tf.float32, name=name),), opset, run_dir)
    cv = metrics["cross_validation"]
    contract = ModelContract(
        model_name=f"mi-screen-beats-{run['arch']}", input_name=name, fs=BEAT_NOMINAL_FS,
        leads=("II",), units="z-score", input_samples=n,
        band_low=float(run["bands"]["low"]), band_high=float(run["bands"]["high"]),
        architecture=run["arch"], data_manifest_sha256=run["data_manifest_sha256"],
        metrics={"cv_roc_auc": round(cv["roc_auc"], 4),
                 "cv_roc_auc_ci95": [round(v, 4) for v in cv["roc_auc_ci95"]],
                 "cv_recall": round(cv["recall"], 4),
                 "cv_specificity": round(cv["specificity"], 4), "n": cv["n"],
                 "n_abnormal": cv["n_abnormal"]},
        versions=package_versions("mi-screen", "tensorflow-cpu", "keras", "tf2onnx", "onnx",
                                  "onnxruntime"),
        calibration=run.get("calibration", {}), band_bounds=run["bands"].get("achieved", {}),
        task="beats",
        beat={"inputs": run["inputs"], "features": run.get("features", []),
              "denoiser": run["config"].get("denoiser", "none"), "lead": "II",
              "samples": int(run["beat_samples"])},
    )
    doc = ("Abnormal-beat model (ECG5000 demonstration). Input: "
           f"{'140 z-normalised samples' if name == 'beat' else 'beat features'}; "
           "output: probability that the beat is abnormal. Research use only.")
    _, beats, _ = load_beats(run["data_dir"])
    x = model_inputs(beats[:200], run["arch"], contract.beat["denoiser"])
    return _finish(proto, model, contract, run, doc, x, "the beats", out, card_path, overwrite,
                   tolerance,
                   lambda sha, diff, n_checked: beat_model_card(contract, run, cv, sha, diff,
                                                                n_checked))


#: A beat model's contract ``fs``: the nominal rate of a 140-sample ECG5000 beat (unused: beats
#: are resampled to 140 samples whatever the recording's rate).
BEAT_NOMINAL_FS = 175


def beat_model_card(contract: ModelContract, run: dict[str, Any], cv: dict[str, Any],
                    sha256: str, max_diff: float, n_checked: int) -> str:
    inputs = ("the 140 z-normalised samples of a beat" if contract.beat["inputs"] == "beat" else
              f"{len(contract.beat['features'])} per-beat features "
              f"({', '.join(contract.beat['features'])}) after the "
              f"`{contract.beat['denoiser']}` denoiser")
    how = (f"{run['config']['folds']}-fold stratified cross-validation x "
           f"{run['config']['repeats']} repeats")

    def ci(pair) -> str:
        return f"{pair[0]:.3f}-{pair[1]:.3f}"

    return f"""# Model card: {contract.model_name}

Generated {datetime.now(UTC).isoformat(timespec="seconds")} by `train export`.
ONNX sha256 `{sha256}`.

## Intended use
**A demonstration of beat-level anomaly detection, not a validated detector.** ECG5000 holds
beats of **one patient** with severe congestive heart failure (record chf07 of the BIDMC
Congestive Heart Failure Database); nothing here says how the model does on anyone else.
Not a medical device.

## Input and output
- `{contract.input_name}`: float32 `[batch, {contract.input_samples}]`: {inputs}. Scaling is
  inside the graph (fitted on the training beats only).
- `infer score` scores beat files (one beat a row, UCR or TensorFlow layout), and with
  `--beats` cuts 12-lead records into R-to-R beats of lead {contract.beat['lead']}, resampled to
  {contract.beat['samples']} samples and z-normalised like ECG5000's.
- Output: probability that the beat is abnormal (ECG5000 classes 2-5), calibrated inside the
  graph ({contract.calibration.get('method', 'none')}).
- Bands (chosen on {run['bands']['chosen_on']}): normal below {contract.band_low:.4f},
  abnormal at or above {contract.band_high:.4f}.
{_card_bounds(contract.band_bounds)}

## Evaluation ({how}, {cv['n']} beats, {cv['n_abnormal']} abnormal)
- ROC AUC {cv['roc_auc']:.3f} (95% CI {ci(cv['roc_auc_ci95'])})
- At 0.5: recall {cv['recall']:.3f} ({ci(cv['recall_ci95'])}), specificity
  {cv['specificity']:.3f} ({ci(cv['specificity_ci95'])})

ONNX vs Keras: max |difference| {max_diff:.2e} on {n_checked} beats.

## Data
ECG5000, UCR Time Series Archive (Dau et al. 2019), from PhysioNet's BIDMC CHF database
(Baim et al. 1986; Goldberger et al. 2000). Data manifest sha256
`{contract.data_manifest_sha256}`.
"""


def _append_calibration(proto, calibrator: Calibrator) -> None:
    """Route the graph's output through the calibration map, keeping the output's name."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    out = graph.output[0].name
    raw = f"{out}_uncalibrated"
    for node in graph.node:
        node.output[:] = [raw if o == out else o for o in node.output]
        node.input[:] = [raw if i == out else i for i in node.input]
    nodes, inits = calibrator.onnx_nodes(helper, numpy_helper, raw, out)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)


_AGGREGATION_WORDS = {"logit_mean": "mean log-odds", "max": "maximum", "mean": "mean"}


def _confidence_words(confidence: float) -> str:
    return (f"{confidence:.0%} lower confidence bound" if confidence else
            "plain estimate on the out-of-fold records (`--confidence 0`; the bounds below "
            "are 95 %)")


def _card_bounds(bounds: dict[str, Any]) -> str:
    """What the bands achieve, with bounds, and the plain-words statements, for the card."""
    lines = []
    for side in ("low", "high"):
        if side not in bounds:
            continue
        b = bounds[side]
        verdict = (f"met as an estimate, {'' if b['supported'] else 'NOT '}supported as a bound"
                   if "met" in b and b["met"] else
                   "NOT met as an estimate" if "met" in b else
                   "supported" if b["supported"] else "NOT supported")
        lines.append(f"- {side} threshold: {b['metric']} {b['estimate']:.3f} on {b['n']} records, "
                     f"lower bound {b['lower_bound']:.3f} (target {b['target']:.2f}: {verdict})")
        if "statement" in b:
            lines.append(f"  **{b['statement']}**")
    return "\n".join(lines)


def _summary(metrics: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    t = metrics["test"]
    return {
        "test_folds": run["folds"]["test"],
        "test_n": t["n"],
        "test_n_mi": t["n_mi"],
        "test_roc_auc": round(t["roc_auc"], 4),
        "test_roc_auc_ci95": [round(v, 4) for v in t["roc_auc_ci95"]],
        "test_pr_auc": round(t["pr_auc"], 4),
        "validation_roc_auc": round(metrics["validation"]["roc_auc"], 4),
    }


def _card_referral(run: dict[str, Any]) -> str:
    """The card's line on the records the bands send to borderline whatever their score."""
    b = run["bands"]
    if "referral" not in b:
        return ""
    r = b["achieved"].get("referred", {})
    return (f"\n  Whatever its probability, a wide QRS of left bundle branch block shape "
            f"(`{b['referral']}`) is borderline: {r.get('records', 0)} of the out-of-fold "
            f"records ({r.get('mi', 0)} MI) were, and the targets count them as neither missed "
            "nor falsely called.")


def model_card(contract: ModelContract, run: dict[str, Any], metrics: dict[str, Any],
               sha256: str, max_diff: float, n_checked: int,
               model=None) -> str:
    """The model card: intended use, data, folds, metrics with intervals, bands, limitations
    (``model``: a criteria run's :mod:`train.criteria` model, which describes itself)."""
    t = metrics["test"]
    if contract.features:
        f = contract.features
        inputs = (f"- `{contract.input_name}`: float32 `[batch, {len(f['names'])}]`, the "
                  f"measurements `{f['function']}` takes from a record (12 leads in mV, "
                  f"{', '.join(contract.leads)}, at {contract.fs} Hz after the scorer's "
                  "resampling): per lead Q duration and depth, R, S, ST at J and J+60 ms, T "
                  "(against the PR baseline of the median beat, timed from the model's own "
                  "QRS onset, where the QRS rises steeply, not the results table's); QRS "
                  "duration and heart rate; "
                  "leads meeting each criterion per lead group; poor R progression. NaN where "
                  f"not measurable ({model.missing_text}). Each window below is "
                  "measured on its own.")
        model_text = model.describe(run["config"].get("seed", 0))
        checked = (f"ONNX vs {_reference(model)}: max |difference| {max_diff:.2e} on {n_checked} "
                   "test records.")
        limits = (f"\n- The measurements are taken at {contract.fs} Hz (one sample every "
                  f"{1000 / contract.fs:g} ms){model.rate_text}"
                  + f" (on the shipped sample: `benchmarks/RESULTS.md`, \"{model.results_section}"
                  "\").\n- Lead "
                  "reversals, paced rhythms, bundle branch blocks and left ventricular "
                  "hypertrophy mimic or mask infarct patterns in the measurements."
                  + (" A wide QRS of left bundle branch block shape (LBBB or ventricular "
                     f"pacing, `{f['referral']}`) is borderline whatever its probability, in the "
                     "bands' choice and in the scorer; right bundle branch block, left "
                     "ventricular hypertrophy and lead reversals are not caught."
                     if f.get("referral") else ""))
    else:
        inputs = (f"- `{contract.input_name}`: float32 `[batch, {contract.input_samples}, "
                  f"{len(contract.leads)}]`,\n  millivolts, {contract.fs} Hz, leads "
                  f"{', '.join(contract.leads)}. Normalisation (per-lead mean\n  and variance of "
                  "the training folds) is inside the graph.")
        model_text = (f"Architecture `{contract.architecture}`; {run['epochs_run']} epochs run, "
                      f"weights of epoch\n{run['best_epoch']} kept; seed {run['config']['seed']}.")
        checked = f"ONNX vs Keras: max |difference| {max_diff:.2e} on {n_checked} test records."
        limits = ""

    low, high = t["thresholds"]["low"], t["thresholds"]["high"]
    ci = t["roc_auc_ci95"]
    per_band = ", ".join(f"{k} {v['records']} ({v['mi']} MI)" for k, v in t["bands"].items())
    return f"""# Model card: {contract.model_name}

Generated {datetime.now(UTC).isoformat(timespec="seconds")} by `train export`.
ONNX sha256 `{sha256}`.

## Intended use
Research screening of 10-second 12-lead resting ECGs for myocardial infarction (PTB-XL's
diagnostic class MI: the 14 SCP codes of that class, acute injury codes included), to
prioritise records for review by a cardiologist. **Not a medical device; not for diagnosis or
treatment decisions.**

## Input and output
{inputs}
- Windows: a record is cut into windows of {contract.input_samples / contract.fs:g} s every
  {contract.windows.stride / contract.fs:g} s (the last aligned with its end); its probability is
  the {_AGGREGATION_WORDS.get(contract.aggregation, contract.aggregation)} of its windows'.
- Output: MI probability `[batch, 1]` per window, calibrated inside the graph
  ({contract.calibration.get('method', 'none')}; chosen by held-out Brier score).
- Bands (chosen on {run['bands']['chosen_on']}): normal below
  {contract.band_low:.4f}; MI at or above {contract.band_high:.4f}; borderline (needs review)
  between. Targets: sensitivity >= {run['bands']['min_sensitivity']} at the low threshold,
  specificity >= {run['bands']['min_specificity']} at the high one, each as a
  {_confidence_words(run['bands'].get('confidence', 0.95))}.{_card_referral(run)}
{_card_bounds(contract.band_bounds)}

## Data
PTB-XL (Wagner et al., Scientific Data 7, 154, 2020; PhysioNet, CC BY 4.0), ingested at
{run['fs']} Hz. Training folds {run['folds']['train']} ({run['records']['train']} records),
validation folds {run['folds']['val']} ({run['records']['validation']}), test folds
{run['folds']['test']} ({run['records']['test']}). Folds are patient-disjoint. Data manifest
sha256 `{contract.data_manifest_sha256}`.

## Model
{model_text}

## Metrics (test folds, {t['n']} records, {t['n_mi']} MI)
- ROC AUC {t['roc_auc']:.3f} (95% bootstrap CI {ci[0]:.3f}-{ci[1]:.3f})
- PR AUC {t['pr_auc']:.3f} (prevalence {t['prevalence']:.3f})
- At the low threshold: sensitivity {low['sensitivity']:.3f}, specificity {low['specificity']:.3f}
- At the high threshold: sensitivity {high['sensitivity']:.3f}, specificity \
{high['specificity']:.3f}
- Test records per band: {per_band}

{checked}

## Limitations
- Trained on one German hospital archive (PTB-XL, 1989-1996, Schiller devices); performance on
  other populations, devices and filters is unknown until measured.
- A model trained on the shipped 353-record sample has very wide intervals: it demonstrates the
  pipeline, not clinical performance. Train on the full corpus for a usable model.
- Labels are cardiologists' SCP statements, not angiography or troponin; MI codes include old
  infarcts, so "MI" here means ECG evidence of infarction, current or past.
- Records must be 12-lead, in mV; other rates are resampled by the scorer.{limits}
"""
