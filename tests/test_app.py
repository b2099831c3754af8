"""infer app: the Gradio page, started on 127.0.0.1 and driven by gradio_client, answers what
`infer score` writes for the same record."""

from __future__ import annotations

import socket

import pytest
from conftest import SAMPLE

from infer import Model, ScoreOptions, score_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(trained):
    from infer.app import build_app

    page = build_app(trained[2])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                quiet=True)
    yield f"http://127.0.0.1:{port}/"
    page.close()


@pytest.mark.parametrize("record", ["00001_lr", "00006_lr"])
def test_app_answers_what_infer_score_writes(served, trained, record, tmp_path):
    import shutil

    from gradio_client import Client, handle_file

    hea = SAMPLE / "records100" / "00000" / f"{record}.hea"
    client = Client(served, verbose=False)
    p, band, quality, status, message, page = client.predict(
        [handle_file(str(hea)), handle_file(str(hea.with_suffix(".dat")))], None,
        api_name="/score")
    for ext in (".hea", ".dat"):
        shutil.copy(hea.with_suffix(ext), tmp_path)
    row = score_dir(tmp_path, Model(trained[2]),
                    options=ScoreOptions(explain=True)).__getitem__(0).to_pylist()[0]
    assert p == pytest.approx(row["mi_probability"], abs=1e-6)
    assert (band, quality, status) == (row["band"], row["quality"], row["status"])
    if band in ("MI", "borderline"):
        assert page and page.endswith(".png")


def test_app_reports_a_rejected_recording(served, tmp_path):
    import numpy as np
    import pandas as pd
    from gradio_client import Client, handle_file

    from schemas import LEADS

    flat = tmp_path / "flat.csv"
    pd.DataFrame(np.zeros((1000, 12)), columns=list(LEADS)).to_csv(flat, index=False)
    p, band, quality, status, message, page = Client(served, verbose=False).predict(
        [handle_file(str(flat))], 100, api_name="/score")
    assert p is None and band == "" and (quality, status) == ("unusable", "error")
    assert "flat" in message and page and page.endswith(".png")
