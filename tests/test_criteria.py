"""The MI criteria (signals.criteria): synthetic beats with known waves, and the shipped records.

Synthetic records hold the truth exactly (every wave placed by hand); the shipped records
check that the measurements mean on real ECGs what they mean to a cardiologist: inferior Q
waves in inferior infarcts, anterior ones in anteroseptal infarcts, an inverted T in aVR.
"""

from __future__ import annotations

import numpy as np
import pytest

from schemas import LEADS
from signals import criteria as C
from signals.resample import resample
from signals.synthetic import ecg_with_waves

IDX = {lead: i for i, lead in enumerate(LEADS)}


def per_lead(default: float, **values: float) -> np.ndarray:
    out = np.full(len(LEADS), default)
    for lead, v in values.items():
        out[IDX[lead.upper()]] = v
    return out


def measure_one(x: np.ndarray, fs: float) -> C.Measurements:
    m = C.measure(x[None], fs)
    assert m.reason == [None]
    return m


@pytest.fixture(params=[100, 500], ids=["100Hz", "500Hz"])
def fs(request) -> int:
    return request.param


def test_known_waves_measured(fs):
    """Q 0.4 mV / 40 ms inferior, ST +0.3 mV anterior, T -0.3 mV lateral, on a 1 mV offset."""
    q = per_lead(0.0, II=0.4, III=0.4, aVF=0.4)
    st = per_lead(0.0, V1=0.3, V2=0.3, V3=0.3, V4=0.3)
    t = per_lead(0.3, I=-0.3, aVL=-0.3, V5=-0.3, V6=-0.3)
    x = ecg_with_waves(fs, q_mv=q, st_mv=st, t_mv=t, offset_mv=1.0, noise_mv=0.005)
    m = measure_one(x, fs)
    lead = {k: v[0] for k, v in m.lead.items()}
    # Q: depth (alignment jitter of a sharp corner costs a few hundredths) and duration
    np.testing.assert_allclose(lead["q_mv"], np.where(q > 0, 0.4, 0.0), atol=0.08)
    np.testing.assert_allclose(lead["q_ms"], np.where(q > 0, 40.0, 0.0), atol=10.0)
    # ST at J+60 and T against the PR baseline, not against 0 mV (the record sits at +1 mV)
    np.testing.assert_allclose(lead["st60_mv"], st, atol=0.03)
    np.testing.assert_allclose(lead["t_mv"], t, atol=0.05)
    np.testing.assert_allclose(m.qrs_ms[0], 90.0, atol=12.0)
    np.testing.assert_allclose(m.hr_bpm[0], 70.0, atol=1.5)
    counts = {k: float(v[0]) for k, v in m.group_counts().items()}
    expected = {"n_q_inferior": 3, "n_ste_anterior": 4, "n_tinv_lateral": 4}
    assert {k: v for k, v in counts.items() if v} == expected
    s = m.summary()[0]
    assert s["q_leads"] == "II,III,AVF"
    assert s["st_elevation_leads"] == "V1,V2,V3,V4"
    assert s["t_inversion_leads"] == "I,AVL,V5,V6"
    assert s["st_max_mv"] == pytest.approx(0.3, abs=0.03)
    assert "pathological Q inferior (II,III,AVF)" in s["mi_criteria"]


def test_model_q_duration_is_continuous(fs):
    """The model's Q duration (qd_ms) equals q_ms for a Q of 0.1 mV or more and shrinks to 0
    with the Q's depth, where q_ms jumps from 0 to the notch's width."""
    depths = [0.0, 0.01, 0.03, 0.06, 0.1, 0.3]
    qd = [measure_one(ecg_with_waves(fs, q_mv=per_lead(0.0, II=d)), fs).lead["qd_ms"][0, IDX["II"]]
          for d in depths]
    assert qd[0] == 0 and all(a <= b + 1e-3 for a, b in zip(qd, qd[1:], strict=False))
    assert qd[1] < 8 and qd[-1] == pytest.approx(40, abs=10)
    deep = measure_one(ecg_with_waves(fs, q_mv=per_lead(0.0, II=0.3)), fs)
    assert deep.lead["qd_ms"][0, IDX["II"]] == pytest.approx(deep.lead["q_ms"][0, IDX["II"]])
    assert "qd_ms_II" in C.FEATURE_NAMES and "q_ms_II" not in C.FEATURE_NAMES


