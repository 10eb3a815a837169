"""The client's own tests once more, against the sandbox's strict dialect: a server built from the
published documents alone, which refuses an undocumented parameter (400) or an `Accept` that
admits no documented media type (406), and whose answers leave unset values out.

`REPORTEXPORT_SANDBOX_DIALECT=strict` makes every sandbox a process (and its children) starts
strict, so the tests run unchanged. Here a representative part of the client's tests (the job
client, the orchestrator, downloads, the ledger: every call the library makes) runs in a child
pytest; the whole suite is checked the same way with

    REPORTEXPORT_SANDBOX_DIALECT=strict .venv/bin/python -m pytest -q -p no:cacheprovider
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reportexport_async.sandbox.dialect import DIALECT_ENV

ROOT = Path(__file__).resolve().parents[1]
CLIENT_TESTS = (
    "tests/test_client.py",
    "tests/test_orchestrator.py",
    "tests/test_downloads_fast.py",
    "tests/test_ledger.py",
)


@pytest.mark.slow
def test_the_client_tests_pass_against_the_strict_dialect() -> None:
    env = {**os.environ, DIALECT_ENV: "strict"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CLIENT_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    assert int(passed.group(1)) >= 100, summary
    assert "skipped" not in summary, summary
