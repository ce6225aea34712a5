"""serving/ is the model's runtime: importing it must not pull in training/ or mlflow."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

CHECK = """
import importlib, pkgutil, sys
import serving
for module in pkgutil.walk_packages(serving.__path__, "serving."):
    importlib.import_module(module.name)
bad = sorted(m for m in sys.modules if m == "mlflow" or m.startswith(("mlflow.", "training")))
print(",".join(bad))
"""


def test_importing_every_serving_module_pulls_in_no_training_and_no_mlflow() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