def test_sign_and_group_follow_the_lead(fs):
    """ST depression is negative and lands in its own criterion; a wave moved to other leads
    moves to that lead group."""
    st = per_lead(0.0, II=-0.2, III=-0.2, aVF=-0.2)
    q = per_lead(0.0, V1=0.5, V2=0.5, V3=0.5)
    m = measure_one(ecg_with_waves(fs, st_mv=st, q_mv=q), fs)
    counts = {k: float(v[0]) for k, v in m.group_counts().items() if v[0]}
    assert counts == {"n_std_inferior": 3, "n_q_anterior": 3}
    assert m.lead["st60_mv"][0, IDX["II"]] == pytest.approx(-0.2, abs=0.03)
    assert m.summary()[0]["st_min_mv"] == pytest.approx(-0.2, abs=0.03)


def test_reference_is_the_pr_baseline(fs):
    """An offset and a slow wander move the record, not the measurements."""
    st = per_lead(0.0, V2=0.25, V3=0.25)
    base = measure_one(ecg_with_waves(fs, st_mv=st), fs)
    moved = measure_one(ecg_with_waves(fs, st_mv=st, offset_mv=-1.5, wander_mv=1.0), fs)
    for name in ("st60_mv", "st_j_mv", "t_mv", "r_mv"):
        np.testing.assert_allclose(moved.lead[name], base.lead[name], atol=0.03, err_msg=name)


def test_st_is_read_against_the_pr_segment_not_the_tp_segment(fs):
    """A PR segment 0.1 mV above the TP segment: ST and J are read against the PR level (the
    Universal Definition's reference), so a 0.25 mV elevation over TP reads as 0.15 mV; a
    reading against TP, 0 mV or the beat's mean would not."""
    st = per_lead(0.0, V2=0.25, V3=0.25)
    for pr in (0.1, -0.1):
        m = measure_one(ecg_with_waves(fs, st_mv=st, pr_mv=pr, offset_mv=0.5), fs)
        for name in ("st60_mv", "st_j_mv"):
            np.testing.assert_allclose(m.lead[name][0], st - pr, atol=0.03, err_msg=name)


def test_qs_complex_and_poor_r_progression(fs):
    """No R in V1-V3 (QS complexes): Q for the whole QRS, and poor R progression."""
    r = per_lead(1.0, V1=0.0, V2=0.0, V3=0.0)
    s = per_lead(0.3, V1=0.8, V2=0.8, V3=0.8)
    m = measure_one(ecg_with_waves(fs, r_mv=r, s_mv=s), fs)
    crit = m.criteria()["q"][0]
    assert [LEADS[i] for i in np.nonzero(crit)[0]] == ["V1", "V2", "V3"]
    assert m.poor_r_progression()[0] == 1
    assert m.lead["q_ms"][0, IDX["V2"]] == pytest.approx(m.qrs_ms[0], abs=1e-3)
    healthy = measure_one(ecg_with_waves(fs), fs)
    assert healthy.poor_r_progression()[0] == 0
    assert not healthy.criteria()["q"].any()


