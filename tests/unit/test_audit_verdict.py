"""The dependency audit's verdict: fail on a known vulnerability, never report 'clean' unaudited."""

import importlib.util

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def _audit():
    spec = importlib.util.spec_from_file_location("ci_audit", REPO / ".ci" / "audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_known_vulnerability_fails() -> None:
    report = {
        "dependencies": [
            {"name": "fastapi", "version": "0.1", "vulns": [{"id": "PYSEC-0000-1"}]},
            {"name": "numpy", "version": "2.0", "vulns": []},
        ]
    }
    code, message = _audit().verdict(report)
    assert code == 1
    assert "fastapi" in message and "PYSEC-0000-1" in message


def test_everything_skipped_is_not_called_clean() -> None:
    report = {"dependencies": [{"name": "fastapi", "skip_reason": "Dependency not found on PyPI"}]}
    code, message = _audit().verdict(report)
    assert code == 0 and message.startswith("NOT AUDITED")
    assert _audit().verdict(report, strict=True)[0] == 1


def test_clean_report_names_what_was_skipped() -> None:
    report = {
        "dependencies": [
            {"name": "fastapi", "version": "0.165.0", "vulns": []},
            {"name": "raqib", "skip_reason": "editable"},
        ]
    }
    code, message = _audit().verdict(report)
    assert code == 0
    assert "1 audited" in message and "raqib" in message


def test_lock_file_pins_every_runtime_dependency() -> None:
    lock = (REPO / ".ci" / "requirements.lock").read_text(encoding="utf-8")
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in lock.splitlines() if "==" in line}
    for name in ("fastapi", "scikit-learn", "numpy", "pyarabic", "uvicorn", "sqlalchemy", "mlflow"):
        assert name in pinned
