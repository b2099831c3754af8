"""The contract an exported ONNX model carries in its ``metadata_props``.

``train export`` writes it; ``infer score`` refuses a model without it.  It is everything the
scorer needs to feed the model exactly what training fed it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

CONTRACT_VERSION = "1"
_PREFIX = "mi_screen."


class ModelContractError(ValueError):
    """An ONNX model lacks the mi-screen contract, or carries a malformed one."""


@dataclass(frozen=True)
class ModelContract:
    """Input contract and provenance of an exported MI model.

    The graph takes ``float32[batch, input_samples, len(leads)]`` in ``units`` at ``fs`` Hz,
    named ``input_name``, and returns the MI probability ``float32[batch, 1]``.  A beat model
    (``task`` ``beats``) takes ``float32[batch, input_samples]`` (a beat's samples or
    features, as ``beat`` says) and returns the probability that the beat is abnormal.
    Normalisation is inside the graph.
    """

    model_name: str
    input_name: str
    fs: int
    leads: tuple[str, ...]
    units: str
    input_samples: int
    band_low: float
    band_high: float
    architecture: str
    data_manifest_sha256: str
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    #: the calibration inside the graph (``train.calibrate.Calibrator`` as a dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    #: what the bands achieve on out-of-fold predictions: per side the metric, target,
    #: estimate, one-sided lower confidence bound, records and whether the target is supported
    band_bounds: dict[str, Any] = field(default_factory=dict)
    #: samples between the starts of consecutive windows (0: half a window); ``input_samples``
    #: is the window length
    window_stride: int = 0
    #: how window probabilities become a record's (``signals.windows.AGGREGATIONS``)
    aggregation: str = "mean"
    #: ``mi`` (12-lead records) or ``beats`` (single heartbeats, ECG5000)
    task: str = "mi"
    #: beat models: ``inputs`` ("beat": 140 z-normalised samples; "features": the named
    #: ``features`` of ``signals.beats``), ``denoiser`` before features, ``lead`` to cut beats
    #: from 12-lead records, ``samples`` per beat
    beat: dict[str, Any] = field(default_factory=dict)
    #: models on measurements (``arch`` criteria): the graph's input ``input`` is
    #: ``float32[batch, len(names)]``, the columns ``names`` of ``function`` (a versioned name
    #: such as ``signals.criteria.mi_features/4``) taken from each window of the record at
    #: ``fs``; ``referral`` (such as ``signals.criteria.lbbb_like/1``, absent in models
    #: exported before it) names the rule whose records the bands send to borderline whatever
    #: their probability; empty for models that take the waveform
    features: dict[str, Any] = field(default_factory=dict)

    @property
    def windows(self):
        """The :class:`signals.windows.WindowSpec` the scorer cuts and aggregates by."""
        from signals.windows import WindowSpec

        return WindowSpec(self.input_samples, self.window_stride or max(1, self.input_samples // 2),
                          self.aggregation)

    def to_metadata(self) -> dict[str, str]:
        """Flatten to the string key/value pairs ONNX ``metadata_props`` hold."""
        out = {f"{_PREFIX}contract_version": CONTRACT_VERSION}
        for key, value in asdict(self).items():
            if key == "leads":
                value = ",".join(value)
            elif isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
            out[_PREFIX + key] = str(value)
        return out

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "model") -> ModelContract:
        """Parse and validate ``metadata_props``; raise ModelContractError naming the gap."""
        missing = [k for k in MODEL_CONTRACT_KEYS if _PREFIX + k not in props]
        if missing:
            raise ModelContractError(
                f"{source}: not an mi-screen model: metadata_props lacks "
                f"{', '.join(_PREFIX + k for k in missing)}; export the model with `train export`"
            )
        get = {k: props[_PREFIX + k] for k in MODEL_CONTRACT_KEYS}
        optional = {k: props[_PREFIX + k] for k in OPTIONAL_CONTRACT_KEYS if _PREFIX + k in props}
        if get["contract_version"] != CONTRACT_VERSION:
            raise ModelContractError(
                f"{source}: contract version {get['contract_version']!r}, this scorer reads "
                f"version {CONTRACT_VERSION!r}; re-export the model or upgrade mi-screen"
            )
        try:
            contract = cls(
                model_name=get["model_name"],
                input_name=get["input_name"],
                fs=int(get["fs"]),
                leads=tuple(get["leads"].split(",")),
                units=get["units"],
                input_samples=int(get["input_samples"]),
                band_low=float(get["band_low"]),
                band_high=float(get["band_high"]),
                architecture=get["architecture"],
                data_manifest_sha256=get["data_manifest_sha256"],
                metrics=json.loads(get["metrics"]),
                versions=json.loads(get["versions"]),
                **{k: _OPTIONAL_PARSERS[k](v) for k, v in optional.items()},
            )
        except (ValueError, TypeError) as e:
            raise ModelContractError(f"{source}: malformed mi-screen metadata: {e}") from e
        if not 0.0 <= contract.band_low <= contract.band_high <= 1.0:
            raise ModelContractError(
                f"{source}: bands must satisfy 0 <= low <= high <= 1, got "
                f"{contract.band_low}, {contract.band_high}"
            )
        contract.validate(source)
        return contract

    def validate(self, source: str = "model", input_shape=None) -> None:
        """Check the contract's own values, and against the graph's input shape if given
        (``[batch, samples, leads]``, dimensions as ints or symbolic names).

        Raises ModelContractError naming the first problem.
        """
        from schemas.ecg import LEADS, canonical_lead, unit_scale_to_mv

        def bad(problem: str) -> ModelContractError:
            return ModelContractError(f"{source}: {problem}; re-export the model with "
                                      "`train export`")

        if self.task not in TASKS:
            raise bad(f"task {self.task!r} is not one of {list(TASKS)}")
        if self.task == "beats":
            self._validate_beats(bad, input_shape)
            return
        if not 0 < self.fs <= 20_000:
            raise bad(f"sampling rate {self.fs} Hz is not plausible (1-20000)")
        if not 0 < self.input_samples <= 3600 * self.fs:
            raise bad(f"input length {self.input_samples} samples is not plausible at "
                      f"{self.fs} Hz (1 sample to 1 hour)")
        if not 0 <= self.window_stride <= self.input_samples:
            raise bad(f"window stride {self.window_stride} is not between 0 and the window "
                      f"length {self.input_samples}")
        from signals.windows import AGGREGATIONS

        if self.aggregation not in AGGREGATIONS:
            raise bad(f"aggregation {self.aggregation!r} is not one of {list(AGGREGATIONS)}")
        if unit_scale_to_mv(self.units) is None:
            raise bad(f"units {self.units!r} are not a voltage (V, mV, uV)")
        canon = [canonical_lead(lead) for lead in self.leads]
        if None in canon or len(set(canon)) != len(canon) or canon != list(self.leads):
            raise bad(f"leads {','.join(self.leads)} must be distinct standard lead names "
                      f"({','.join(LEADS)})")
        if self.features:
            self._validate_features(bad, input_shape, source)
            return
        if input_shape is not None:
            shape = list(input_shape)
            if len(shape) != 3:
                raise bad(f"the graph takes a {len(shape)}-d input, the contract describes "
                          "[batch, samples, leads]")
            for dim, want, what in ((shape[1], self.input_samples, "samples"),
                                    (shape[2], len(self.leads), "leads")):
                if isinstance(dim, int) and dim != want:
                    raise bad(f"the graph takes {dim} {what} per input, the contract says "
                              f"{want}")

    def _validate_features(self, bad, input_shape, source: str) -> None:
        from signals.criteria import FEATURE_NAMES, FEATURES_VERSION, REFERRAL_VERSION

        f = self.features
        if f.get("referral") not in (None, REFERRAL_VERSION):
            raise ModelContractError(
                f"{source}: the model's bands send records to borderline by the rule "
                f"{f.get('referral')!r}, this scorer applies {REFERRAL_VERSION!r}; score it "
                "with the mi-screen version that trained it, or train the model again")
        if f.get("function") != FEATURES_VERSION:
            raise ModelContractError(
                f"{source}: the model takes the measurements {f.get('function')!r}, this "
                f"scorer computes "
                f"{FEATURES_VERSION!r}; score it with the mi-screen version that trained it, "
                "or train the model again")
        if list(f.get("names", [])) != list(FEATURE_NAMES):
            raise bad(f"the model's {len(f.get('names', []))} measurement columns are not "
                      f"{f.get('function')}'s {len(FEATURE_NAMES)}")
        if f.get("input") != self.input_name:
            raise bad(f"the measurements input {f.get('input')!r} is not the graph input "
                      f"{self.input_name!r}")
        if input_shape is not None:
            shape = list(input_shape)
            if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != len(FEATURE_NAMES)):
                raise bad(f"the graph takes {shape}, a measurements model takes [batch, "
                          f"{len(FEATURE_NAMES)}]")

    def _validate_beats(self, bad, input_shape) -> None:
        from schemas.ecg import canonical_lead

        inputs = self.beat.get("inputs")
        if inputs not in ("beat", "features"):
            raise bad(f"beat inputs {inputs!r} are not 'beat' or 'features'")
        want = self.beat.get("samples") if inputs == "beat" else len(self.beat.get("features",
                                                                                     []))
        if want != self.input_samples or not self.input_samples:
            raise bad(f"a beat model's input holds {want} values, the contract says "
                      f"{self.input_samples}")
        if canonical_lead(str(self.beat.get("lead"))) is None:
            raise bad(f"beat lead {self.beat.get('lead')!r} is not a standard lead name")
        if input_shape is not None:
            shape = list(input_shape)
            if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != want):
                raise bad(f"the graph takes {shape}, a beat model takes [batch, {want}]")


#: What a model scores.
TASKS = ("mi", "beats")

#: Keys (after the ``mi_screen.`` prefix) a valid model must carry.
MODEL_CONTRACT_KEYS: tuple[str, ...] = (
    "contract_version",
    "model_name",
    "input_name",
    "fs",
    "leads",
    "units",
    "input_samples",
    "band_low",
    "band_high",
    "architecture",
    "data_manifest_sha256",
    "metrics",
    "versions",
)

#: Keys a model may carry (models exported before they existed still load).
OPTIONAL_CONTRACT_KEYS: tuple[str, ...] = ("calibration", "band_bounds", "window_stride",
                                           "aggregation", "task", "beat", "features")
_OPTIONAL_PARSERS = {"calibration": json.loads, "band_bounds": json.loads, "window_stride": int,
                     "aggregation": str, "task": str, "beat": json.loads,
                     "features": json.loads}