def test_qs_complex_rising_into_st_elevation(fs):
    """A QS complex whose upstroke runs straight into a 0.3 mV ST elevation (an anterior
    STEMI's commonest shape) has no R: the QRS's tallest sample, at its end or on the
    shoulder where the ST begins, is the ST, not an R wave (read as R, the complex's deep
    negative wave would be a Q in one file and an S in the other)."""
    r = per_lead(1.0, V1=0.0, V2=0.0, V3=0.0)
    s = per_lead(0.3, V1=0.8, V2=0.8, V3=0.8)
    st = per_lead(0.0, V1=0.3, V2=0.3, V3=0.3)
    m = measure_one(ecg_with_waves(fs, r_mv=r, s_mv=s, st_mv=st), fs)
    for lead in ("V1", "V2", "V3"):
        assert m.lead["r_mv"][0, IDX[lead]] < C.THRESHOLDS["qs_r_mv"], lead
        assert m.lead["q_ms"][0, IDX[lead]] == pytest.approx(m.qrs_ms[0], abs=1e-3), lead
        assert m.lead["s_mv"][0, IDX[lead]] == 0, lead
        # (the nadir is a sharp corner: 100 Hz samples miss its tip by up to 0.12 mV)
        assert m.lead["q_mv"][0, IDX[lead]] == pytest.approx(0.8, abs=0.15), lead
    assert m.lead["r_mv"][0, IDX["V4"]] == pytest.approx(1.0, abs=0.1)
    assert [LEADS[i] for i in np.nonzero(m.criteria()["q"][0])[0]] == ["V1", "V2", "V3"]


def test_model_reads_qs_and_rs_without_a_step(fs):
    """As the R in V2 grows through 0.05 mV the criteria switch from QS (Q = the whole
    0.8 mV) to rS (no Q, S = 0.8 mV) in one step; the model's readings (qb_mv, sb_mv, qd_ms)
    pass between the two in proportion, so a 0.01 mV difference between a record's two
    files moves them by a tenth of the way (the blend is 0.1 mV wide), not all of it."""
    qb, q, sb, qd = [], [], [], []
    for r in np.arange(0.0, 0.145, 0.01):
        m = measure_one(ecg_with_waves(fs, r_mv=per_lead(1.0, V2=r),
                                       s_mv=per_lead(0.3, V2=0.8)), fs)
        for out, name in ((qb, "qb_mv"), (q, "q_mv"), (sb, "sb_mv"), (qd, "qd_ms")):
            out.append(float(m.lead[name][0, IDX["V2"]]))
    qb, q, sb, qd = map(np.array, (qb, q, sb, qd))
    assert np.abs(np.diff(q)).max() > 0.5  # the clinical reading switches ...
    assert np.abs(np.diff(qb)).max() < 0.1  # ... the model's does not: 0.08 a step
    assert np.abs(np.diff(sb)).max() < 0.1 and np.abs(np.diff(qd)).max() < 15
    assert (np.diff(qb) <= 1e-3).all() and (np.diff(sb) >= -1e-3).all()
    assert qb[0] == pytest.approx(q[0]) and qb[-1] == pytest.approx(0, abs=1e-3)
    assert sb[0] == pytest.approx(0, abs=1e-3) and sb[-1] > 0.6


def test_model_reads_a_biphasic_t_without_a_step(fs):
    """A T wave of two lobes (up, then down) whose balance tips: the clinical T amplitude
    jumps from one lobe to the other, the model's (tb_mv, the two extremes added) moves
    smoothly through 0; for a plain T the two agree."""
    t, tb = [], []
    for a in np.linspace(0.05, 0.25, 11):
        x = ecg_with_waves(fs, t_mv=per_lead(0.3, V2=a)).astype(np.float64)
        u = (np.arange(len(x)) / fs)[:, None] - (0.4 + np.arange(12) * 60 / 70)[None, :]
        u = u * 1000.0  # ms from each R peak; a negative lobe 320-420 ms after R
        lobe = np.where((u > 320) & (u < 420), np.sin(np.pi * (u - 320) / 100), 0).sum(axis=1)
        x[:, IDX["V2"]] -= (0.3 - a) * lobe
        m = measure_one(x.astype(np.float32), fs)
        t.append(float(m.lead["t_mv"][0, IDX["V2"]]))
        tb.append(float(m.lead["tb_mv"][0, IDX["V2"]]))
    t, tb = np.array(t), np.array(tb)
    assert np.abs(np.diff(t)).max() > 0.2 and t[0] < 0 < t[-1]
    assert np.abs(np.diff(tb)).max() < 0.06 and (np.diff(tb) > 0).all()
    plain = measure_one(ecg_with_waves(fs, t_mv=per_lead(0.3, I=-0.3)), fs)
    np.testing.assert_allclose(plain.lead["tb_mv"], plain.lead["t_mv"], atol=0.03)


