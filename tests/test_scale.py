"""Nightly at scale (issue 12): partitioned output with --resume, Dask clusters, object storage,
and clean failure.  Every run scores the shipped records; a LocalCluster and a moto S3 server
stand in for the cluster and the bucket, both on 127.0.0.1."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import SAMPLE, copy_records, make_corpus

from infer import Model
from infer.cli import cli as infer_cli
from infer.dataset import read_results
from ingest.cli import cli as ingest_cli
from schemas import ExitCode

RECORDS = SAMPLE / "records100"
INFER = str(Path(sys.executable).parent / "infer")


@pytest.fixture(scope="module")
def model_path(trained) -> Path:
    return trained[2]


def _invoke(cli, args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def _frame(table) -> pd.DataFrame:
    """Results without the time each row was scored, the one column two runs never share."""
    return table.drop(["scored_at"]).to_pandas()


@pytest.fixture(scope="module")
def reference(model_path, tmp_path_factory) -> pd.DataFrame:
    """The shipped 100 Hz records scored by an uninterrupted run into one file."""
    out = tmp_path_factory.mktemp("ref") / "results.parquet"
    r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path, "--out", out,
                            "-q"])
    assert r.exit_code == 0, r.output
    return _frame(pq.read_table(out))


# ------------------------------------------------------------------ partitioned output, resume

def test_a_dataset_holds_the_same_rows_as_one_file(model_path, reference, tmp_path):
    out = tmp_path / "results"
    r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path,
                            "--out", f"{out}/", "--part-records", 40, "-q"])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names[:3] == ["_manifest.json", "_plan.parquet", "_run.json"]
    assert names[3:] == [f"part-{i:05d}.parquet" for i in range(9)]  # 353 inputs / 40
    pd.testing.assert_frame_equal(_frame(read_results(str(out))), reference)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows"] == len(reference)
    assert manifest["status"]["ok"] + manifest["status"]["warning"] == (
        reference["status"].isin(["ok", "warning"]).sum())
    # a dataset is an ordinary Parquet dataset to other readers (names with _ are skipped)
    assert len(pd.read_parquet(out)) == len(reference)
    # and infer report reads it
    r = _invoke(infer_cli, ["report", out, "--out", tmp_path / "r.html", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r.html").read_text().count("<tr") >= len(reference)


def test_a_run_killed_midway_resumes_to_the_same_dataset(model_path, tmp_path):
    """SIGKILL during a run, then --resume: only the missing parts are scored, the parts
    written before the kill are kept as they were, and the result equals an uninterrupted
    run's."""
    args = ["score", "--input", str(RECORDS), "--model", str(model_path), "--part-records",
            "4", "--n-jobs", "1", "--explain"]  # 89 small, slow parts: easy to stop midway
    full = tmp_path / "full"
    r = _invoke(infer_cli, [*args, "--out", f"{full}/", "-q"])
    assert r.exit_code == 0, r.output

    out = tmp_path / "killed"
    proc = subprocess.Popen([INFER, *args, "--out", f"{out}/", "-q"], start_new_session=True)
    deadline = time.time() + 120
    while len(list(out.glob("part-*.parquet"))) < 5 and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert not (out / "_manifest.json").exists(), "the run ended before it was killed"
    assert 5 <= len(before) < 89
    # a plain re-run refuses to mix runs; it names --resume
    r = _invoke(infer_cli, [*args, "--out", f"{out}/"])
    assert r.exit_code == ExitCode.OUTPUT_EXISTS, r.output
    assert "an unfinished run: pass --resume to finish it" in r.output
    # the unfinished dataset is not mistaken for results
    r = _invoke(infer_cli, ["report", out, "--out", tmp_path / "r.html"])
    assert r.exit_code == ExitCode.FATAL and "unfinished run" in r.output, r.output

    r = _invoke(infer_cli, [*args, "--out", f"{out}/", "--resume"])
    assert r.exit_code == 0, r.output
    assert f"resuming: {len(before)} of 89 parts done" in r.output
    assert f"({353 - 4 * len(before)} scored by this run)" in r.output or (
        "scored by this run" in r.output)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert {k: after[k] for k in before} == before, "finished parts were scored again"
    assert not list(out.glob(".*")), "temporary files of the killed run were left"
    pd.testing.assert_frame_equal(_frame(read_results(str(out))),
                                  _frame(read_results(str(full))))
    # resuming a finished run changes nothing
    r = _invoke(infer_cli, [*args, "--out", f"{out}/", "--resume"])
    assert r.exit_code == 0 and "already complete" in r.output, r.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")} == after


