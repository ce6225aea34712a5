"""The `raqib` command on a serving host: `--version`, and a clear message where an extra is missing."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from tests.conftest import REPO, clean_env

pytestmark = pytest.mark.unit

# What `pip install 'raqib[serve]'` leaves out, made unimportable in a child interpreter.
WITHOUT_TRAINING = (
    "import sys\n"
    "for name in ('mlflow', 'matplotlib', 'pandas', 'pyarrow', 'dask', 'distributed'):\n"
    "    sys.modules[name] = None\n"
    "from training.cli.main import app\n"
    "app(sys.argv[1:], prog_name='raqib')\n"
)


def raqib(*args: str, without_training: bool = False) -> subprocess.CompletedProcess[str]:
    code = (
        WITHOUT_TRAINING if without_training else "from training.cli.main import app; app(prog_name='raqib')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_prints_the_installed_version() -> None:
    result = raqib("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"raqib {version('raqib')}"


def test_a_training_command_without_the_train_extra_says_what_to_install() -> None:
    result = raqib("promote", without_training=True)
    assert result.returncode == 1
    assert "pip install 'raqib[train]'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serving_commands_need_no_training_packages() -> None:
    for args in (("--version",), ("serve", "--help"), ("--help",)):
        result = raqib(*args, without_training=True)
        assert result.returncode == 0, (args, result.stderr)