def test_pr_baseline_moves_smoothly_with_onset():
    """The PR baseline is the mean of the beat read between samples over
    [onset - 40 ms, onset - 10 ms]: exact on a ramp at fractional ends, and continuous as
    the onset moves by tenths of a sample (the whole-sample window it replaces stepped by a
    sample's worth of the PR slope, 0.05 mV in a shipped record)."""
    w = np.arange(20, dtype=np.float32)
    ramp = np.stack([w, np.abs(w - 7) + np.sin(w)], axis=1)[None]  # (1, 20, 2)
    for a, b in ((3.3, 6.8), (0.0, 19.0), (4.5, 4.9)):
        got = C._interval_mean(ramp, np.array([a]), np.array([b]))[0]
        dense = np.linspace(a, b, 200001)  # the interpolant, integrated finely
        exact = [np.interp(dense, w, ramp[0, :, i]).mean() for i in range(2)]
        np.testing.assert_allclose(got, exact, rtol=1e-4)
    starts = np.arange(3.0, 5.0, 0.1)
    means = np.array([C._interval_mean(ramp, np.array([s]), np.array([s + 3.0]))[0, 0]
                      for s in starts])
    np.testing.assert_allclose(np.diff(means), 0.1, atol=1e-4)


def test_ectopic_beats_do_not_move_the_median(fs):
    """Two beats of another shape (inverted, as a PVC can be) are left out of the median."""
    x = ecg_with_waves(fs, st_mv=per_lead(0.0, V2=0.2))
    clean = measure_one(x, fs)
    odd = x.copy()
    for beat_s in (0.4 + 60 / 70 * 3, 0.4 + 60 / 70 * 7):
        k = slice(int((beat_s - 0.1) * fs), int((beat_s + 0.45) * fs))
        odd[k] = -odd[k]
    m = measure_one(odd, fs)
    assert m.n_beats[0] == clean.n_beats[0] - 2
    np.testing.assert_allclose(m.lead["st60_mv"], clean.lead["st60_mv"], atol=0.02)


def test_unmeasurable_says_why():
    """Flat, too short or beatless records: NaN and a reason, never a silent zero; an absent
    lead is NaN for that lead only."""
    fs = 100
    flat = np.zeros((1000, 12), np.float32)
    noise = np.random.default_rng(0).normal(0, 0.01, (1000, 12)).astype(np.float32)
    m = C.measure(np.stack([flat, ecg_with_waves(fs)]), fs)
    assert m.reason[0] and "beats" in m.reason[0] and m.reason[1] is None
    f = m.features()
    assert np.isnan(f[0]).all() and np.isfinite(f[1]).all()
    assert m.summary()[0]["mi_criteria"].startswith("not measured: ")
    short = C.measure(noise[None, :50], fs)
    assert short.reason == ["shorter than 1 s"] and np.isnan(short.features()).all()
    absent = np.zeros((1, 12), bool)
    absent[0, IDX["V4"]] = True
    x = ecg_with_waves(fs)
    x[:, IDX["V4"]] = 0
    one = C.measure(x[None], fs, absent=absent)
    assert np.isnan(one.lead["st60_mv"][0, IDX["V4"]])
    assert np.isfinite(np.delete(one.lead["st60_mv"][0], IDX["V4"])).all()
    assert C.mi_features(x[None], fs, absent).shape == (1, len(C.FEATURE_NAMES))


# --- the shipped records --------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped(data_100):
    from ingest import open_dataset
    from train.dataset import load_split

    split = load_split(data_100, range(1, 9))
    table = open_dataset(data_100).to_table(columns=["ecg_id", "scp_codes"]).sort_by("ecg_id")
    assert (table["ecg_id"].to_numpy() == split.ecg_id).all()
    codes = [{c["code"] for c in r} for r in table["scp_codes"].to_pylist()]
    return split, codes, C.measure(split.millivolts(), split.fs)


