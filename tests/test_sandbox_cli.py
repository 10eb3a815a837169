"""The sandbox's three ways to start: the command, the pytest plugin, and settings validation."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reportexport_async.sandbox import SandboxConfig
from reportexport_async.sandbox.config import parse_fault, parse_range
from reportexport_async.sandbox.dialect import DIALECT_ENV
from reportexport_async.sandbox.pytest_plugin import SandboxThread

COMMAND = [sys.executable, "-m", "reportexport_async.sandbox"]


def fetch(url: str, sid: str, token: str) -> tuple[int, Any]:
    """One GET with a plain aiohttp client, from synchronous code."""

    async def run() -> tuple[int, Any]:
        auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers={"Authorization": f"Basic {auth}"}) as response,
        ):
            return response.status, await response.json()

    return asyncio.run(run())


def test_command_prints_one_json_line_then_serves(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    process = subprocess.Popen(
        [
            *COMMAND,
            "--port",
            "0",
            "--account-sid",
            "IRcommandline",
            "--auth-token-file",
            str(token_file),
            "--storage",
            str(tmp_path / "storage"),
            "--fault",
            "http_5xx=0",
            "--dialect",
            "strict",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert {"base_url", "account_sid", "auth_token"} <= first.keys()
        assert first["account_sid"] == "IRcommandline"
        assert first["auth_token"] == "s3cret-token"
        assert first["base_url"].startswith("http://127.0.0.1:")
        assert first["dialect"] == "strict"
        export = (
            f"{first['base_url']}/Mediapartners/IRcommandline/ReportExport/mp_action_listing_fast"
        )
        status, body = fetch(
            export + "?START_DATE=2026-01-01&END_DATE=2026-01-02", "IRcommandline", "s3cret-token"
        )
        assert status == 200
        assert body["Status"] == "QUEUED"
        # Strict: the partner document requires both dates.
        assert fetch(export, "IRcommandline", "s3cret-token")[0] == 400
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode in (0, 130), stderr
    assert (tmp_path / "storage").is_dir()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--port", "70000"], "port 70000 is not between 0 and 65535"),
        (["--port", "http"], "not a port number"),
        (["--fault", "http_5xx=2"], "must be between 0 and 1"),
        (["--fault", "meteor=0.1"], "unknown fault 'meteor'"),
        (["--job-duration", "9-3"], "--job-duration"),
        (["--time-scale", "0"], "must be positive"),
        (["--dialect", "loose"], "invalid choice: 'loose'"),
        (["--dialect", "strict", "--string-values"], "strict dialect types numbers"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(arguments: list[str], message: str) -> None:
    result = subprocess.run(
        [*COMMAND, *arguments], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_unwritable_storage_folder_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [*COMMAND, "--storage", str(blocker / "sub")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not writable" in result.stderr


def test_port_in_use_is_a_one_line_error() -> None:
    with SandboxThread() as running:
        port = running.base_url.rsplit(":", 1)[1]
        result = subprocess.run(
            [*COMMAND, "--port", port], capture_output=True, text=True, timeout=30, check=False
        )
    assert result.returncode == 2
    assert "cannot listen" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pytest_plugin_fixture_serves_from_sync_code(impact_sandbox: SandboxThread) -> None:
    url = f"{impact_sandbox.account_url('Agencies')}/Reports"
    status, body = fetch(url, impact_sandbox.account_sid, impact_sandbox.auth_token)
    assert status == 200
    assert isinstance(body, list)
    assert impact_sandbox.stats()["calls"]["Reports"] == 1
    before = impact_sandbox.now()
    impact_sandbox.advance(3600)
    assert (impact_sandbox.now() - before).total_seconds() >= 3600


def test_pytest_plugin_factory_takes_settings(impact_sandbox_factory: Any) -> None:
    sandbox = impact_sandbox_factory(hourly_limit=1, account_sid="IRfactory")
    url = f"{sandbox.account_url('Advertisers')}/Reports"
    assert fetch(url, "IRfactory", sandbox.auth_token)[0] == 200
    assert fetch(url, "IRfactory", sandbox.auth_token)[0] == 429


def test_config_rejects_bad_values_naming_them() -> None:
    with pytest.raises(ValueError, match="port") as caught:
        SandboxConfig(port=-1, faults={"http_5xx": 3.0})
    assert "faults: http_5xx rate" in str(caught.value)
    with pytest.raises(ValueError, match="job_duration"):
        SandboxConfig(job_duration=(5.0, 1.0))
    with pytest.raises(ValueError, match="account_sid"):
        SandboxConfig(account_sid="bad sid/")


def test_the_environment_chooses_the_default_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DIALECT_ENV, raising=False)
    assert SandboxConfig().dialect == "examples"
    monkeypatch.setenv(DIALECT_ENV, "strict")
    assert SandboxConfig().dialect == "strict"
    assert SandboxConfig(dialect="examples").dialect == "examples"
    monkeypatch.setenv(DIALECT_ENV, "lenient")
    with pytest.raises(ValueError, match=DIALECT_ENV):
        SandboxConfig()


def test_config_repr_hides_the_token() -> None:
    config = SandboxConfig(auth_token="very-secret-token")
    assert "very-secret-token" not in repr(config)


@pytest.mark.parametrize(
    ("text", "expected"), [("5", (5.0, 5.0)), ("30-1200", (30.0, 1200.0)), ("0", (0.0, 0.0))]
)
def test_parse_range(text: str, expected: tuple[float, float]) -> None:
    assert parse_range(text, "x") == expected


@pytest.mark.parametrize("text", ["", "a-b", "5-1", "1-2-3", "-5"])
def test_parse_range_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="x:"):
        parse_range(text, "x")


def test_parse_fault() -> None:
    assert parse_fault("lost_postback=0.25") == ("lost_postback", 0.25)
    for bad in ("lost_postback", "lost_postback=x", "nope=0.1", "slow=1.5"):
        with pytest.raises(ValueError, match="fault"):
            parse_fault(bad)


def test_readme_demo_walks_one_export_through_the_sandbox() -> None:
    import io

    from reportexport_async.sandbox.demo import demo

    out = io.StringIO()
    calls = asyncio.run(demo(out))  # type: ignore[arg-type]
    text = out.getvalue()
    assert "COMPLETED 100%" in text
    assert "HTTP 302" in text
    assert calls["ReportExport"] == 1
    assert calls["Download"] == 1
    assert calls["SignedDownload"] == 1


def test_sigterm_stops_the_command_cleanly_and_removes_its_temporary_storage() -> None:
    process = subprocess.Popen(
        [*COMMAND, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    storage = Path(json.loads(process.stdout.readline())["storage"])
    assert storage.is_dir()
    process.terminate()
    process.communicate(timeout=20)
    assert process.returncode == 0
    assert not storage.exists()
