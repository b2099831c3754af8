"""The signal-quality gate on the shipped records: clean records pass, every synthetic fault
built from them is flagged with the right reason, and the scorer acts on the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import SAMPLE

from common.records import read_record
from schemas import LEADS
from signals.quality import (
    THRESHOLDS,
    QualityLevel,
    batch_stats,
    ecg_quality,
    lead_stats,
    sub_batch,
)
from signals.synthetic import add_fault, clip_affected

RATES = {100: "filename_lr", 500: "filename_hr"}


@pytest.fixture(scope="module", params=sorted(RATES))
def shipped(request) -> tuple[np.ndarray, int, list[str]]:
    """All 353 shipped records at one rate, ``(n, samples, 12)`` mV in LEADS order."""
    rate = request.param
    db = pd.read_csv(SAMPLE / "ptbxl_database.csv")
    names = list(db[RATES[rate]])
    x = np.stack([read_record(SAMPLE / f).to_millivolts() for f in names])
    return x, rate, names


def test_verdicts_do_not_depend_on_how_records_are_batched(shipped):
    """The gate makes cache-sized passes (:func:`sub_batch` records of a length); the
    statistics and verdicts of a stack equal those of each record alone."""
    x, rate, _ = shipped
    per = sub_batch(x.shape[1])
    x = x[: 2 * per + 3]  # split into three passes, the last a short one
    assert per > 1
    whole = batch_stats(x, rate)
    alone = [lead_stats(r[None], rate) for r in x]
    for name, value in vars(whole).items():
        np.testing.assert_allclose(value, np.concatenate([getattr(a, name) for a in alone]),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    assert [q.summary for q in ecg_quality(x, rate)] == [
        ecg_quality(r[None], rate)[0].summary for r in x]


def _checks(q) -> set[str]:
    return {i.check for i in q.issues}


def test_shipped_records_are_at_most_one_percent_unusable(shipped):
    x, rate, names = shipped
    verdicts = ecg_quality(x, rate)
    unusable = [n for n, q in zip(names, verdicts, strict=True)
                if q.level == QualityLevel.UNUSABLE]
    assert len(unusable) <= 0.01 * len(names), unusable
    # and the gate is not a rubber stamp either: most real records are good
    good = sum(q.level == QualityLevel.GOOD for q in verdicts)
    assert good >= 0.9 * len(names)


def test_all_leads_flat(shipped):
    x, rate, _ = shipped
    q = ecg_quality(np.zeros_like(x[:20]), rate)
    assert all(v.level == QualityLevel.UNUSABLE and _checks(v) == {"flat"} for v in q)
    # a constant offset (the issue's 5 mV on every lead) is as flat as zero
    q = ecg_quality(np.full_like(x[:20], 5.0), rate)
    assert all(v.level == QualityLevel.UNUSABLE and "flat" in _checks(v) for v in q)


def test_three_leads_flat_names_them(shipped):
    x, rate, _ = shipped
    y = add_fault(x, rate, "three_flat")
    for q in ecg_quality(y, rate):
        flat = [i for i in q.issues if i.check == "flat"]
        assert q.level == QualityLevel.UNUSABLE
        assert flat and flat[0].leads == ("V1", "V2", "V3")
    assert "flat in V1,V2,V3" in ecg_quality(y[:1], rate)[0].message()


def test_absent_leads_are_poor_not_unusable(shipped):
    """Leads filled with zeros on request (--allow-missing-leads) are reported as absent."""
    x, rate, _ = shipped
    y = x[:10].copy()
    y[:, :, 6:9] = 0.0
    absent = np.zeros((10, 12), bool)
    absent[:, 6:9] = True
    for q in ecg_quality(y, rate, absent=absent):
        assert q.level <= QualityLevel.POOR
        assert any(i.check == "flat" and "absent" in i.detail for i in q.issues)


def test_gaussian_noise_at_0_db(shipped):
    x, rate, _ = shipped
    noisy = add_fault(x, rate, "noise_0db", seed=1)
    for q in ecg_quality(noisy, rate):
        assert q.level == QualityLevel.UNUSABLE and "noise" in _checks(q), q.summary
    # the estimator reads about 0 dB (it is calibrated to white noise)
    snr = np.nanmedian(lead_stats(noisy, rate).snr_db, axis=1)
    assert np.all(np.abs(snr) < 3.0), snr.min()


def test_clipping_at_one_millivolt(shipped):
    x, rate, names = shipped
    # records where clipping at +-1 mV cuts at least 2 % of some lead's samples
    affected = clip_affected(x)
    clipped = add_fault(x[affected], rate, "clip_1mv")
    verdicts = ecg_quality(clipped, rate)
    hit = [("clipping" in _checks(q)) for q in verdicts]
    missed = [n for n, h in zip(np.asarray(names)[affected], hit, strict=True) if not h]
    assert np.mean(hit) >= 0.99, missed
    assert all(q.level >= QualityLevel.POOR for q, h in zip(verdicts, hit, strict=True) if h)


def test_mains_hum_2_mv(shipped):
    x, rate, _ = shipped
    for q in ecg_quality(add_fault(x, rate, "hum_50hz_2mv"), rate):
        assert "mains" in _checks(q) and q.level >= QualityLevel.POOR, q.summary
        assert "50 Hz" in q.summary


def test_baseline_wander_3_mv(shipped):
    x, rate, _ = shipped
    for q in ecg_quality(add_fault(x, rate, "wander_0.3hz_3mv"), rate):
        assert "wander" in _checks(q) and q.level == QualityLevel.POOR, q.summary


def test_electrode_pop(shipped):
    """A 3 mV step decaying over 0.5 s in V2.  At 500 Hz every record is caught; at 100 Hz a
    10 ms sample makes a pop look like a steep QRS upstroke in some records (documented)."""
    x, rate, _ = shipped
    verdicts = ecg_quality(add_fault(x, rate, "pop_v2"), rate)
    hit = np.array([any(i.check == "pop" and "V2" in i.leads for i in q.issues)
                    for q in verdicts])
    assert hit.mean() >= (0.99 if rate >= 250 else 0.75), hit.mean()
    clean_pop = np.array(["pop" in _checks(q) for q in ecg_quality(x, rate)])
    assert clean_pop.mean() <= 0.01  # and it does not fire on the clean records


def test_no_qrs_and_implausible_rate(shipped):
    x, rate, _ = shipped
    # pure noise: no heartbeats at a plausible rate
    noise = np.random.default_rng(2).normal(0, 0.3, size=x[:10].shape).astype(np.float32)
    for q in ecg_quality(noise, rate):
        assert q.level == QualityLevel.UNUSABLE
        assert _checks(q) & {"no_qrs", "heart_rate", "noise"}
    # a smooth 0.5 mV sine has no QRS at all
    t = np.arange(x.shape[1]) / rate
    sine = np.tile((0.5 * np.sin(2 * np.pi * 0.2 * t)).astype(np.float32)[None, :, None],
                   (3, 1, 12))
    for q in ecg_quality(sine, rate):
        assert "no_qrs" in _checks(q) and q.level == QualityLevel.UNUSABLE, q.summary
    # a 500 Hz record read as if it were 100 Hz (wrong --csv-fs) beats at a fifth of the rate;
    # a 100 Hz record read as 500 Hz at five times: both implausible for most records
    wrong = 500 if rate == 100 else 100
    verdicts = ecg_quality(x, wrong)
    flagged = np.mean(["heart_rate" in _checks(q) or "no_qrs" in _checks(q) for q in verdicts])
    assert flagged >= 0.8


def test_limb_reversal_is_a_warning(shipped):
    """Swapping the arm electrodes inverts lead I, swaps II/III and aVR/aVL."""
    x, rate, _ = shipped
    y = x.copy()
    i = {lead: LEADS.index(lead) for lead in LEADS}
    y[:, :, i["I"]] = -x[:, :, i["I"]]
    y[:, :, i["II"]], y[:, :, i["III"]] = x[:, :, i["III"]], x[:, :, i["II"]]
    y[:, :, i["AVR"]], y[:, :, i["AVL"]] = x[:, :, i["AVL"]], x[:, :, i["AVR"]]
    swapped = np.mean(["limb_reversal" in _checks(q) for q in ecg_quality(y, rate)])
    clean = np.mean(["limb_reversal" in _checks(q) for q in ecg_quality(x, rate)])
    # the polarity rule sees about two thirds of swaps (those whose lead I has a dominant
    # deflection) at about 1 % false alarms; README says so
    assert swapped >= 0.6 and clean <= 0.02, (swapped, clean)
    for q in ecg_quality(y, rate):
        if "limb_reversal" in _checks(q):
            assert q.level <= QualityLevel.POOR or _checks(q) - {"limb_reversal"}


def test_thresholds_are_documented():
    """Every threshold named in THRESHOLDS appears in the README's quality section."""
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Signal quality"):]
    for key in THRESHOLDS:
        assert f"`{key}`" in section, key


