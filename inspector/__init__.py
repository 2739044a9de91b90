"""Inspector: industrial quality inspection that keeps learning."""

import os

# TensorFlow's C++ side logs every SavedModel load and graph pass at INFO; warnings and
# errors are what an operator needs. Set before any module of ours imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
