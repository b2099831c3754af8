"""The nightly scorer: onnxruntime over folders of WFDB or CSV records.  Never imports
TensorFlow."""

from infer.readers import InputError, discover, read_csv, read_wfdb
from infer.score import (
    Model,
    NoInputError,
    ScoreOptions,
    ScoreSummary,
    score_dir,
    score_inputs,
    write_results,
)

__all__ = [
    "InputError",
    "Model",
    "NoInputError",
    "ScoreOptions",
    "ScoreSummary",
    "discover",
    "read_csv",
    "read_wfdb",
    "score_dir",
    "score_inputs",
    "write_results",
]
