"""Which leads and which seconds drove a record's score: occlusion, with onnxruntime only.

A lead (or a second of every lead) is *occluded* by setting it to 0 mV, the isoelectric line,
and the record is scored again through the scorer's own windows and aggregation.  The
attribution is how much the probability falls: ``p(record) - p(record with it occluded)``;
positive means it pushed the score towards MI.  Occlusion is model-agnostic (it needs only the
exported graph), exact for what it asks (no gradients of a quantised or calibrated graph, no
sampling), and deterministic; its cost is one extra forward pass per lead and per second,
batched, which is why it runs only with ``--explain``.  Zero is the right filler here because
the graph's first layer normalises per lead: a flat lead at 0 mV is what a disconnected,
zero-filled lead looks like to the model (the scorer fills missing leads the same way).
"""

from __future__ import annotations

import numpy as np

from signals.windows import aggregate


def _score(model, variants: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Record probability of each variant ``(v, n, leads)``: windows, graph, aggregation."""
    take = starts[:, None] + np.arange(length)
    windows = variants[:, take].reshape(-1, length, variants.shape[2])
    p = model.predict(np.ascontiguousarray(windows, dtype=np.float32))
    owners = np.repeat(np.arange(len(variants)), len(starts))
    return aggregate(p, owners, len(variants), model.contract.aggregation)


def occlusion(model, signal: np.ndarray, starts: np.ndarray, length: int,
              fs: float, seconds: float = 1.0) -> tuple[float, np.ndarray, np.ndarray]:
    """``(probability, per-lead attribution (leads,), per-segment attribution (segments,))``
    for one record at the model's rate, ``signal`` ``(n, leads)`` mV, scored by the windows at
    ``starts`` of ``length`` samples.  Segments are ``seconds`` long (the last may be shorter).
    """
    n, n_leads = signal.shape
    step = max(1, int(round(seconds * fs)))
    edges = list(range(0, n, step))
    variants = np.repeat(signal[None], 1 + n_leads + len(edges), axis=0)
    for k in range(n_leads):
        variants[1 + k, :, k] = 0.0
    for j, a in enumerate(edges):
        variants[1 + n_leads + j, a : a + step, :] = 0.0
    p = _score(model, variants, starts, length)
    return float(p[0]), p[0] - p[1 : 1 + n_leads], p[0] - p[1 + n_leads :]


def occluded(model, signal: np.ndarray, starts: np.ndarray, length: int,
             leads: list[int] | None = None, span: tuple[int, int] | None = None) -> float:
    """The record probability with ``leads`` (all, if None) zeroed over ``span`` samples
    (all, if None): the building block, exposed for tests."""
    x = signal.copy()
    a, b = span if span is not None else (0, len(x))
    x[a:b, leads if leads is not None else slice(None)] = 0.0
    return float(_score(model, x[None], starts, length)[0])