def test_shipped_infarcts_show_their_criteria(shipped):
    """Inferior infarcts (IMI, ILMI) have pathological Q in the inferior leads, anteroseptal
    ones (ASMI, AMI) in the anterior leads, normal ECGs almost never: a wrong lead group, a
    wrong sign or a wrong reference breaks these."""
    split, codes, m = shipped
    has = lambda *names: np.array([bool(c & set(names)) for c in codes])  # noqa: E731
    g = m.group_counts()
    inferior, anterior, normal = has("IMI", "ILMI"), has("ASMI", "AMI"), has("NORM")
    assert inferior.sum() >= 20 and anterior.sum() >= 20 and normal.sum() >= 200
    share = lambda mask, name: float((g[name][mask] >= 2).mean())  # noqa: E731
    assert share(inferior, "n_q_inferior") >= 0.45
    assert share(anterior, "n_q_anterior") >= 0.35
    assert share(normal, "n_q_inferior") <= 0.03 and share(normal, "n_q_anterior") <= 0.03
    # and the other group does not light up as much: the groups are the right leads
    assert share(inferior, "n_q_anterior") < share(inferior, "n_q_inferior") / 2
    assert share(anterior, "n_q_inferior") < share(anterior, "n_q_anterior") / 1.5
    prwp = m.poor_r_progression()
    assert prwp[anterior].mean() > 3 * prwp[normal].mean()


def test_shipped_normal_ecgs_read_as_normal(shipped):
    """On normal ECGs: T upright in II and inverted in aVR, ST near the PR baseline, QRS
    80-100 ms, every record measured."""
    split, codes, m = shipped
    normal = np.array(["NORM" in c for c in codes])
    assert all(r is None for r in m.reason)
    t = m.lead["t_mv"][normal]
    assert np.median(t[:, IDX["II"]]) > 0.15 and np.median(t[:, IDX["AVR"]]) < -0.15
    assert np.median(np.abs(m.lead["st60_mv"][normal][:, :6])) < 0.04
    assert 80 <= np.median(m.qrs_ms[normal]) <= 100


def test_shipped_beats_match_neurokit(data_100):
    """The fiducial points find NeuroKit2's R peaks (an independent detector) on the shipped
    500 Hz records: at least 97 % within 50 ms."""
    nk = pytest.importorskip("neurokit2", reason="the signals extra: pip install '.[signals]'")
    import warnings

    from common.records import read_record
    from tests.conftest import SAMPLE

    heads = sorted(SAMPLE.glob("records500/*/*.hea"))[::4]
    hit = total = 0
    for hea in heads:
        x = read_record(str(hea)[:-4]).signal
        fid, cnt = C.detect_beats(x[None].astype(np.float32), 500)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = nk.ecg_clean(x[:, 1].astype(float), sampling_rate=500)
            ref = np.asarray(nk.ecg_peaks(clean, sampling_rate=500)[1]["ECG_R_Peaks"])
        ref = ref[(ref > 150) & (ref < x.shape[0] - 150)]
        if ref.size:
            d = np.abs(ref[:, None] - fid[0, : cnt[0]][None, :]).min(axis=1)
            hit += int((d <= 25).sum())
            total += ref.size
    assert total > 800
    assert hit / total >= 0.97


def _all_folds(data):
    """Every shipped record of an ingest, with its SCP codes."""
    from ingest import open_dataset
    from train.dataset import load_split

    split = load_split(data, range(1, 11))
    table = open_dataset(data).to_table(columns=["ecg_id", "scp_codes"]).sort_by("ecg_id")
    assert (table["ecg_id"].to_numpy() == split.ecg_id).all()
    return split, [{c["code"] for c in r} for r in table["scp_codes"].to_pylist()]


def _measured(x: np.ndarray, fs: float) -> list[C.Measurements]:
    return [C.measure(x[i : i + 64], fs, readings="clinical") for i in range(0, len(x), 64)]


