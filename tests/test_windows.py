"""Sliding windows and their aggregation (signals.windows), random crops in training, and the
window keys of the model contract."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import LEADS, ModelContract, ModelContractError
from signals.windows import AGGREGATIONS, WindowSpec, aggregate, commutes, window_starts
from train.calibrate import fit_calibrator


def test_windows_cover_every_sample_at_the_stride():
    for n, length, stride in [(1000, 250, 125), (1000, 250, 100), (999, 250, 125), (250, 250, 50),
                              (2500, 1000, 500), (100, 250, 125)]:
        starts = window_starts(n, length, stride)
        assert starts[0] == 0
        if n > length:
            assert starts[-1] == n - length  # the last window ends with the record
            assert (np.diff(starts)[:-1] == stride).all() and 0 < np.diff(starts)[-1] <= stride
            covered = np.zeros(n, bool)
            for s in starts:
                covered[s : s + length] = True
            assert covered.all()
        else:
            assert starts.tolist() == [0]
    assert window_starts(1000, 250, 125).tolist() == [0, 125, 250, 375, 500, 625, 750]


def test_aggregation_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.999, 50)
    owners = np.sort(rng.integers(0, 9, 50))
    owners[:9] = np.arange(9)  # every record has a window
    owners.sort()
    for how in AGGREGATIONS:
        got = aggregate(p, owners, 9, how)
        for r in range(9):
            w = p[owners == r]
            z = np.log(w / (1 - w)).mean()
            want = {"mean": w.mean(), "max": w.max(), "logit_mean": 1 / (1 + np.exp(-z))}[how]
            assert got[r] == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="record 2 has no window"):
        aggregate(p[:2], np.array([0, 1]), 3, "mean")
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregate(p, owners, 9, "median")


def test_calibrating_windows_then_aggregating_equals_the_reverse_where_claimed():
    """The scorer calibrates each window (inside the graph) and then aggregates; training
    aggregates and then calibrates.  commutes() says where the two agree: check it both ways."""
    rng = np.random.default_rng(1)
    p = rng.beta(0.5, 2.0, 400)
    y = rng.random(400) < p
    owners = np.repeat(np.arange(80), 5)
    for method in ("none", "temperature", "platt", "isotonic"):
        cal = fit_calibrator(method, p, y)
        for how in AGGREGATIONS:
            before = aggregate(cal(p), owners, 80, how)
            after = cal(aggregate(p, owners, 80, how))
            agree = np.allclose(before, after, atol=1e-6)
            assert agree == commutes(method, how), (method, how)


def test_window_spec_refuses_nonsense():
    with pytest.raises(ValueError, match="must be >= 1"):
        WindowSpec(0, 1)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        WindowSpec(250, 125, "sum")


def test_random_crops_are_slices_of_their_records(data_100):
    from train.dataset import batches, load_split

    split = load_split(data_100, (1,))
    mv = split.millivolts()
    seen_starts = set()
    for epoch in range(3):
        x, y = next(batches(split, batch_size=len(split), shuffle=False, seed=epoch, crop=250))
        assert x.shape == (len(split), 250, 12)
        for i in range(len(split)):
            # find where the crop sits in its record
            hits = [s for s in range(751) if np.array_equal(mv[i, s : s + 250], x[i])]
            assert hits, f"crop {i} is not a slice of record {i}"
            seen_starts.add(hits[0])
    assert len(seen_starts) > 10  # starts vary over records and epochs


def test_split_windows_are_the_scorers_windows(data_100):
    from train.dataset import load_split

    split = load_split(data_100, (2,))
    spec = WindowSpec(250, 125, "max")
    x, owners = split.windows(spec, slice(3, 6))
    mv = split.millivolts(slice(3, 6))
    starts = window_starts(1000, 250, 125)
    assert x.shape == (3 * len(starts), 250, 12)
    for k, (rec, s) in enumerate([(r, s) for r in range(3) for s in starts]):
        assert owners[k] == rec
        np.testing.assert_array_equal(x[k], mv[rec, s : s + 250])


def _contract(**kw) -> ModelContract:
    base = dict(model_name="m", input_name="ecg_mv", fs=100,
                leads=LEADS,
                units="mV", input_samples=250, band_low=0.1, band_high=0.5, architecture="x",
                data_manifest_sha256="0" * 64)
    base.update(kw)
    return ModelContract(**base)


def test_contract_carries_windows_and_old_models_keep_their_meaning():
    c = _contract(window_stride=125, aggregation="logit_mean")
    back = ModelContract.from_metadata(c.to_metadata())
    assert back.windows == WindowSpec(250, 125, "logit_mean")
    # a model exported before the keys existed: half-window stride, mean of probabilities
    props = {k: v for k, v in c.to_metadata().items()
             if not k.endswith(("window_stride", "aggregation"))}
    assert ModelContract.from_metadata(props).windows == WindowSpec(250, 125, "mean")
    for bad, match in [({"window_stride": 251}, "window stride 251"),
                       ({"aggregation": "median"}, "aggregation 'median'")]:
        with pytest.raises(ModelContractError, match=match):
            ModelContract.from_metadata(_contract(**bad).to_metadata())


def test_mixed_rate_copies_are_what_the_scorer_makes_of_the_500hz_files(data_100, data_500):
    """--mix-rate-data: each record's other copy is its 500 Hz file through the scorer's
    resampler (within the int16 storage step of 1 uV), and training batches draw from both."""
    from conftest import SAMPLE

    from common.records import read_record
    from infer.preprocess import resample
    from train.dataset import batches, load_split

    split = load_split(data_100, (3,), alt_dir=data_500)
    assert split.alt is not None and split.alt.shape == split.signals.shape
    for i in (0, 5):
        ecg_id = int(split.ecg_id[i])
        hr = read_record(next(SAMPLE.glob(f"records500/*/{ecg_id:05d}_hr.hea")).with_suffix(""))
        want = resample(hr.to_millivolts(), 500, 100)
        got = split.millivolts(np.array([i]), use_alt=np.array([True]))[0]
        np.testing.assert_allclose(got, want, atol=0.6 / split.gain[i] + 1e-6)
        assert not np.allclose(got, split.millivolts(np.array([i]))[0])  # a different copy
    x, _ = next(batches(split, len(split), shuffle=True, seed=0))
    order = np.sort(np.random.default_rng(0).permutation(len(split)))
    own = split.millivolts(order)
    from_alt = [not np.array_equal(x[k], own[k]) for k in range(len(split))]
    assert 0 < sum(from_alt) < len(split)  # some records from each copy
    # evaluation never mixes: unshuffled batches are the records as ingested
    x, _ = next(batches(split, len(split), shuffle=False, seed=0))
    np.testing.assert_array_equal(x, split.millivolts())
    with pytest.raises(Exception, match="like the training data"):
        load_split(data_100, (3,), alt_dir=data_100)


def test_mixed_rate_criteria_fit_on_both_files_measurements(data_100, data_500):
    """--mix-rate-data for the criteria model: each training record gives two rows, its
    100 Hz file's measurements and its resampled 500 Hz file's, not one (nor is the option
    silently ignored, as it was before 2026-12-06)."""
    from train.criteria import AdditiveModel, split_features
    from train.dataset import load_split

    mixed = load_split(data_100, (1, 2), alt_dir=data_500)
    own = load_split(data_100, (1, 2))
    fa, fb = split_features(own), split_features(mixed, use_alt=True)
    assert fa.shape == fb.shape and not np.allclose(fa, fb, equal_nan=True)
    y2 = np.concatenate([own.y, own.y])
    rows = np.concatenate([fa, fb])
    want = AdditiveModel.fit_features(rows, y2, 100).log_odds(rows)
    np.testing.assert_allclose(AdditiveModel.fit(mixed).log_odds(rows), want, rtol=1e-6)
    assert not np.allclose(AdditiveModel.fit(own).log_odds(rows), want, rtol=1e-3)


def test_resnet1d_and_one_cycle_schedule():
    from train.model import build_model, one_cycle

    model = build_model("resnet1d", 250, 100, np.zeros(12, np.float32), np.ones(12, np.float32),
                        total_steps=100)
    assert model.input_shape == (None, 250, 12) and model.output_shape == (None, 1)
    assert any(type(layer).__name__ == "Add" for layer in model.layers)  # residual
    lr = one_cycle(3e-3, 100)
    values = np.array([float(lr(step)) for step in range(100)])
    assert values[0] == pytest.approx(3e-3 / 25, rel=1e-3)
    assert values.argmax() in (29, 30) and values.max() == pytest.approx(3e-3, rel=1e-2)
    assert values[-1] < 3e-3 / 100  # annealed far below the peak
