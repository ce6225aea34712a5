"""Audit the locked dependencies (.ci/requirements.lock) for known vulnerabilities with pip-audit.

A known vulnerability fails the run. When the vulnerability service cannot be reached (this
workplace's machines see only the package registries' download indexes, not PyPI's JSON API),
pip-audit skips every package instead of failing: we say so loudly rather than print "no known
vulnerabilities". RAQIB_AUDIT_STRICT=1 turns "could not audit" into a failure too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

LOCK = Path(__file__).with_name("requirements.lock")


def verdict(report: dict[str, Any], strict: bool = False) -> tuple[int, str]:
    """Exit code and message for a pip-audit JSON report."""
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    if vulnerable:
        lines = [
            f"{d['name']} {d.get('version', '?')}: " + ", ".join(v.get("id", "?") for v in d["vulns"])
            for d in vulnerable
        ]
        return 1, "known vulnerabilities in locked dependencies:\n  " + "\n  ".join(lines)
    if dependencies and len(skipped) == len(dependencies):
        message = (
            f"NOT AUDITED: all {len(dependencies)} locked packages were skipped "
            f"(first reason: {skipped[0]['skip_reason']}); the vulnerability service is unreachable"
        )
        return (1 if strict else 0), message
    audited = len(dependencies) - len(skipped)
    names = ", ".join(d["name"] for d in skipped) or "none"
    return 0, f"no known vulnerabilities in {audited} audited packages (skipped: {names})"


def main() -> int:
    """Run pip-audit on the lock file and print the verdict."""
    strict = os.environ.get("RAQIB_AUDIT_STRICT") == "1"
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "-r",
        str(LOCK),
        "--no-deps",
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"NOT AUDITED: pip-audit gave no report ({tail})")
        return 1 if strict else 0
    code, message = verdict(report, strict)
    print(message)
    return code


if __name__ == "__main__":
    sys.exit(main())
