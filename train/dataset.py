"""From the ingested Parquet dataset to ``tf.data``, without pandas, in bounded memory.

Signals stay int16 (as stored) in memory; each batch is converted to float32 millivolts with
:func:`ingest.adc_to_mv` only when it is drawn, so the full 500 Hz corpus (about 2.6 GB as int16)
never exists as float.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from ingest import adc_to_mv, open_dataset, signals_from_table
from schemas import LEADS
from signals.windows import WindowSpec


class SplitError(ValueError):
    """Folds are malformed, empty, overlapping, or share patients."""


def parse_folds(text: str) -> tuple[int, ...]:
    """``"1-6"``, ``"7"``, ``"1,3,5-6"`` -> sorted fold numbers.

    >>> parse_folds("1-3,8")
    (1, 2, 3, 8)
    """
    folds: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise SplitError(f"folds must look like 1-8 or 9 or 1,3,5-6; got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi:
            raise SplitError(f"fold range {part!r} is reversed; write {hi}-{lo}")
        folds.update(range(lo, hi + 1))
    return tuple(sorted(folds))


@dataclass
class Split:
    """Records of some folds: int16 signals, labels and ids, sorted by ecg_id."""

    folds: tuple[int, ...]
    signals: np.ndarray  # (n, n_samples, 12) int16, ADC units
    gain: np.ndarray  # (n,) ADC units per mV
    baseline: np.ndarray  # (n,)
    y: np.ndarray  # (n,) float32, 1 = MI
    ecg_id: np.ndarray
    patient_id: np.ndarray
    fs: int
    #: the same records from a dataset at another rate, brought to ``fs`` by the scorer's
    #: resampler and stored like ``signals`` (``--mix-rate-data``); training draws each record
    #: from either copy
    alt: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_samples(self) -> int:
        return int(self.signals.shape[1])

    def millivolts(self, index: np.ndarray | slice = slice(None),
                   use_alt: np.ndarray | None = None) -> np.ndarray:
        """float32 mV for the records at ``index`` (the only float copy made); where
        ``use_alt`` (bool per record) is true, from :attr:`alt`."""
        raw = self.signals[index]
        if use_alt is not None and self.alt is not None and use_alt.any():
            raw = np.where(use_alt[:, None, None], self.alt[index], raw)
        return adc_to_mv(raw, self.gain[index, None, None], self.baseline[index, None, None])

    def windows(self, spec: WindowSpec, index: np.ndarray | slice = slice(None)
                ) -> tuple[np.ndarray, np.ndarray]:
        """The scorer's windows of the records at ``index``: float32 mV ``(n_windows, length,
        12)`` and each window's record (0-based within ``index``), record by record."""
        mv = self.millivolts(index)
        starts = spec.starts(mv.shape[1])
        take = starts[:, None] + np.arange(min(spec.length, mv.shape[1]))
        x = mv[:, take].reshape(-1, take.shape[1], mv.shape[2])
        return x, np.repeat(np.arange(len(mv)), len(starts))


#: ``--min-quality`` choices: the worst quality verdict a record may have to be used.
QUALITY_LEVELS = ("good", "poor", "unusable")


def load_split(data_dir: str | os.PathLike[str], folds: Sequence[int],
               min_quality: str = "unusable",
               alt_dir: str | os.PathLike[str] | None = None) -> Split:
    """Load the records of ``folds`` from an ``ingest ptbxl`` output folder.

    ``min_quality`` keeps records whose quality verdict is at least this good: ``good`` only
    good records, ``poor`` good and poor (what the scorer scores), ``unusable`` everything.
    Records the gate could not judge (too short) are kept.  With ``alt_dir`` (the same corpus
    ingested at another rate), :attr:`Split.alt` holds each record's other copy resampled to
    this rate (records missing there keep their own signal).
    """
    if min_quality not in QUALITY_LEVELS:
        raise SplitError(f"min_quality must be one of {list(QUALITY_LEVELS)}, got {min_quality!r}")
    allowed = list(QUALITY_LEVELS[: QUALITY_LEVELS.index(min_quality) + 1])
    dataset = open_dataset(data_dir)
    columns = ["ecg_id", "patient_id", "mi", "fs", "adc_gain", "adc_baseline", "signal"]
    in_folds = pc.field("strat_fold").isin(list(folds))
    usable = pc.field("quality").isin(allowed) | pc.field("quality").is_null()
    table = dataset.to_table(columns=columns, filter=in_folds & usable)
    if table.num_rows == 0:
        present = sorted(set(dataset.to_table(columns=["strat_fold"])["strat_fold"].to_pylist()))
        raise SplitError(
            f"{data_dir}: no records in folds {list(folds)}; the dataset holds folds {present}. "
            "Pass folds that exist (the shipped sample holds folds 1-8 only)"
        )
    table = table.sort_by("ecg_id")
    rates = set(table["fs"].to_pylist())
    if len(rates) != 1:
        raise SplitError(f"{data_dir}: records at several rates {sorted(rates)}; ingest one rate")
    split = Split(
        folds=tuple(folds),
        signals=signals_from_table(table),
        gain=table["adc_gain"].to_numpy().astype(np.float32),
        baseline=table["adc_baseline"].to_numpy().astype(np.float32),
        y=table["mi"].to_numpy(zero_copy_only=False).astype(np.float32),
        ecg_id=table["ecg_id"].to_numpy(),
        patient_id=table["patient_id"].to_numpy(),
        fs=int(rates.pop()),
    )
    if alt_dir is not None:
        split.alt = _other_rate(split, alt_dir, folds)
    return split


