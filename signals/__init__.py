"""ECG signal processing shared by ingest, train and infer: quality gate, filters, R peaks,
measurements.

Functions are pure (arrays in, arrays out) and batch-first where the scorer needs throughput.
``signals.quality`` needs numpy only; filters and measurements import SciPy, PyWavelets and
NeuroKit2 lazily (the ``signals`` extra), so the scorer's start-up stays light.
"""

from signals.quality import THRESHOLDS, Quality, QualityLevel, ecg_quality, lead_stats

__all__ = ["THRESHOLDS", "Quality", "QualityLevel", "ecg_quality", "lead_stats"]
