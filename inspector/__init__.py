"""Inspector: industrial quality inspection that keeps learning."""

import os

# TensorFlow's C++ side logs every SavedModel load and graph pass at INFO; warnings and
# errors are what an operator needs. Set before any module of ours imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI or AMX;
# on an AVX2-only one (an AMD EPYC of 2020) it falls back to kernels that made a defect
# map 3.3x slower (154 against 46 ms) and a training step 1.4x slower (bench/onednn.py;
# BENCHMARKS.md, "The machine changed"). On everywhere unless the environment says 0.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
