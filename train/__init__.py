"""Keras training, evaluation and ONNX export of the MI detector (needs the `train` extra).

Submodules import TensorFlow lazily, so ``train.evaluate`` (plain numpy) and the CLI's
``--help`` stay fast.
"""