def test_resume_refuses_another_model_or_options(model_path, tmp_path):
    out = tmp_path / "results"
    base = ["score", "--input", RECORDS, "--model", model_path, "--out", f"{out}/", "-q"]
    assert _invoke(infer_cli, base).exit_code == 0
    (out / "_manifest.json").unlink()
    (out / "part-00000.parquet").unlink()
    r = _invoke(infer_cli, [*base, "--resume", "--bands", "0.1,0.5"])
    assert r.exit_code == ExitCode.USAGE, r.output
    assert "started with another --bands" in r.output
    r = _invoke(infer_cli, [*base, "--resume", "--pad-short"])
    assert r.exit_code == ExitCode.USAGE and "another options" in r.output, r.output
    assert not (out / "part-00000.parquet").exists()
    # --resume and --scheduler need a dataset --out
    r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path, "--out",
                            tmp_path / "one.parquet", "--resume"])
    assert r.exit_code == ExitCode.USAGE and "--resume needs a partitioned --out" in r.output
    # a folder that is not a dataset is not resumed
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path, "--out",
                            f"{tmp_path / 'other'}/", "--resume"])
    assert r.exit_code == ExitCode.USAGE and "not a results dataset" in r.output, r.output
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    # --overwrite starts over
    r = _invoke(infer_cli, [*base, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert (out / "_manifest.json").is_file() and (out / "part-00000.parquet").is_file()


def test_disk_full_mid_run_is_one_line_and_the_parts_are_kept(model_path, tmp_path,
                                                              monkeypatch):
    from common.io import output_error
    from common.storage import Folder

    out = tmp_path / "results"
    real = Folder.write
    calls = []

    def write(self, name, data):
        calls.append(name)
        if name == "part-00003.parquet":
            raise output_error(self.path(name), OSError(errno.ENOSPC, "No space left"))
        real(self, name, data)

    monkeypatch.setattr(Folder, "write", write)
    r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path, "--out",
                            f"{out}/", "--part-records", 50, "--n-jobs", 1])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {out}/part-00003.parquet: cannot write the output: no "
                           "space left on the device") and last.endswith(
        "re-run with --resume once it is fixed"), last
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-0000{i}.parquet"
                                                            for i in range(3)]
    assert not list(out.glob(".*"))
    monkeypatch.undo()
    r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path, "--out",
                            f"{out}/", "--part-records", 50, "--resume", "-q"])
    assert r.exit_code == 0, r.output
    assert read_results(str(out)).num_rows == 353


def test_inputs_that_vanish_mid_run_become_error_rows(model_path, tmp_path):
    from infer.score import find_inputs, score_inputs

    folder = copy_records(tmp_path / "in", 6)
    model = Model(model_path)
    found = find_inputs(folder, model)  # listed ...
    gone = found.inputs[1][0]
    os.unlink(gone)  # ... then a header vanishes
    os.unlink(found.inputs[3][0][:-4] + ".dat")  # and a signal file
    table, summary = score_inputs(found.inputs, model, root=folder)
    rows = table.to_pandas().set_index("path")
    assert summary.status["error"] == 2 and summary.scored == 4
    assert "cannot be read" in rows.loc[gone, "message"] or "not found" in rows.loc[
        gone, "message"]
    assert found.inputs[3][0][:-4] in rows.loc[found.inputs[3][0], "message"]


