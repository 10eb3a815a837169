"""The wheel holds what an installed package needs: the type marker, the pages the code cites
(`reportexport_async/docs/*.md`), the sandbox and its pytest plugin's entry point, the console
script, and the version of `pyproject.toml`.

`.ci/run` builds the release's sdist and wheel and runs this test on that wheel
(`REPORTEXPORT_WHEEL`); elsewhere the test builds a wheel of the checkout itself (slow: a build
in an isolated environment)."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import reportexport_async

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("REPORTEXPORT_WHEEL")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (built,) = out.glob("reportexport_async-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_what_the_package_needs(wheel: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert version == reportexport_async.__version__
    assert wheel.name.startswith(f"reportexport_async-{version}-py3-none-any")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"reportexport_async-{version}.dist-info"
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(f"{info}/entry_points.txt").decode())
        metadata = archive.read(f"{info}/METADATA").decode()
    assert "reportexport_async/py.typed" in names
    shipped = {p.name for p in (ROOT / "reportexport_async" / "docs").glob("*.md")}
    assert {"api-facts.md", "guide.md", "destinations.md"} <= shipped
    assert {f"reportexport_async/docs/{name}" for name in shipped} <= names
    assert "reportexport_async/sandbox/pytest_plugin.py" in names
    assert "reportexport_async/sandbox/server.py" in names
    assert "reportexport_async/core/lifecycle.py" in names
    assert dict(entry_points["pytest11"]) == {
        "reportexport_sandbox": "reportexport_async.sandbox.pytest_plugin"
    }
    assert dict(entry_points["console_scripts"]) == {"reportexport": "reportexport_async.cli:main"}
    # Only the package: no tests, benchmarks or site pages in the wheel.
    assert all(name.startswith(("reportexport_async/", info)) for name in names)
    assert f"Version: {version}" in metadata
    assert "Requires-Dist: aiohttp" in metadata
    assert "# reportexport_async" in metadata  # the README as the long description