# ----------------------------------------------------------------------------- the scorer


def _write_csv(path, x: np.ndarray) -> None:
    pd.DataFrame(x, columns=list(LEADS)).to_csv(path, index=False)


def test_scorer_refuses_blank_noise_and_constant_csv(tmp_path, trained):
    """The issue's three files: all zeros, Gaussian noise and 5 mV constant used to come back
    `ok, normal`.  Now they are errors with no band, and the message names the fix; a real
    record beside them is scored."""
    from infer.cli import cli

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    _write_csv(folder / "zeros.csv", np.zeros((1000, 12)))
    _write_csv(folder / "noise.csv", rng.normal(0, 0.5, size=(1000, 12)))
    _write_csv(folder / "constant.csv", np.full((1000, 12), 5.0))
    real = read_record(SAMPLE / "records100/00000/00001_lr")
    _write_csv(folder / "real.csv", real.to_millivolts())
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(cli, ["score", "--input", str(folder), "--out", str(out),
                                      "--model", str(trained[2]), "-q"])
    assert result.exit_code == 1, result.output  # some records failed
    df = pd.read_csv(out, keep_default_na=False).set_index("record_id")
    for name in ("zeros", "noise", "constant"):
        row = df.loc[name]
        assert row["status"] == "error" and row["quality"] == "unusable", row.to_dict()
        assert row["band"] == "" and row["mi_probability"] == ""
        assert "unusable recording" in row["message"] and "re-record" in row["message"]
    assert "flat (all leads" in df.loc["zeros", "quality_issues"]
    assert df.loc["real", "status"] in ("ok", "warning") and df.loc["real", "band"] != ""
    assert df.loc["real", "quality"] in ("good", "poor")


def test_scorer_scores_poor_records_with_a_warning(tmp_path, trained):
    from infer import Model, ScoreOptions, score_inputs

    rec = read_record(SAMPLE / "records500/00000/00001_hr").to_millivolts()
    t = np.arange(rec.shape[0]) / 500
    _write_csv(tmp_path / "wander.csv", rec + 3.0 * np.sin(2 * np.pi * 0.3 * t)[:, None])
    table, _ = score_inputs([(str(tmp_path / "wander.csv"), "csv")], Model(trained[2]),
                                  options=ScoreOptions(csv_fs=500))
    row = table.to_pylist()[0]
    assert row["quality"] == "poor" and row["status"] == "warning"
    assert row["band"] is not None and "wander" in row["message"]
    assert "baseline wander" in row["message"]  # the fix