# ------------------------------------------------------------------ Dask


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed", reason="the cluster extra is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  worker_dashboard_address=None) as lc:
        yield lc.scheduler_address


@pytest.mark.slow
def test_scoring_on_a_cluster_equals_the_local_run(model_path, reference, cluster, tmp_path):
    out = tmp_path / "results"
    r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path, "--out",
                            f"{out}/", "--part-records", 30], env={
                                "DASK_SCHEDULER_ADDRESS": cluster})
    assert r.exit_code == 0, r.output
    assert "scoring on the Dask cluster at tcp://127.0.0.1" in r.output
    pd.testing.assert_frame_equal(_frame(read_results(str(out))), reference)
    # each worker process kept one session for the model, with the worker's one thread
    import distributed

    with distributed.Client(cluster) as client:
        sessions = client.run(_worker_sessions)
    assert sorted(sessions.values()) == [[1], [1]] or all(
        v in ([1], []) for v in sessions.values())
    assert sum(len(v) for v in sessions.values()) >= 1


def _worker_sessions():
    from infer.score import _SESSIONS

    return [m.threads for m in _SESSIONS.values()]


@pytest.mark.slow
def test_ingest_on_a_cluster_writes_the_same_dataset(cluster, tmp_path):
    root = make_corpus(tmp_path / "corpus", n_records=60)
    local, dask = tmp_path / "local", tmp_path / "dask"
    for out, extra in ((local, ["--n-jobs", 1]), (dask, ["--scheduler", cluster])):
        r = _invoke(ingest_cli, ["ptbxl", "--root", root, "--out", out, "-q", *extra])
        assert r.exit_code == 0, r.output
    files = sorted(p.relative_to(local) for p in local.rglob("*.parquet"))
    assert files == sorted(p.relative_to(dask) for p in dask.rglob("*.parquet"))
    for f in files:
        assert (local / f).read_bytes() == (dask / f).read_bytes(), f
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (local, dask))
    assert a["checksums"] == b["checksums"] and a["counts"] == b["counts"]


