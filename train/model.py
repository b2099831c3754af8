"""Model architectures, chosen by name.  Normalisation is the first layer of every model, so
an exported graph takes raw millivolts in :data:`schemas.LEADS` order at the data's rate.

LSTMs are built with ``use_cudnn=False``: a Keras 3 LSTM traced on a GPU otherwise becomes
``CudnnRNNV3``, which tf2onnx cannot convert, so a GPU-trained model would not export.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from schemas import LEADS


def _normalization(mean: np.ndarray, var: np.ndarray):
    import keras

    return keras.layers.Normalization(axis=-1, mean=mean, variance=var, name="normalize_mv")


def build_seed(n_samples: int, fs: int, mean: np.ndarray, var: np.ndarray):
    """The reference notebook's model, kept as the baseline to beat.

    Conv1D(64, kernel 3, relu) -> MaxPool(2) -> LSTM(50) -> Dropout(0.2) -> Dense(1, sigmoid);
    Adam, binary cross-entropy, batch 16, 10 epochs (see :data:`TRAINING_DEFAULTS`).
    """
    import keras
    from keras import layers

    inp = keras.Input((n_samples, len(LEADS)), name="ecg_mv")
    x = _normalization(mean, var)(inp)
    x = layers.Conv1D(64, 3, activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.LSTM(50, use_cudnn=False)(x)
    x = layers.Dropout(0.2)(x)
    out = layers.Dense(1, activation="sigmoid", name="mi_probability")(x)
    return keras.Model(inp, out, name="seed")


def build_cnnlstm(n_samples: int, fs: int, mean: np.ndarray, var: np.ndarray):
    """Default: convolutional blocks shorten the sequence 16x before a bidirectional LSTM.

    Designed for 2 CPU cores: four Conv-BN-ReLU-MaxPool blocks take 10 s at 100 Hz from 1000
    to 62 steps (at 500 Hz a stride-5 first convolution brings it to the same), so the
    recurrent layer, which cannot be parallelised over time, sees few steps.  Average and max
    pooling over the LSTM's outputs feed a small dense head; dropout and L2 against
    overfitting on a few hundred records.
    """
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(1e-4)
    inp = keras.Input((n_samples, len(LEADS)), name="ecg_mv")
    x = _normalization(mean, var)(inp)
    stride = max(1, fs // 100)
    for i, (filters, kernel) in enumerate([(32, 7), (32, 5), (64, 5), (64, 3)]):
        x = layers.Conv1D(
            filters, kernel, strides=stride if i == 0 else 1, padding="same", use_bias=False,
            kernel_regularizer=l2,
        )(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling1D(2)(x)
    x = layers.SpatialDropout1D(0.1)(x)
    x = layers.Bidirectional(layers.LSTM(32, return_sequences=True, use_cudnn=False))(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(32, activation="relu", kernel_regularizer=l2)(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, activation="sigmoid", name="mi_probability")(x)
    return keras.Model(inp, out, name="cnnlstm")


def build_resnet1d(n_samples: int, fs: int, mean: np.ndarray, var: np.ndarray):
    """A small residual 1-D CNN after the PTB-XL benchmark's resnet1d/xresnet1d family.

    A stride-``fs/100`` stem (so 500 Hz input costs what 100 Hz does after it), four residual
    blocks of two Conv-BN layers (32, 64, 64, 128 filters, the second and fourth halving the
    length), and concat pooling (global average and max) into a dropout and a sigmoid unit.
    Sized for 2 CPU cores and windows of a few seconds.
    """
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(1e-4)

    def conv(x, filters, kernel, stride=1):
        x = layers.Conv1D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          kernel_regularizer=l2)(x)
        return layers.BatchNormalization()(x)

    inp = keras.Input((n_samples, len(LEADS)), name="ecg_mv")
    x = _normalization(mean, var)(inp)
    x = layers.Activation("relu")(conv(x, 32, 7, stride=max(1, fs // 100)))
    for filters, stride in [(32, 1), (64, 2), (64, 1), (128, 2)]:
        shortcut = x
        y = layers.Activation("relu")(conv(x, filters, 5, stride))
        y = conv(y, filters, 5)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = conv(shortcut, filters, 1, stride)
        x = layers.Activation("relu")(layers.Add()([shortcut, y]))
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, activation="sigmoid", name="mi_probability")(x)
    return keras.Model(inp, out, name="resnet1d")


def build_criteria(*args, **kwargs):
    """Not a network: gradient-boosted trees on the measured MI criteria
    (:mod:`train.criteria`), trained by :func:`train.fit.train_model` without TensorFlow."""
    raise TypeError("the criteria model is not a Keras model; train.fit trains it")


ARCHITECTURES: dict[str, Callable] = {"seed": build_seed, "cnnlstm": build_cnnlstm,
                                      "resnet1d": build_resnet1d, "criteria": build_criteria}
#: Architectures that are not Keras networks (no TensorFlow in training or export).
NOT_KERAS = ("criteria",)

#: Per-architecture training settings; ``train fit`` options override them.
#: ``window_seconds`` 0 trains on whole records; otherwise on random crops of that length, and
#: records are scored by sliding windows (``stride_seconds``, None: half a window) whose
#: probabilities are aggregated (``aggregation``, see :mod:`signals.windows`).
#: ``one_cycle``: the learning rate warms up from 1/25 of its peak over the first 30 % of the
#: steps, then follows a cosine down to 1/250 of it (cosine one-cycle).
TRAINING_DEFAULTS: dict[str, dict] = {
    # The reference notebook: no class weights, no early stopping, no augmentation.
    "seed": {"batch_size": 16, "epochs": 10, "learning_rate": 1e-3, "class_weight": False,
             "early_stopping": False, "augment": False, "window_seconds": 0.0,
             "stride_seconds": None, "aggregation": "logit_mean", "one_cycle": False},
    "cnnlstm": {"batch_size": 32, "epochs": 40, "learning_rate": 2e-3, "class_weight": True,
                "early_stopping": True, "augment": True, "window_seconds": 0.0,
                "stride_seconds": None, "aggregation": "logit_mean", "one_cycle": False},
    "resnet1d": {"batch_size": 32, "epochs": 40, "learning_rate": 3e-3, "class_weight": True,
                 "early_stopping": True, "augment": True, "window_seconds": 2.5,
                 "stride_seconds": 1.25, "aggregation": "logit_mean", "one_cycle": True},
    # trees on signals.criteria.mi_features of whole records (train.criteria.TREE_SETTINGS)
    "criteria": {"batch_size": 64, "epochs": 0, "learning_rate": None, "class_weight": False,
                 "early_stopping": False, "augment": False, "window_seconds": 0.0,
                 "stride_seconds": None, "aggregation": "logit_mean", "one_cycle": False},
}


def one_cycle(peak: float, total_steps: int):
    """Cosine one-cycle schedule: warm up from ``peak / 25`` to ``peak`` over 30 % of
    ``total_steps``, then cosine decay to ``peak / 250``."""
    import keras

    warm = max(1, int(0.3 * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 25, decay_steps=max(1, total_steps - warm), alpha=1 / 250,
        warmup_target=peak, warmup_steps=warm)


def build_model(
    arch: str, n_samples: int, fs: int, mean: np.ndarray, var: np.ndarray,
    learning_rate: float | None = None, total_steps: int | None = None,
):
    """Build and compile architecture ``arch`` (see :data:`ARCHITECTURES`); with
    ``total_steps``, the learning rate follows :func:`one_cycle` over that many steps."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    import keras

    model = ARCHITECTURES[arch](n_samples, fs, mean, var)
    lr = learning_rate or TRAINING_DEFAULTS[arch]["learning_rate"]
    model.compile(
        optimizer=keras.optimizers.Adam(one_cycle(lr, total_steps) if total_steps else lr),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")],
    )
    return model