def _other_rate(split: Split, alt_dir, folds: Sequence[int], chunk: int = 256) -> np.ndarray:
    """``split``'s records from ``alt_dir``, resampled to ``split.fs`` with the scorer's
    resampler and stored as int16 in ``split``'s ADC units."""
    from signals.resample import resample

    other = load_split(alt_dir, folds)
    if other.fs == split.fs:
        raise SplitError(f"{alt_dir}: the mixed-rate data are at {other.fs} Hz like the training "
                         "data; ingest the other rate (--rate 500 or 100)")
    alt = split.signals.copy()
    pos = {int(e): i for i, e in enumerate(other.ecg_id)}
    have = [(i, pos[int(e)]) for i, e in enumerate(split.ecg_id) if int(e) in pos]
    for start in range(0, len(have), chunk):
        part = have[start : start + chunk]
        mine, theirs = (np.array(c) for c in zip(*part, strict=True))
        mv = resample(other.millivolts(theirs), other.fs, split.fs, axis=1)
        n = min(mv.shape[1], split.n_samples)
        adc = mv[:, :n] * split.gain[mine, None, None] + split.baseline[mine, None, None]
        alt[mine, :n] = np.clip(np.rint(adc), -32768, 32767).astype(np.int16)
    return alt


def check_disjoint(splits: dict[str, Split]) -> None:
    """Raise SplitError if two splits share a fold or a patient."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared_folds = set(splits[a].folds) & set(splits[b].folds)
            if shared_folds:
                raise SplitError(f"{a} and {b} folds overlap: {sorted(shared_folds)}")
            shared = np.intersect1d(splits[a].patient_id, splits[b].patient_id)
            if shared.size:
                raise SplitError(
                    f"{a} and {b} folds share {shared.size} patients (e.g. patient_id "
                    f"{int(shared[0])}); choose folds that keep patients apart"
                )


def fit_normalization(split: Split, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-lead mean and variance in mV over the training records, computed in chunks."""
    total = np.zeros(len(LEADS))
    total_sq = np.zeros(len(LEADS))
    count = 0
    for start in range(0, len(split), chunk):
        mv = split.millivolts(slice(start, start + chunk)).astype(np.float64)
        total += mv.sum(axis=(0, 1))
        total_sq += np.square(mv).sum(axis=(0, 1))
        count += mv.shape[0] * mv.shape[1]
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 1e-6)
    return mean.astype(np.float32), var.astype(np.float32)


def batches(
    split: Split,
    batch_size: int,
    shuffle: bool,
    seed: int,
    augment: bool = False,
    crop: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of ``(x_mv float32 (b, n_samples or crop, 12), y (b, 1))`` batches.

    When the split holds another rate's copy (:attr:`Split.alt`), each record is drawn from
    either copy with equal chance (training batches only).
    With ``crop``, each record contributes one window of ``crop`` samples at a random start
    (a new one every epoch): the PTB-XL benchmark's random-crop training, which the scorer's
    sliding windows match at test time.
    Augmentation (training only): a random gain per record (x0.8-1.2, electrode and body
    differences) and white noise of 0.02 mV, both plausible for real recordings and neither
    changing the diagnosis.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(split)) if shuffle else np.arange(len(split))
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start : start + batch_size])
        use_alt = rng.random(len(idx)) < 0.5 if split.alt is not None and shuffle else None
        x = split.millivolts(idx, use_alt)
        if crop is not None and crop < x.shape[1]:
            first = rng.integers(0, x.shape[1] - crop + 1, size=len(idx))
            x = x[np.arange(len(idx))[:, None], first[:, None] + np.arange(crop)]
        if augment:
            x *= rng.uniform(0.8, 1.2, size=(len(idx), 1, 1)).astype(np.float32)
            x += rng.normal(0.0, 0.02, size=x.shape).astype(np.float32)
        yield x, split.y[idx, None]


def tf_dataset(split: Split, batch_size: int, shuffle: bool, seed: int, augment: bool = False,
               crop: int | None = None):
    """A ``tf.data.Dataset`` over :func:`batches`; a new shuffle (crops, augmentation) per
    epoch."""
    import tensorflow as tf

    epoch = {"n": 0}

    def gen():
        epoch["n"] += 1
        yield from batches(split, batch_size, shuffle, seed + epoch["n"], augment, crop)

    length = min(crop, split.n_samples) if crop else split.n_samples
    spec = (
        tf.TensorSpec((None, length, len(LEADS)), tf.float32),
        tf.TensorSpec((None, 1), tf.float32),
    )
    n_batches = -(-len(split) // batch_size)
    return (
        tf.data.Dataset.from_generator(gen, output_signature=spec)
        .apply(tf.data.experimental.assert_cardinality(n_batches))
        .prefetch(2)
    )