def test_lbbb_shape_rule():
    """The rule on hand-set readings: a wide QRS with V1 negative and I and V6 upright is of
    LBBB shape; a narrow one, a tall R in V1 (RBBB), a broad S in V6 or an unmeasured V1 is
    not."""
    def one(qrs=150.0, **lead_values):
        lead = {m: np.zeros((1, len(LEADS)), np.float32) for m, _ in C.LEAD_MEASURES}
        lead["r_mv"][:] = 1.0
        lead["r_mv"][0, IDX["V1"]], lead["s_mv"][0, IDX["V1"]] = 0.1, 1.2
        for key, v in lead_values.items():
            m, name = key.rsplit("_", 1)
            lead[m][0, IDX[name.upper()]] = v
        return C.Measurements(lead=lead, qrs_ms=np.array([qrs], np.float32),
                              hr_bpm=np.array([70.0], np.float32), n_beats=np.array([10])
                              ).lbbb_like()[0]

    assert one()
    assert one(qrs=120.0) and not one(qrs=118.0)
    assert one(s_mv_v1=0.0, q_mv_v1=1.2)  # a QS complex in V1
    assert not one(r_mv_v1=0.8)  # RBBB: a tall R' in V1
    assert not one(s_mv_v6=0.8) and not one(s_mv_i=0.8)  # a broad S in V6 or I
    assert not one(r_mv_v1=np.nan) and not one(qrs=np.nan)


def test_lbbb_shape_on_shipped_records(data_100, data_500):
    """Every complete left bundle branch block (CLBBB) of the sample is of LBBB shape at 100
    Hz, at 500 Hz and from the 500 Hz file resampled as the scorer does; the paced ECG (PACE)
    too at 100 Hz; no right bundle branch block (CRBBB) and no normal ECG is.  A wrong lead,
    a wrong sign or a wrong threshold breaks it."""
    s100, codes = _all_folds(data_100)
    s500, _ = _all_folds(data_500)
    assert (s100.ecg_id == s500.ecg_id).all()
    has = lambda name: np.array([name in c for c in codes])  # noqa: E731
    lbbb, paced, rbbb, normal = has("CLBBB"), has("PACE"), has("CRBBB"), has("NORM")
    assert lbbb.sum() >= 5 and paced.sum() >= 1 and rbbb.sum() >= 5 and normal.sum() >= 200
    x5 = s500.millivolts()
    flags = {name: np.concatenate([m.lbbb_like() for m in _measured(x, fs)]) for name, x, fs in (
        ("100", s100.millivolts(), 100), ("500", x5, 500),
        ("500->100", resample(x5, 500, 100, axis=1)[:, : s100.n_samples], 100))}
    for name, f in flags.items():
        assert f[lbbb].all(), name
        assert not f[rbbb].any() and not f[normal].any(), name
    assert flags["100"][paced].all() and (flags["100"] == flags["500->100"]).all()
    # natively at 500 Hz the paced ECG's spikes blur its small V6: at most it differs
    assert (flags["100"] != flags["500"]).sum() <= paced.sum()


def test_500hz_is_timed_as_100hz(data_100, data_500):
    """A record's 500 Hz file, measured at 500 Hz, gives the QRS duration its 100 Hz file
    does: median difference within 4 ms, at most 8 % of records 10 ms apart, 2 % 20 ms
    (timed on the unfiltered beats, as mi_features/3 did: 6.1 ms, 19 % and 4 %)."""
    s100, _ = _all_folds(data_100)
    s500, _ = _all_folds(data_500)
    q = {fs: np.concatenate([m.qrs_ms for m in _measured(s.millivolts(), fs)])
         for s, fs in ((s100, 100), (s500, 500))}
    d = q[500] - q[100]
    assert np.isfinite(d).all()
    assert abs(np.median(d)) < 4.0
    assert (np.abs(d) > 10).mean() <= 0.08 and (np.abs(d) > 20).mean() <= 0.02