def test_an_unreachable_scheduler_is_one_line(model_path, tmp_path):
    dask = pytest.importorskip("dask", reason="the cluster extra is not installed")
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path, "--out",
                                f"{tmp_path / 'r'}/", "--scheduler", "tcp://127.0.0.1:9"])
    assert r.exit_code == ExitCode.FATAL, r.output
    assert "tcp://127.0.0.1:9: cannot reach the Dask scheduler" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ object storage


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 and the variables that point fsspec at it."""
    pytest.importorskip("s3fs", reason="the cloud extra is not installed")
    server = pytest.importorskip("moto.server", reason="moto[server] (dev extra) is missing")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    srv = server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    srv.start()
    host, port = srv.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("ecgs")
    fs.mkdir("results")
    for hea in sorted(RECORDS.glob("*/*.hea"))[:40]:
        for ext in (".hea", ".dat"):
            fs.put_file(str(hea.with_suffix(ext)), f"ecgs/night/{hea.stem}{ext}")
    yield fs, env
    srv.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_scoring_from_and_to_object_storage(model_path, reference, s3, tmp_path):
    fs, env = s3
    first40 = reference.iloc[:40].reset_index(drop=True)
    # one results file, uploaded whole
    r = _invoke(infer_cli, ["score", "--input", "s3://ecgs/night/", "--model", model_path,
                            "--out", "s3://results/night.parquet", "-q"])
    assert r.exit_code == 0, r.output
    got = _frame(read_results("s3://results/night.parquet"))
    assert got["path"].str.startswith("s3://ecgs/night/").all()
    pd.testing.assert_frame_equal(got.drop(columns="path"), first40.drop(columns="path"))
    r = _invoke(infer_cli, ["score", "--input", "s3://ecgs/night/", "--model", model_path,
                            "--out", "s3://results/night.parquet"])
    assert r.exit_code == ExitCode.OUTPUT_EXISTS, r.output
    # a partitioned dataset, resumed after losing a part
    out = "s3://results/night/"
    args = ["score", "--input", "s3://ecgs/night/", "--model", model_path, "--out", out,
            "--part-records", 16]
    assert _invoke(infer_cli, [*args, "-q"]).exit_code == 0
    fs.rm_file("results/night/_manifest.json")
    fs.rm_file("results/night/part-00001.parquet")
    r = _invoke(infer_cli, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert "resuming: 2 of 3 parts done, 16 inputs to score" in r.output
    pd.testing.assert_frame_equal(_frame(read_results(out)).drop(columns="path"),
                                  first40.drop(columns="path"))
    # the report reads the dataset from the bucket
    r = _invoke(infer_cli, ["report", out, "--out", tmp_path / "night.html", "-q"])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "night.html").read_text()
    assert all(f">{rid}<" in page for rid in first40["record_id"])


def test_object_storage_failures_are_rows_or_one_line(model_path, s3, tmp_path):
    fs, env = s3
    hea = sorted(RECORDS.glob("*/*.hea"))[0]
    for name in ("a", "b"):
        fs.pipe_file(f"ecgs/broken/{name}.hea", hea.read_text().replace(hea.stem, name).encode())
        fs.put_file(str(hea.with_suffix(".dat")), f"ecgs/broken/{name}.dat")
    fs.rm_file("ecgs/broken/b.dat")  # its signal file vanished
    r = _invoke(infer_cli, ["score", "--input", "s3://ecgs/broken/", "--model", model_path,
                            "--out", tmp_path / "r.parquet", "-q"])
    assert r.exit_code == ExitCode.PARTIAL, r.output
    rows = pq.read_table(tmp_path / "r.parquet").to_pandas().set_index("record_id")
    assert rows.loc["a", "status"] == "ok"
    assert rows.loc["b", "status"] == "error"
    assert "s3://ecgs/broken/b.dat" in rows.loc["b", "message"], rows.loc["b", "message"]
    assert "mi-screen-stage" not in rows.loc["b", "message"]
    # a bucket that does not exist: one line, its own code
    r = _invoke(infer_cli, ["score", "--input", "s3://ecgs/broken/", "--model", model_path,
                            "--out", "s3://no-such-bucket/r/"])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "s3://no-such-bucket/r/" in r.output and "Traceback" not in r.output


def test_skipped_candidates_are_a_part_of_their_own_and_resume(model_path, tmp_path):
    folder = copy_records(tmp_path / "in", 3)
    (folder / ".hidden.hea").write_text((folder / sorted(os.listdir(folder))[1]).read_text())
    out = tmp_path / "results"
    args = ["score", "--input", folder, "--model", model_path, "--out", f"{out}/",
            "--part-records", 2, "-q"]
    r = _invoke(infer_cli, args)
    assert r.exit_code == 0, r.output
    first = _frame(read_results(str(out)))
    assert list(first["status"].iloc[-1:]) == ["skipped"] and len(first) == 4
    assert "hidden file" in first["message"].iloc[-1]
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-0000{i}.parquet"
                                                          for i in range(3)]
    for name in ("_manifest.json", "part-00002.parquet", "part-00000.parquet"):
        (out / name).unlink()
    r = _invoke(infer_cli, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(_frame(read_results(str(out))), first)


def test_an_output_folder_that_vanishes_mid_run_stops_the_run_in_one_line(
        model_path, tmp_path, monkeypatch):
    from common.storage import Folder

    out = tmp_path / "results"
    real = Folder.write

    def write(self, name, data):
        real(self, name, data)
        if name == "part-00001.parquet":
            shutil.rmtree(out)  # someone cleans the disk while the run works

    monkeypatch.setattr(Folder, "write", write)
    r = _invoke(infer_cli, ["score", "--input", RECORDS, "--model", model_path, "--out",
                            f"{out}/", "--part-records", 50, "--n-jobs", 1])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    last = r.output.strip().splitlines()[-1]
    assert "the folder vanished or was emptied while the run was working" in last, last
    assert not out.exists(), "the run re-created the folder and went on writing"
