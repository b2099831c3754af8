"""``infer app``: upload an ECG, see the verdict beside the waveform (Gradio, the ``app`` extra).

The reference system's interactive page, on the batch path: the uploaded files go into a
temporary folder and through :func:`infer.score.score_dir` (discovery, readers for every
format, quality gate, windows, the exported graph, bands) with ``--explain`` and ``--plots``,
so the page shows exactly what ``infer score`` would write for that record, and its ECG page
with the seconds that drove the score shaded.  Nothing is kept after the answer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from infer.score import Model, ScoreOptions, score_dir

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # never call home


class AppExtraMissing(ImportError):
    """Gradio is not installed."""


def analyse(model: Model, files: list[str], csv_fs: float | None = None) -> dict[str, Any]:
    """Score uploaded files (a WFDB .hea with its signal file, a CSV, or any export the scorer
    reads) as ``infer score --explain --plots`` would; returns the first record's row."""
    if not files:
        raise ValueError("upload an ECG: a WFDB .hea with its .dat, a CSV, DICOM, XML or EDF")
    with tempfile.TemporaryDirectory(prefix="mi-screen-app-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / Path(f).name)
        pages = Path(tmp) / "pages"
        table, _ = score_dir(folder, model, n_jobs=1,
                             options=ScoreOptions(csv_fs=csv_fs, explain=True,
                                                  plots=str(pages)))
        rows = [r for r in table.to_pylist() if r["status"] != "skipped"] or table.to_pylist()
        row = dict(rows[0])
        if row.get("page"):  # keep the page past the temporary folder
            keep = Path(tempfile.mkdtemp(prefix="mi-screen-page-")) / Path(row["page"]).name
            shutil.copy(row["page"], keep)
            row["page"] = str(keep)
    return row


def build_app(model_path: str | os.PathLike[str]):
    """The Gradio interface for ``model_path``."""
    try:
        import gradio as gr
    except ImportError as e:
        raise AppExtraMissing("the app needs Gradio: pip install 'mi-screen[app]'") from e
    model = Model(model_path)

    def run(files, csv_fs):
        paths = [f if isinstance(f, str) else f.name for f in (files or [])]
        row = analyse(model, paths, csv_fs or None)
        p = row.get("mi_probability")
        return (None if p is None else round(float(p), 6), row.get("band") or "",
                row.get("quality") or "", row.get("status") or "", row.get("message") or "",
                row.get("page"))

    return gr.Interface(
        fn=run,
        inputs=[gr.File(file_count="multiple", label="ECG file(s): .hea + .dat, .csv, .dcm, "
                                                    ".xml, .edf"),
                gr.Number(value=None, label="CSV sampling rate (Hz; CSV files only)")],
        outputs=[gr.Number(label="MI probability"), gr.Textbox(label="band"),
                 gr.Textbox(label="quality"), gr.Textbox(label="status"),
                 gr.Textbox(label="message"), gr.Image(type="filepath", label="ECG page")],
        title="mi-screen: MI screening of a 12-lead ECG",
        description=(f"Model {model.contract.model_name}. Research use only: not a medical "
                     "device. The same scoring as `infer score --explain --plots`."),
        flagging_mode="never",
        api_name="score",
    )
