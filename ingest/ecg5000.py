"""ECG5000 heartbeats to Parquet (:data:`schemas.BEATS_SCHEMA`).

The file is read by :func:`common.beatfiles.read_beats` (UCR or TensorFlow layout, detected by
content; a row that is not a beat becomes an error row naming the file, the line, the problem
and the fix, and the other beats are converted).  The output folder holds ``beats.parquet``,
``errors.parquet`` (the line as ``FILE:LINE`` in ``path``) and ``manifest.json`` (counts per
class, the input's sha256, the layout, versions), written to a temporary folder and moved into
place when complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.beatfiles import BeatFileError, Beats, read_beats  # noqa: F401  (re-exported)
from common.io import (
    check_not_input,
    commit_output,
    make_temp_dir,
    output_error,
    package_versions,
    prepare_output,
    sha256_file,
)
from ingest.convert import NothingConvertedError
from schemas import BEAT_SAMPLES, BEATS_SCHEMA, ERRORS_SCHEMA

_LOGGER = logging.getLogger(__name__)

def beats_table(beats: Beats) -> pa.Table:
    """The beats as a :data:`schemas.BEATS_SCHEMA` table."""
    flat = pa.array(beats.signal.reshape(-1), type=pa.float32())
    return pa.Table.from_arrays(
        [
            pa.array(beats.beat_id, pa.int32()),
            pa.array(beats.cls, pa.int8(), mask=beats.cls == 0),
            pa.array(beats.abnormal, pa.bool_()),
            pa.FixedSizeListArray.from_arrays(flat, type=BEATS_SCHEMA.field("signal").type),
        ],
        schema=BEATS_SCHEMA,
    )


@dataclass
class BeatSummary:
    n_beats: int
    n_errors: int
    manifest: dict[str, Any]
    first_errors: list[str]

    def line(self) -> str:
        c = self.manifest["counts"]
        return (f"{self.n_beats} beats ({c['abnormal']} abnormal, {c['normal']} normal; "
                f"{self.manifest['layout']} layout), {self.n_errors} errors")


def convert_ecg5000(input_file: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    overwrite: bool = False) -> BeatSummary:
    """Convert an ECG5000 file to ``out_dir`` (see the module docstring).

    Raises BeatFileError when the file is not a beat table, NothingConvertedError when no row
    is a beat (nothing is written), OutputExistsError, OutputIsInputError or OutputError.
    """
    input_file, out_dir = Path(input_file), Path(out_dir)
    check_not_input(out_dir, [input_file])
    prepare_output(out_dir, overwrite)
    beats = read_beats(input_file)
    if not len(beats):
        raise NothingConvertedError(
            f"{input_file}: none of its {len(beats.errors)} rows is a beat, e.g. "
            f"{beats.errors[0]['message'] if beats.errors else ''}; nothing was written")
    try:
        tmp = make_temp_dir(out_dir)
    except OSError as e:
        raise output_error(out_dir, e) from e
    try:
        pq.write_table(beats_table(beats), tmp / "beats.parquet")
        pq.write_table(pa.Table.from_pylist(beats.errors, schema=ERRORS_SCHEMA),
                       tmp / "errors.parquet")
        classes = {str(int(c)): int((beats.cls == c).sum()) for c in np.unique(beats.cls) if c}
        manifest = {
            "dataset": "ECG5000",
            "input": {"path": str(input_file), "sha256": sha256_file(input_file),
                      "bytes": input_file.stat().st_size},
            "layout": beats.layout,
            "counts": {"beats": len(beats), "abnormal": int(beats.abnormal.sum()),
                       "normal": int((~beats.abnormal).sum()), "classes": classes,
                       "errors": len(beats.errors)},
            "beat_samples": BEAT_SAMPLES,
            "versions": package_versions("mi-screen", "numpy", "pyarrow"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        commit_output(tmp, out_dir, overwrite)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise output_error(out_dir, e) from e
        raise
    return BeatSummary(n_beats=len(beats), n_errors=len(beats.errors), manifest=manifest,
                       first_errors=[e["message"] for e in beats.errors[:5]])


def load_beats(data_dir: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(beat_id, signal (n, 140) float32, abnormal (n,) float32)`` of an ``ingest ecg5000``
    folder."""
    path = Path(data_dir) / "beats.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{data_dir}: no beats.parquet; is this the output of "
                                "`ingest ecg5000`?")
    table = pq.read_table(path)
    signal = table["signal"].combine_chunks().flatten().to_numpy().reshape(-1, BEAT_SAMPLES)
    return (table["beat_id"].to_numpy(), signal.astype(np.float32),
            table["abnormal"].to_numpy(zero_copy_only=False).astype(np.float32))
