"""A PostgreSQL ledger chosen by URL, everywhere a ledger is named: `Client(ledger=...)`,
`--ledger` and `IMPACT_LEDGER_URL`; and what it says when the database is missing or down. The
server is the real one the test session starts (`tests/postgres_server.py`)."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from reportexport_async import Client
from reportexport_async.cli import main
from reportexport_async.errors import LedgerError
from reportexport_async.ledger_postgres import PostgresLedger
from reportexport_async.ledger_store import open_ledger, redact_url
from reportexport_async.sandbox import ManualClock, Sandbox

from .conftest import SANDBOX_START
from .postgres_server import PostgresServer


async def test_client_with_a_postgresql_url_keeps_its_ledger_there(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database("client_url")
    async with Sandbox(clock=ManualClock(SANDBOX_START), job_duration=(0, 30)) as sandbox:
        async with Client.for_sandbox(sandbox, ledger=url) as client:
            assert isinstance(client.ledger, PostgresLedger)
            first = await client.backfill(
                "mp_action_listing_fast",
                date(2026, 1, 1),
                date(2026, 1, 4),
                out=tmp_path,
                chunk="1d",
            )
        async with Client.for_sandbox(sandbox, ledger=url) as client:  # a second process
            second = await client.backfill(
                "mp_action_listing_fast",
                date(2026, 1, 1),
                date(2026, 1, 4),
                out=tmp_path,
                chunk="1d",
            )
        stats = sandbox.stats()
    assert first.counts["done"] == 4
    assert second.counts["done"] == 4
    assert stats["calls"]["ReportExport"] == 4  # the second run found everything in PostgreSQL
    async with open_ledger(url, read_only=True) as ledger:
        entries = await ledger.entries()
        used = await ledger.quota_history()
    assert len(entries) == 4
    assert all(e.file_sha256 and e.claimed_by is None for e in entries)
    assert sum(u for *_, u in used) == 4


def test_the_command_line_takes_the_url_from_the_flag_or_the_environment(
    tmp_path: Path,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    url = postgres_server.create_database("cli_url")
    code = main(
        ["backfill", "mp_clicks_by_day", "--start", "2026-05-01", "--end", "2026-05-14",
         "--sandbox", "--ledger", url]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    assert not (tmp_path / ".reportexport").exists()  # nothing went to a SQLite file
    data = Path(os.environ["XDG_DATA_HOME"]) / "reportexport"
    assert not data.exists() or not list(data.glob("*.sqlite"))
    monkeypatch.setenv("IMPACT_LEDGER_URL", url)
    code = main(["ledger", "show", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(entries) == 2  # 7-day chunks counted from --start: May 1-7 and May 8-14
    assert {e["status"] for e in entries} == {"COMPLETED"}


async def test_a_missing_database_and_a_server_that_is_down_are_clear_errors(
    postgres_server: PostgresServer,
) -> None:
    missing = postgres_server.url("no_such_database").replace("postgres@", "postgres:s3cret@")
    with pytest.raises(LedgerError, match="does not exist") as caught:
        async with open_ledger(missing):
            pass
    assert "s3cret" not in str(caught.value)
    assert caught.value.problem == "missing"
    down = PostgresLedger("postgresql://u:s3cret@127.0.0.1:9/x", reconnect_for=0.3)
    assert "s3cret" not in repr(down)
    with pytest.raises(LedgerError, match="cannot reach the database") as caught:
        await down.open()
    assert "s3cret" not in str(caught.value)


async def test_opening_a_ledger_whose_server_never_answered_gives_up_after_a_few_seconds() -> None:
    """A wrong URL or a server that is down ends the run quickly: opening tries for
    `open_retry_for` seconds (by default `OPEN_RETRY_FOR`), not the minute a restart mid-run is
    waited for."""
    import anyio

    from reportexport_async.ledger_postgres import OPEN_RETRY_FOR

    assert PostgresLedger("postgresql://u@127.0.0.1:9/x").open_retry_for == OPEN_RETRY_FOR < 60
    down = PostgresLedger("postgresql://u:s3cret@127.0.0.1:9/x", open_retry_for=0.3)
    assert down.reconnect_for == 60
    with anyio.fail_after(30), pytest.raises(LedgerError, match=r"for 0 s;") as caught:
        await down.open()
    assert "s3cret" not in str(caught.value)


def test_a_password_never_shows_in_the_name_of_the_ledger() -> None:
    assert redact_url("postgresql://app:p%40ss@db:5432/r") == "postgresql://app:***@db:5432/r"
    assert redact_url("postgresql://db/r") == "postgresql://db/r"
    assert redact_url("postgresql://app@db/r") == "postgresql://app@db/r"
