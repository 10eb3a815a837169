"""A PostgreSQL ledger chosen by URL, everywhere a ledger is named: `Client(ledger=...)`,
`--ledger` and `IMPACT_LEDGER_URL`; and what it says when the database is missing or down. The
server is the real one the test session starts (`tests/postgres_server.py`)."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from reportexport_async import Client
from reportexport_async.cli import main
from reportexport_async.core.models import Job
from reportexport_async.core.quota import HourlyWindow
from reportexport_async.errors import LedgerError
from reportexport_async.ledger.postgres import PostgresLedger
from reportexport_async.ledger.store import open_ledger, redact_url
from reportexport_async.sandbox import ManualClock, Sandbox

from .conftest import SANDBOX_START
from .postgres_server import PostgresServer
from .round_trips import SENT, CountedLedger, counted


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
        used = await ledger.counters.quota_history()
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

    from reportexport_async.ledger.postgres import OPEN_RETRY_FOR

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


# -- round trips ----------------------------------------------------------------------------------


def job(job_id: str, status: str, records: int | None = None) -> Job:
    return Job.model_validate(
        {"Id": job_id, "Status": status, "RecordsProcessed": records, "ReportId": "r"}
    )


async def test_a_chunks_life_costs_one_round_trip_per_ledger_call(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The round trips of one chunk on its way, counted statement by statement: each call is
    one statement (no BEGIN, COMMIT or pool reset around it), the hourly bucket one transaction
    of two statements; and the records are those the separate statements used to write."""
    ledger = CountedLedger(postgres_server.create_database("round_trips"))
    key, day = "c" * 64, date(2026, 1, 1)

    def take(window: HourlyWindow | None) -> tuple[HourlyWindow, None]:
        now = ledger.clock.now()
        return (window or HourlyWindow.fresh(1000, now)).acquire(now, count=5)[0], None

    async with ledger:
        await ledger.counters.hourly("acct", take)  # the bucket's first call makes its row
        SENT.clear()
        await counted("charge", ledger.counters.charge("ReportExport", day, 10, "acct"))
        await counted("hourly", ledger.counters.hourly("acct", take))
        entry, must_submit = await counted(
            "claim",
            ledger.claim(
                key, '{"report_id": "r"}', endpoint="ReportExport", report_id="r",
                range_start=day, range_end=day, result_format="CSV",
            ),
        )  # fmt: skip
        await counted("record_submitted", ledger.record_submitted(key, "job-1"))
        await counted(
            "record_statuses",
            ledger.record_statuses(
                [(key, job("job-1", "RUNNING")), (key, job("job-1", "RUNNING"))]
            ),
        )
        await counted(
            "record_statuses", ledger.record_statuses([(key, job("job-1", "COMPLETED", 7))])
        )
        renewed = await counted("renew_leases", ledger.renew_leases())
        _, taken = await counted("take_lease", ledger.take_lease(key))
        await counted(
            "record_download",
            ledger.record_download(key, "job-1", tmp_path / "f.csv", 3, "ab" * 32),
        )
        done = await counted("get", ledger.get(key))
        history = await counted("history", ledger.history(key))
    assert dict(SENT) == {
        "charge": 1,
        "hourly": 4,  # BEGIN, the row locked, the row written, COMMIT
        "claim": 1,
        "record_submitted": 1,
        "record_statuses": 2,
        "renew_leases": 1,
        "take_lease": 1,
        "record_download": 1,
        "get": 1,
        "history": 2,  # the entry found (by key or job id), then its events
    }
    assert must_submit
    assert entry.claimed_by == ledger.owner
    assert renewed == 1
    assert taken
    assert done is not None
    assert (done.job_id, done.status, done.records) == ("job-1", "COMPLETED", 7)
    assert done.file_sha256 == "ab" * 32
    assert done.completed_at is not None
    assert done.claimed_by is None
    assert [(e.kind, e.job_id) for e in history] == [
        ("intent", None),
        ("submitted", "job-1"),
        ("status", "job-1"),  # RUNNING, seen twice, recorded once
        ("status", "job-1"),  # COMPLETED
        ("download", "job-1"),  # COMPLETED already: no second status event
    ]
    assert history[0].detail == {"owner": ledger.owner}
    assert [e.detail.get("status") for e in history[2:4]] == ["RUNNING", "COMPLETED"]
    assert history[4].detail == {"path": str(tmp_path / "f.csv"), "size": 3, "sha256": "ab" * 32}


async def test_taking_over_a_lease_that_ran_out_still_records_whom_it_was_taken_from(
    postgres_server: PostgresServer,
) -> None:
    """The rarer paths keep their transaction: a chunk claimed by another worker is not taken
    while its lease runs, and once it has run out it is taken (by claim or by take_lease) with
    a history row naming the worker it was taken from."""
    url = postgres_server.create_database("take_over")
    clock = ManualClock(SANDBOX_START)
    lease = timedelta(seconds=60)
    args: dict[str, Any] = {
        "endpoint": "ReportExport", "report_id": "r", "range_start": None, "range_end": None,
        "result_format": "CSV",
    }  # fmt: skip
    async with (
        PostgresLedger(url, clock=clock, lease=lease) as other,
        CountedLedger(url, clock=clock, lease=lease) as mine,
    ):
        other.owner = "another-host:4242:cafe"
        await other.claim("a" * 64, "{}", **args)
        await other.claim("b" * 64, "{}", **args)
        await other.record_submitted("b" * 64, "job-b")
        assert (await mine.take_lease("b" * 64))[1] is False
        assert (await mine.claim("a" * 64, "{}", **args))[1] is False
        clock.advance(61)
        entry, must_submit = await mine.claim("a" * 64, "{}", **args)
        assert must_submit  # no job recorded: the intent is taken over
        assert entry.claimed_by == mine.owner
        entry_b, taken = await mine.take_lease("b" * 64)
        assert taken
        assert entry_b is not None
        assert (entry_b.job_id, entry_b.claimed_by) == ("job-b", mine.owner)
        assert (await mine.take_lease("f" * 64)) == (None, False)
        history_a = await mine.history("a" * 64)
        history_b = await mine.history("b" * 64)
    assert [e.kind for e in history_a] == ["intent", "intent"]
    assert history_a[1].detail == {"owner": mine.owner, "took_over": other.owner}
    assert [e.kind for e in history_b] == ["intent", "submitted", "lease"]
    assert history_b[2].detail == {"owner": mine.owner, "took_over": other.owner}
