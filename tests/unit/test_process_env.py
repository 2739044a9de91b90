"""What importing the package sets in the process's environment before TensorFlow loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW = "import inspector, os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0"), ("1", "1")])
def test_onednn_kernels_are_on_unless_the_environment_turns_them_off(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    shown = subprocess.run(
        [sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == expected