def test_rates_agree_on_shipped_records(data_100, data_500):
    """The 500 Hz files, resampled to 100 Hz as the scorer does, give the 100 Hz files'
    measurements: ST and T within 0.02 mV for most leads, the same criteria in 97 %."""
    from train.dataset import load_split

    s100, s500 = load_split(data_100, range(1, 9)), load_split(data_500, range(1, 9))
    assert (s100.ecg_id == s500.ecg_id).all()
    x5 = resample(s500.millivolts(), 500, 100, axis=1)[:, : s100.n_samples]
    a = C.measure(s100.millivolts(), 100, keep_median=True)
    b = C.measure(x5, 100, keep_median=True)
    for name in ("st60_mv", "t_mv"):
        assert np.nanmedian(np.abs(a.lead[name] - b.lead[name])) < 0.01, name
        assert np.nanpercentile(np.abs(a.lead[name] - b.lead[name]), 90) < 0.02, name
    # read against a PR baseline that moves with onset between samples, ST at J+60 ms agrees
    # within 0.01 mV in 99 % of leads (0.012 with the whole-sample window it replaced)
    assert np.nanpercentile(np.abs(a.lead["st60_mv"] - b.lead["st60_mv"]), 99) < 0.01
    ca, cb = a.criteria(), b.criteria()
    for c in C.CRITERIA:
        assert (ca[c] == cb[c]).mean() >= 0.97, c
    # the model's wave depths never swap between the files: measured largest 0.19 mV (the
    # clinical Q and S readings swap 0.75 mV in one QS/rS lead; before the continuous
    # readings and the R-is-a-peak rule, the model's input swapped 1.9 mV)
    for name in ("qb_mv", "sb_mv", "r_mv", "tb_mv"):
        assert np.nanmax(np.abs(a.lead[name] - b.lead[name])) < 0.25, name
    # the model's QRS onset (the 12 % crossing, moved back 10 ms) moves between the files
    # less than half as much as the clinical 4 % one (90th percentile over all 353: 0.04 ms
    # against 0.15; with the resampler's former 45 Hz cut-off 0.26 against 0.67) and sits
    # where the clinical one does on a typical beat (median 0.3 ms later).  The percentile,
    # not the rms: the model onset's rms (0.26 ms against 0.14) is one record's, 00321, one
    # of whose beats is placed a sample apart in its two files
    def p90_ms(u, v):
        return np.nanpercentile(np.abs(u - v), 90) * 10.0

    assert p90_ms(a.model.onset, b.model.onset) < 0.5 * p90_ms(a.onset, b.onset)
    assert abs(np.nanmedian(a.model.onset - a.onset) * 10.0) < 1.5
    assert np.nanpercentile(np.abs(a.model.qrs_ms - b.model.qrs_ms), 99) < (
        np.nanpercentile(np.abs(a.qrs_ms - b.qrs_ms), 99))


def test_feature_names_match_the_matrix():
    assert len(C.FEATURE_NAMES) == len(set(C.FEATURE_NAMES))
    m = C.measure(ecg_with_waves(100)[None], 100)
    assert m.features().shape == (1, len(C.FEATURE_NAMES))
    # the order is the contract: lead measures lead by lead, then globals, counts, R progression
    assert C.FEATURE_NAMES[0] == "qd_ms_I" and C.FEATURE_NAMES[-1] == "poor_r_progression"
    # the model reads the continuous measurements, the criteria the clinical ones
    assert {"qb_mv_V2", "sb_mv_V2", "tb_mv_V2"} <= set(C.FEATURE_NAMES)
    assert not {"q_mv_V2", "s_mv_V2", "t_mv_V2", "q_ms_V2"} & set(C.FEATURE_NAMES)
    # ... from the model's onset: on this abruptly starting synthetic QRS the 12 % crossing less
    # 10 ms falls earlier than the clinical 4 % onset, and the durations are read from it
    qrs = m.features()[0, C.FEATURE_NAMES.index("qrs_ms")]
    assert qrs == pytest.approx(m.model.qrs_ms[0])
    assert 3.0 < qrs - m.qrs_ms[0] < 10.0
    np.testing.assert_array_equal(m.model.lead["r_mv"] > 0.5, m.lead["r_mv"] > 0.5)
