"""The ledger against the sandbox: never the same export twice, re-attach after a crash, cached
results, guarded replays, quota use shared by processes. Second processes are real subprocesses
(`tests/ledger_child.py`) on the same ledger.

Every test runs against both storage backends (`backend`): the SQLite file, and a real
PostgreSQL server started by the test session (`tests/postgres_server.py`), one fresh database
per ledger path. Tests of the SQLite file itself (corrupt, read-only, locked, older files) are
marked `sqlite_file` and run on SQLite only."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from reportexport_async import (
    ClientConfig,
    ExportRequest,
    JobFailed,
    PollPolicy,
    QuotaExhausted,
    RateLimiter,
    RateLimitPolicy,
    ReplayRefused,
    ReportExportClient,
)
from reportexport_async.core.chunking import Chunk
from reportexport_async.core.models import Job
from reportexport_async.errors import ConfigurationError, LedgerError
from reportexport_async.jobs.exports import fetch_export, fingerprint_for
from reportexport_async.ledger import SCHEMA_VERSION
from reportexport_async.ledger import Ledger as SQLiteLedger
from reportexport_async.ledger.store import LedgerStore, open_ledger
from reportexport_async.sandbox import ManualClock, Sandbox
from reportexport_async.sandbox.testing import SandboxTime

from .conftest import SANDBOX_START
from .read_only import locked_by_another_process, read_only

_backend: dict[str, Any] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        file_only = metafunc.definition.get_closest_marker("sqlite_file") is not None
        kinds = ["sqlite"] if file_only else ["sqlite", "postgresql"]
        metafunc.parametrize("backend", kinds, indirect=True)


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest) -> Any:
    """The storage backend under test; `Ledger(path)` below opens a ledger of it."""
    _backend.clear()
    _backend["kind"] = request.param
    if request.param == "postgresql":
        _backend["server"] = request.getfixturevalue("postgres_server")
        _backend["databases"] = {}
    yield request.param
    _backend.clear()


def ledger_spec(path: Path) -> str:
    """What names the ledger at `path` for the backend under test: the path itself, or the URL
    of a PostgreSQL database made for that path (the same path, the same database)."""
    if _backend["kind"] == "sqlite":
        return str(path)
    databases: dict[str, str] = _backend["databases"]
    if str(path) not in databases:
        name = f"t{len(databases)}_{abs(hash(str(path))) % 10**8}"
        databases[str(path)] = _backend["server"].create_database(name)
    return databases[str(path)]


def Ledger(path: str | Path, **options: Any) -> LedgerStore:  # stands for the class
    """The ledger at `path`, of the backend under test."""
    if _backend["kind"] == "sqlite":
        return SQLiteLedger(path, **options)
    options.pop("busy_timeout", None)
    return open_ledger(ledger_spec(Path(path)), **options)


sqlite_file = pytest.mark.sqlite_file

REPORT = "mp_action_listing_fast"
JANUARY = ExportRequest(report_id=REPORT, start=date(2026, 1, 1), end=date(2026, 1, 3))
HOUR = 3600.0


def config_for(sandbox: Sandbox, **extra: Any) -> ClientConfig:
    return ClientConfig(
        account_sid=sandbox.account_sid,
        auth_token=sandbox.auth_token,
        account_type="Mediapartners",
        base_url=sandbox.base_url,
        **extra,
    )


@asynccontextmanager
async def setup(
    tmp_path: Path, **sandbox_options: Any
) -> AsyncIterator[tuple[Sandbox, ReportExportClient, LedgerStore]]:
    """A manual-clock sandbox, a ledger in `tmp_path`, a client on sandbox time."""
    sandbox_options.setdefault("job_duration", (10, 10))
    sandbox_options.setdefault("rows_per_day", 5)
    async with Sandbox(clock=ManualClock(SANDBOX_START), **sandbox_options) as sandbox:
        clock = SandboxTime(sandbox)
        async with Ledger(tmp_path / "ledger.sqlite", clock=clock) as ledger:
            limiter = RateLimiter(clock=clock, store=ledger.counters)
            async with ReportExportClient(
                config_for(sandbox), limiter=limiter, clock=clock, random_source=lambda: 0.5
            ) as client:
                yield sandbox, client, ledger


async def child(sandbox: Sandbox, ledger_path: Path, **args: Any) -> tuple[int, dict[str, Any]]:
    """Run `tests/ledger_child.py` against the sandbox; (exit code, its JSON line or {})."""
    payload = {
        "base_url": sandbox.base_url,
        "account_sid": sandbox.account_sid,
        "auth_token": sandbox.auth_token,
        "ledger": ledger_spec(ledger_path),
        **args,
    }
    result = await anyio.run_process(
        [sys.executable, "-m", "tests.ledger_child", json.dumps(payload)],
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    lines = result.stdout.decode().strip().splitlines()
    return result.returncode, json.loads(lines[-1]) if lines else {}


# -- never twice ----------------------------------------------------------------------------------


async def test_same_export_twice_and_from_a_second_process_costs_one_submit(
    tmp_path: Path,
) -> None:
    async with Sandbox(job_duration=(0, 0), rows_per_day=5) as sandbox:
        ledger_path = tmp_path / "ledger.sqlite"
        async with (
            Ledger(ledger_path) as ledger,
            ReportExportClient(config_for(sandbox, poll=PollPolicy(initial=0.05))) as client,
        ):
            first = await fetch_export(client, ledger, JANUARY, tmp_path / "jan.csv")
            second = await fetch_export(client, ledger, JANUARY, tmp_path / "jan.csv")
            calls_in_process = client.usage.total_calls
        code, other = await child(
            sandbox, ledger_path, mode="fetch", dest=str(tmp_path / "jan.csv")
        )
        stats = sandbox.stats()
    assert first.action == "downloaded"
    assert first.submitted
    assert second.action == "cached"
    assert code == 0
    assert other["action"] == "cached"
    assert other["sha256"] == first.sha256
    assert stats["calls"]["ReportExport"] == 1
    # The cached runs made no call at all: everything the sandbox saw came from the first run.
    assert stats["total_calls"] == calls_in_process + stats["calls"]["SignedDownload"]


async def test_concurrent_tasks_asking_for_one_export_share_one_submit(tmp_path: Path) -> None:
    async with setup(tmp_path) as (sandbox, client, ledger):
        outcomes = []

        async def fetch(name: str) -> None:
            outcomes.append(await fetch_export(client, ledger, JANUARY, tmp_path / name))

        async with anyio.create_task_group() as group:
            group.start_soon(fetch, "a.csv")
            group.start_soon(fetch, "a.csv")
        stats = sandbox.stats()
    assert stats["calls"]["ReportExport"] == 1
    assert sorted(o.action for o in outcomes) == ["cached", "downloaded"]


async def test_default_range_is_a_new_export_on_a_new_day(tmp_path: Path) -> None:
    request = ExportRequest(report_id=REPORT)
    # A partner export without dates: the guide's default range (rule 5), which the partner
    # document does not allow (it marks the dates required), so the strict dialect would refuse.
    async with setup(tmp_path, dialect="examples") as (sandbox, client, ledger):
        today = fingerprint_for(client, request)
        await fetch_export(client, ledger, request, tmp_path / "d1.csv")
        again = await fetch_export(client, ledger, request, tmp_path / "d1.csv")
        sandbox.advance(24 * HOUR)
        tomorrow = fingerprint_for(client, request)
        next_day = await fetch_export(client, ledger, request, tmp_path / "d2.csv")
        stats = sandbox.stats()
    assert again.action == "cached"
    assert today.key != tomorrow.key
    assert next_day.submitted
    assert stats["calls"]["ReportExport"] == 2
    assert stats["jobs_created"] == 2


# -- crashes --------------------------------------------------------------------------------------


async def test_sigkill_after_submit_before_download_resumes_without_a_new_submit(
    tmp_path: Path,
) -> None:
    async with Sandbox(job_duration=(0, 0), rows_per_day=5) as sandbox:
        ledger_path = tmp_path / "ledger.sqlite"
        dest = tmp_path / "jan.csv"
        code, _ = await child(sandbox, ledger_path, mode="die-before-download", dest=str(dest))
        assert code == -9  # killed by SIGKILL where the download would have started
        assert not dest.exists()
        async with Ledger(ledger_path) as ledger:
            entries = await ledger.entries()
            entry = entries[0] if entries else None
            async with ReportExportClient(
                config_for(sandbox, poll=PollPolicy(initial=0.05))
            ) as client:
                outcome = await fetch_export(client, ledger, JANUARY, dest)
        stats = sandbox.stats()
    assert entry is not None
    assert entry.job_id == outcome.job_id
    assert not outcome.submitted
    assert outcome.action == "downloaded"
    assert dest.read_text().count("\n") == 16
    assert stats["calls"]["ReportExport"] == 1
    assert stats["jobs_created"] == 1


async def test_crash_between_submit_and_record_is_covered_by_the_services_dedup(
    tmp_path: Path,
) -> None:
    """A process recorded its intent, submitted, and died before recording the job id. The next
    run cannot know the job id: it submits the same parameters and the service returns the same
    job (docs/api-facts.md §1d)."""
    async with setup(tmp_path) as (sandbox, client, ledger):
        print_ = fingerprint_for(client, JANUARY)
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        process.wait()
        dead_pid = process.pid  # a process of this machine that no longer exists
        async with Ledger(tmp_path / "ledger.sqlite", clock=client.clock) as crashed:
            crashed.owner = f"{socket.gethostname()}:{dead_pid}:deadbeef"
            _, mine = await crashed.claim(
                print_.key,
                print_.canonical,
                endpoint="ReportExport",
                report_id=REPORT,
                range_start=JANUARY.start,
                range_end=JANUARY.end,
                result_format="CSV",
            )
            assert mine
            lost = await client.export(JANUARY)  # the submit whose answer was never recorded
        outcome = await fetch_export(client, ledger, JANUARY, tmp_path / "jan.csv")
        stats = sandbox.stats()
        history = [event.kind for event in await ledger.history(print_.key)]
    assert outcome.job_id == lost.job_id
    assert stats["jobs_created"] == 1
    assert history[:3] == ["intent", "intent", "submitted"]  # the second intent took over


async def test_a_live_claim_elsewhere_is_waited_for_then_taken_over(tmp_path: Path) -> None:
    """Another machine's process claimed the submit and went silent: after the claim timeout the
    next run takes it over (and the service's de-duplication keeps it to one job)."""
    async with setup(tmp_path) as (sandbox, client, ledger):
        print_ = fingerprint_for(client, JANUARY)
        async with Ledger(tmp_path / "ledger.sqlite", clock=client.clock) as other:
            other.owner = "another-host:4242:cafe"  # cannot be checked from here
            await other.claim(
                print_.key,
                print_.canonical,
                endpoint="ReportExport",
                report_id=REPORT,
                range_start=JANUARY.start,
                range_end=JANUARY.end,
                result_format="CSV",
            )
        started = client.clock.now()
        outcome = await fetch_export(client, ledger, JANUARY, tmp_path / "jan.csv")
        waited = (client.clock.now() - started).total_seconds()
        stats = sandbox.stats()
    assert outcome.submitted
    assert waited >= 120
    assert stats["calls"]["ReportExport"] == 1


# -- cached results -------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["delete", "alter", "truncate"])
async def test_missing_or_damaged_file_is_downloaded_again_without_a_submit(
    tmp_path: Path, damage: str
) -> None:
    dest = tmp_path / "jan.csv"
    async with setup(tmp_path) as (sandbox, client, ledger):
        first = await fetch_export(client, ledger, JANUARY, dest)
        if damage == "delete":
            dest.unlink()
        elif damage == "alter":
            dest.write_text(dest.read_text().replace("2026-01-02", "2026-01-09"))
        else:
            dest.write_bytes(dest.read_bytes()[:-10])
        again = await fetch_export(client, ledger, JANUARY, dest)
        stats = sandbox.stats()
    assert again.action == "downloaded"
    assert not again.submitted
    assert again.sha256 == first.sha256
    assert stats["calls"]["ReportExport"] == 1
    assert stats["calls"]["Download"] == 2


async def test_expired_result_is_replayed_not_resubmitted(tmp_path: Path) -> None:
    dest = tmp_path / "jan.csv"
    async with setup(tmp_path) as (sandbox, client, ledger):
        first = await fetch_export(client, ledger, JANUARY, dest)
        dest.unlink()
        sandbox.advance(91 * 24 * HOUR)
        sandbox.expire_job(first.job_id)
        again = await fetch_export(client, ledger, JANUARY, dest)
        stats = sandbox.stats()
        events = [e.kind for e in await ledger.history(first.fingerprint)]
    assert again.replayed
    assert not again.submitted
    assert again.sha256 == first.sha256  # old days never change
    assert stats["calls"]["ReportExport"] == 1
    assert stats["replays"] == 1
    assert "replay" in events


# -- replays through the guard --------------------------------------------------------------------


async def test_failed_job_is_replayed_once_the_guard_allows_it(tmp_path: Path) -> None:
    async with setup(tmp_path, faults={"job_fail": 1.0}) as (sandbox, client, ledger):
        with pytest.raises(JobFailed, match="too_soon"):
            await fetch_export(client, ledger, JANUARY, tmp_path / "jan.csv")
        sandbox.set_faults({})
        sandbox.advance(HOUR)
        outcome = await fetch_export(client, ledger, JANUARY, tmp_path / "jan.csv")
        stats = sandbox.stats()
        events = [e.kind for e in await ledger.history(outcome.fingerprint)]
    assert outcome.replayed
    assert not outcome.submitted
    assert stats["calls"]["ReportExport"] == 1
    assert stats["replays"] == 1
    assert events.count("replay_refused") == 1
    assert events.count("replay") == 1


async def test_fresh_data_replays_a_recent_range_and_refuses_an_old_one(tmp_path: Path) -> None:
    today = SANDBOX_START.date()
    recent = ExportRequest(report_id=REPORT, start=today - timedelta(days=2), end=today)
    async with setup(tmp_path) as (sandbox, client, ledger):
        first = await fetch_export(client, ledger, recent, tmp_path / "recent.csv")
        old = await fetch_export(client, ledger, JANUARY, tmp_path / "old.csv")
        with pytest.raises(ReplayRefused) as too_soon:
            await fetch_export(client, ledger, recent, tmp_path / "recent.csv", fresh=True)
        sandbox.advance(6 * HOUR)
        fresher = await fetch_export(client, ledger, recent, tmp_path / "recent.csv", fresh=True)
        with pytest.raises(ReplayRefused) as old_refused:
            await fetch_export(client, ledger, JANUARY, tmp_path / "old.csv", fresh=True)
        sandbox.advance(2 * HOUR)  # past the minimum age of the replay just made
        with pytest.raises(ReplayRefused) as twice:
            await fetch_export(client, ledger, recent, tmp_path / "recent.csv", fresh=True)
        forced = await fetch_export(
            client, ledger, recent, tmp_path / "recent.csv", force_replay=True
        )
        stats = sandbox.stats()
    assert too_soon.value.rule == "too_soon"
    assert old_refused.value.rule == "not_justified"
    assert twice.value.rule == "once_per_day"
    assert fresher.replayed
    assert fresher.size > first.size  # recent days gained rows
    assert forced.replayed
    assert old.action == "downloaded"
    assert stats["replays"] == 2
    assert stats["calls"]["ReportExport"] == 2


# -- quota ----------------------------------------------------------------------------------------


async def test_quota_use_survives_a_restart_and_is_shared_between_processes(
    tmp_path: Path,
) -> None:
    ledger_path = tmp_path / "ledger.sqlite"
    async with Sandbox(job_duration=(0, 0)) as sandbox:
        code_a, first = await child(
            sandbox, ledger_path, mode="charge", count=2, daily_limit=3, tag="a"
        )
        code_b, second = await child(
            sandbox, ledger_path, mode="charge", count=5, daily_limit=3, tag="b"
        )
        async with Ledger(ledger_path) as ledger:
            limiter = RateLimiter(RateLimitPolicy(daily_report_export=3), store=ledger.counters)
            async with ReportExportClient(config_for(sandbox), limiter=limiter) as client:
                daily = await limiter.daily("ReportExport")  # bound to the client's account now
                with pytest.raises(QuotaExhausted):
                    await client.export(JANUARY)
        stats = sandbox.stats()
    assert (code_a, code_b) == (0, 0)
    assert first["fitted"] == 2
    assert second["fitted"] == 1  # the second process saw the first one's use
    assert daily is not None
    assert daily.used == 3
    assert stats["calls"]["ReportExport"] == 3


# -- the file itself ------------------------------------------------------------------------------


@sqlite_file
async def test_corrupt_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database, it is a shopping list" * 100)
    for reading_only in (False, True):
        with pytest.raises(LedgerError, match="is corrupt or not a SQLite file") as caught:
            async with Ledger(path, read_only=reading_only):
                pass
        message = str(caught.value)
        assert caught.value.problem == "corrupt"
        assert str(path) in message
        # The file may hold the record of every job: keep it, never move it out of the way.
        assert "keep it" in message
        assert "restore a backup" in message.lower()
        assert "move" not in message
        assert "--ledger" not in message  # library terms; the command line adds its flag
    assert path.read_bytes().startswith(b"this is not a database")  # left as it was


@sqlite_file
async def test_ledger_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(LedgerError, match="newer"):
        async with Ledger(path):
            pass


@sqlite_file
async def test_unwritable_ledger_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LedgerError, match="cannot create the folder") as caught:
        async with Ledger(blocker / "sub" / "ledger.sqlite"):
            pass
    assert caught.value.problem == "folder"


# -- read-only and locked ledgers: named as such, never as corrupt --------------------------------


async def make_ledger(path: Path) -> str:
    """A ledger with one submitted export; returns its fingerprint."""
    async with Ledger(path) as ledger:
        key = "f" * 64
        await ledger.claim(
            key,
            '{"report_id": "r"}',
            endpoint="ReportExport",
            report_id="r",
            range_start=date(2026, 1, 1),
            range_end=date(2026, 1, 7),
            result_format="CSV",
        )
        await ledger.record_submitted(key, "job-1")
    return key


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


async def assert_readable_without_writing(path: Path, key: str) -> None:
    async with Ledger(path, read_only=True) as ledger:
        assert [e.job_id for e in await ledger.entries()] == ["job-1"]
        found = await ledger.find("job-1")
        assert found is not None
        assert found.fingerprint == key
        assert [e.kind for e in await ledger.history(key[:8])] == ["intent", "submitted"]
        with pytest.raises(LedgerError, match="open read-only") as caught:
            await ledger.record_event(key, "note")
        assert caught.value.problem == "read-only"


@sqlite_file
async def test_a_read_only_ledger_file_is_named_read_only_and_still_readable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite"
    key = await make_ledger(path)
    before = path.read_bytes()
    with read_only(path):
        with pytest.raises(LedgerError) as caught:
            async with Ledger(path):
                pass
        message = str(caught.value)
        assert caught.value.problem == "read-only"
        assert message.startswith(f"cannot write to {str(path)!r}: read-only file (check its")
        assert "corrupt" not in message
        assert "move" not in message
        await assert_readable_without_writing(path, key)
    assert path.read_bytes() == before


@sqlite_file
async def test_a_read_only_ledger_folder_is_named_read_only_and_still_readable(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ledgers"
    folder.mkdir()
    path = folder / "ledger.sqlite"
    key = await make_ledger(path)
    before = files_of(folder)
    assert list(before) == ["ledger.sqlite"]  # WAL files are gone once the ledger is closed
    with read_only(folder):
        for where in (path, folder / "new.sqlite"):
            with pytest.raises(LedgerError) as caught:
                async with Ledger(where):
                    pass
            message = str(caught.value)
            assert caught.value.problem == "read-only"
            assert message.startswith(
                f"cannot write to {str(where)!r}: read-only folder {str(folder)!r}"
            )
            assert "corrupt" not in message
        # No -shm file can be made beside it: it is read as an immutable file.
        await assert_readable_without_writing(path, key)
    assert files_of(folder) == before


@sqlite_file
async def test_a_locked_ledger_is_named_locked_and_readers_are_not_stopped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite"
    key = await make_ledger(path)
    with locked_by_another_process(path):
        with pytest.raises(LedgerError) as caught:
            async with Ledger(path, busy_timeout=0.2):
                pass
        message = str(caught.value)
        assert caught.value.problem == "locked"
        assert message.startswith(f"the ledger {str(path)!r} is locked by another process")
        assert "corrupt" not in message
        await assert_readable_without_writing(path, key)  # WAL: readers do not wait for writers
    async with Ledger(path, busy_timeout=0.2) as ledger:  # the lock is gone: usable again
        with (
            locked_by_another_process(path),
            pytest.raises(LedgerError, match="is locked by another process"),
        ):
            await ledger.record_event(key, "note")
        await ledger.record_event(key, "note")


@sqlite_file
async def test_an_exclusively_locked_rollback_journal_ledger_is_locked_not_corrupt(
    tmp_path: Path,
) -> None:
    """A file another tool left in rollback-journal mode, locked EXCLUSIVE: even reading it
    waits, and the quick check fails with "database is locked" (this was called corrupt)."""
    path = tmp_path / "ledger.sqlite"
    await make_ledger(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    db.close()
    with locked_by_another_process(path, "EXCLUSIVE"):
        for read_only_mode in (False, True):
            with pytest.raises(LedgerError) as caught:
                async with Ledger(path, busy_timeout=0.2, read_only=read_only_mode):
                    pass
            assert caught.value.problem == "locked", str(caught.value)
            assert "corrupt" not in str(caught.value)


@sqlite_file
async def test_a_read_only_ledger_changes_nothing(tmp_path: Path) -> None:
    """No switch to WAL (the header's format bytes stay), no migration, no new rows."""
    path = tmp_path / "ledger.sqlite"
    key = await make_ledger(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = DELETE")
    db.close()
    before = path.read_bytes()
    await assert_readable_without_writing(path, key)
    assert path.read_bytes() == before
    assert before[18:20] == b"\x01\x01"  # rollback journal, not WAL (which is 2, 2)
    assert files_of(tmp_path) == {"ledger.sqlite": before}


@sqlite_file
async def test_an_older_ledger_is_read_as_it_is_or_says_it_needs_an_upgrade(
    tmp_path: Path,
) -> None:
    from reportexport_async.ledger import MIGRATIONS

    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(
        "INSERT INTO exports (fingerprint, canonical, endpoint, report_id, result_format, "
        "job_id, created_at) VALUES ('abc', '{}', 'ReportExport', 'r', 'CSV', 'job-9', "
        "'2026-01-01T00:00:00+00:00')"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    before = path.read_bytes()
    async with Ledger(path, read_only=True) as ledger:
        assert [e.job_id for e in await ledger.entries()] == ["job-9"]  # its columns exist
        with pytest.raises(LedgerError) as caught:
            await ledger.counters.quota_history()  # counted per account only since version 2
    assert caught.value.problem == "older"
    assert "schema version 1" in str(caught.value)
    assert "open it once for writing to upgrade it" in str(caught.value)
    assert path.read_bytes() == before
    async with Ledger(path) as ledger:  # a writable open upgrades it
        assert await ledger.counters.quota_history() == []


@sqlite_file
async def test_a_read_only_open_of_a_missing_ledger_makes_nothing(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger at") as caught:
        async with Ledger(tmp_path / "sub" / "ledger.sqlite", read_only=True):
            pass
    assert caught.value.problem == "missing"
    assert list(tmp_path.iterdir()) == []


async def test_history_tells_the_whole_story(tmp_path: Path) -> None:
    async with setup(tmp_path) as (sandbox, client, ledger):
        outcome = await fetch_export(client, ledger, JANUARY, tmp_path / "jan.csv")
        sandbox.advance(2 * HOUR)
        await fetch_export(client, ledger, JANUARY, tmp_path / "jan.csv", force_replay=True)
        by_job = await ledger.history(outcome.job_id)
        by_prefix = await ledger.history(outcome.fingerprint[:10])
        entries = await ledger.entries(report_id=REPORT)
    kinds = [event.kind for event in by_job]
    assert kinds[0] == "intent"
    assert kinds[1] == "submitted"
    assert "status" in kinds
    assert kinds.count("download") == 2
    assert kinds.count("replay") == 1
    assert by_prefix == by_job
    assert len(entries) == 1
    assert entries[0].replays == 1
    assert entries[0].filters == {}


@sqlite_file
async def test_a_version_1_ledger_is_migrated_and_keeps_its_quota_use(tmp_path: Path) -> None:
    from reportexport_async.ledger import MIGRATIONS

    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO quota_use (day, name, used) VALUES ('2026-06-15', 'ReportExport', 7)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    async with Ledger(path) as ledger:
        assert await ledger.counters.used("ReportExport", date(2026, 6, 15)) == 7
        history = await ledger.counters.quota_history()
    db = sqlite3.connect(path)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    db.close()
    assert version == SCHEMA_VERSION == 6
    assert history == [("", date(2026, 6, 15), "ReportExport", 7)]


@sqlite_file
async def test_a_version_2_ledger_gains_an_empty_auto_chunks_record(tmp_path: Path) -> None:
    from reportexport_async.ledger import MIGRATIONS

    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    for migration in MIGRATIONS[:2]:
        for statement in migration.split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    async with Ledger(path) as ledger:
        assert await ledger.auto_chunks("https://a/Mediapartners/IR1", "{}") == []
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


async def test_auto_chunks_are_kept_per_account_and_export_and_replaced_only_if_unchanged(
    tmp_path: Path,
) -> None:
    first, second = "https://a/Mediapartners/IR1", "https://a/Mediapartners/IR2"
    export = '{"report_id":"r"}'
    weeks = [
        Chunk(date(2025, 1, 6), date(2025, 1, 12)),
        Chunk(date(2025, 1, 13), date(2025, 1, 19)),
    ]
    year = [Chunk(date(2025, 1, 1), date(2025, 12, 31))]
    async with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert await ledger.record_auto_chunks(first, export, weeks, expected=[])
        assert await ledger.auto_chunks(first, export) == weeks
        assert await ledger.auto_chunks(second, export) == []  # another account
        assert await ledger.auto_chunks(first, '{"report_id":"s"}') == []  # another export
        # Planned from a record another run has changed since: refused, nothing written.
        assert not await ledger.record_auto_chunks(first, export, year, expected=[])
        assert await ledger.auto_chunks(first, export) == weeks
        assert await ledger.record_auto_chunks(first, export, year, expected=weeks)
    async with Ledger(tmp_path / "ledger.sqlite") as ledger:  # durable
        assert await ledger.auto_chunks(first, export) == year


async def test_quota_use_is_counted_per_account(tmp_path: Path) -> None:
    day = date(2026, 6, 15)
    async with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert (
            await ledger.counters.charge("ReportExport", day, 2, "https://a/Advertisers/IR1") == 1
        )
        assert (
            await ledger.counters.charge("ReportExport", day, 2, "https://a/Advertisers/IR1") == 2
        )
        assert (
            await ledger.counters.charge("ReportExport", day, 2, "https://a/Advertisers/IR1")
            is None
        )
        assert (
            await ledger.counters.charge("ReportExport", day, 2, "https://a/Advertisers/IR2") == 1
        )
        assert await ledger.counters.used("ReportExport", day, "https://a/Advertisers/IR2") == 1


async def test_one_limiter_cannot_serve_two_accounts(tmp_path: Path) -> None:
    async with setup(tmp_path) as (sandbox, client, _):
        other = ClientConfig(
            account_sid="IRsomeoneelse",
            auth_token="x",
            account_type="Mediapartners",
            base_url=sandbox.base_url,
        )
        with pytest.raises(ConfigurationError, match="another account"):
            ReportExportClient(other, limiter=client.limiter)


# -- leases and the shared hourly bucket (both backends) ------------------------------------------


async def test_a_lease_is_kept_while_renewed_and_taken_over_by_job_id_when_it_runs_out(
    tmp_path: Path,
) -> None:
    """Another worker claimed a chunk and recorded its job: while its lease runs nobody else
    takes it; renewed, it runs on; once it runs out, the next worker takes it over with the
    recorded job id (no submit), and the history says who took it from whom."""
    clock = ManualClock(SANDBOX_START)
    key = "a" * 64
    async with (
        Ledger(tmp_path / "ledger.sqlite", clock=clock, lease=timedelta(seconds=60)) as other,
        Ledger(tmp_path / "ledger.sqlite", clock=clock, lease=timedelta(seconds=60)) as mine,
    ):
        other.owner = "another-host:4242:cafe"  # cannot be checked from here: only the lease
        _, first = await other.claim(
            key, '{"report_id": "r"}', endpoint="ReportExport", report_id="r",
            range_start=date(2026, 1, 1), range_end=date(2026, 1, 1), result_format="CSV",
        )  # fmt: skip
        await other.record_submitted(key, "job-1")
        entry, taken = await mine.take_lease(key)
        assert first
        assert not taken
        assert entry is not None
        assert entry.claimed_by == other.owner
        clock.advance(50)
        assert await other.renew_leases() == 1
        clock.advance(50)  # 100 s after the claim, 50 after the renewal: still the other's
        entry, taken = await mine.take_lease(key)
        assert not taken
        _, must_submit = await mine.claim(
            key, '{"report_id": "r"}', endpoint="ReportExport", report_id="r",
            range_start=date(2026, 1, 1), range_end=date(2026, 1, 1), result_format="CSV",
        )  # fmt: skip
        assert not must_submit
        clock.advance(11)  # the renewed lease has run out
        entry, taken = await mine.take_lease(key)
        assert taken
        assert entry is not None
        assert (entry.job_id, entry.claimed_by) == ("job-1", mine.owner)
        history = await mine.history(key)
        assert [e.kind for e in history] == ["intent", "submitted", "lease"]
        assert history[-1].detail == {"owner": mine.owner, "took_over": other.owner}
        # The old holder's renewals no longer reach it; the new holder's file ends the lease.
        assert await other.renew_leases() == 0
        await mine.record_download(key, "job-1", tmp_path / "f.csv", 3, "ab" * 32)
        done = await mine.get(key)
        assert done is not None
        assert done.claimed_by is None
        assert done.lease_until is None
        assert await mine.release_leases() == 0


async def test_release_leases_frees_every_chunk_a_worker_holds_at_once(tmp_path: Path) -> None:
    clock = ManualClock(SANDBOX_START)
    async with (
        Ledger(tmp_path / "ledger.sqlite", clock=clock) as first,
        Ledger(tmp_path / "ledger.sqlite", clock=clock) as second,
    ):
        first.owner = "another-host:1:a"
        for key in ("b" * 64, "c" * 64):
            await first.claim(
                key, "{}", endpoint="ReportExport", report_id="r", range_start=None,
                range_end=None, result_format="CSV",
            )  # fmt: skip
            await first.record_submitted(key, f"job-{key[0]}")
        assert [(await second.take_lease(k))[1] for k in ("b" * 64, "c" * 64)] == [False, False]
        assert await first.release_leases() == 2
        assert [(await second.take_lease(k))[1] for k in ("b" * 64, "c" * 64)] == [True, True]


async def test_two_limiters_on_one_ledger_spend_one_hourly_bucket(tmp_path: Path) -> None:
    """Two processes' limiters of one account on one ledger: the calls either takes come out of
    one bucket, so together they never exceed the hourly limit (the 21st call waits)."""
    from reportexport_async.core.requests import Endpoint

    class SteppingClock(ManualClock):
        """Sleeping moves it forward, as much as asked (and records it)."""

        slept: list[float] = []  # noqa: RUF012 - one test's record

        async def sleep(self, seconds: float) -> None:
            self.slept.append(seconds)
            self.advance(seconds)

    clock = SteppingClock(SANDBOX_START)
    policy = RateLimitPolicy(hourly_limit=20, safety_margin=0)
    async with (
        Ledger(tmp_path / "ledger.sqlite", clock=clock) as one,
        Ledger(tmp_path / "ledger.sqlite", clock=clock) as two,
    ):
        first = RateLimiter(policy, clock=clock, store=one.counters)
        second = RateLimiter(policy, clock=clock, store=two.counters)
        for limiter in (first, second):
            limiter.bind("https://a/Mediapartners/IR1")
        for _ in range(10):
            await first.acquire(Endpoint.GET_JOB)
            await second.acquire(Endpoint.GET_JOB)
        window = await one.counters.hourly("https://a/Mediapartners/IR1", lambda w: (w, w))
        assert window is not None
        assert window.remaining == 0
        waits: list[str] = []
        second.add_listener(lambda wait: waits.append(wait.what))
        with anyio.fail_after(5):
            await second.acquire(Endpoint.GET_JOB)  # waits for the window the two share
        assert waits == ["the hourly API limit"]
        assert clock.slept == [HOUR]


@sqlite_file
async def test_writes_of_many_tasks_share_commits_and_each_is_committed_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: 40 tasks claiming at once are committed in far fewer transactions, every
    claim is visible to another connection the moment it returns (the intent is durable before
    a submit could be sent), and a write that fails is undone alone."""
    from reportexport_async.ledger import sqlite as ledger_module

    transactions: list[int] = []
    original = ledger_module._Writer._transaction

    def counted(self: Any, writes: list[Any]) -> None:
        transactions.append(len(writes))
        original(self, writes)

    monkeypatch.setattr(ledger_module._Writer, "_transaction", counted)
    path = tmp_path / "ledger.sqlite"
    keys = [f"print-{n:02d}" for n in range(40)]
    seen_elsewhere: list[bool] = []

    async def claim(ledger: Ledger, key: str) -> None:
        entry, mine = await ledger.claim(
            key, "{}", endpoint="ReportExport", report_id=REPORT,
            range_start=None, range_end=None, result_format="CSV",
        )  # fmt: skip
        assert mine
        assert entry.claimed_by == ledger.owner
        with sqlite3.connect(path) as other:  # another process's view of the file
            row = other.execute("SELECT claimed_by FROM exports WHERE fingerprint = ?", (key,))
            seen_elsewhere.append(row.fetchone() == (ledger.owner,))

    async def failing(ledger: Ledger) -> None:
        async def work(tx: Any) -> None:  # `ledger.sql.Tx`
            await tx.execute("UPDATE exports SET status = 'WRONG'")  # undone with its savepoint
            raise sqlite3.IntegrityError("refused")

        with pytest.raises(LedgerError, match="refused"):
            await ledger._run(work, write=True)

    async with Ledger(path) as ledger:
        async with anyio.create_task_group() as group:
            for key in keys[:20]:
                group.start_soon(claim, ledger, key)
            group.start_soon(failing, ledger)
            for key in keys[20:]:
                group.start_soon(claim, ledger, key)
        found = await ledger.get_many([*keys, "unknown", keys[0]])
    assert seen_elsewhere == [True] * 40
    assert sorted(found) == keys
    assert all(entry.status is None for entry in found.values())
    assert sum(transactions) == 41
    assert len(transactions) < 41 / 2, transactions


async def test_get_many_reads_the_known_entries_of_many_fingerprints_at_once(
    tmp_path: Path,
) -> None:
    """The plan's look-up: every known fingerprint once, unknown ones left out, repeats merged."""
    keys = [f"{n:02d}" * 32 for n in range(3)]
    async with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for key in keys:
            await ledger.claim(
                key, "{}", endpoint="ReportExport", report_id=REPORT,
                range_start=None, range_end=None, result_format="CSV",
            )  # fmt: skip
        await ledger.record_submitted(keys[1], "job-1")
        found = await ledger.get_many([keys[1], "f" * 64, *keys, keys[0]])
    assert sorted(found) == sorted(keys)
    assert found[keys[1]].job_id == "job-1"
    assert found[keys[0]].job_id is None


async def test_a_refresh_of_many_statuses_records_what_one_update_after_another_would(
    tmp_path: Path,
) -> None:
    """A tracker refresh in one call: each export ends in its last state seen (its record count
    the last one given), a `status` event for each state that differs from the one before it
    (the same state seen twice is one event), and an export the ledger does not know is left
    alone."""

    def job(job_id: str, status: str, records: int | None = None, done: str | None = None) -> Job:
        return Job.model_validate(
            {"Id": job_id, "Status": status, "RecordsProcessed": records, "CompletedDate": done}
        )

    a, b, unknown = "a" * 64, "b" * 64, "f" * 64
    async with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for key in (a, b):
            await ledger.claim(
                key, "{}", endpoint="ReportExport", report_id=REPORT,
                range_start=None, range_end=None, result_format="CSV",
            )  # fmt: skip
            await ledger.record_submitted(key, f"job-{key[0]}")
        await ledger.record_statuses(
            [
                (b, job("job-b", "RUNNING")),
                (a, job("job-a", "RUNNING", 3)),
                (unknown, job("job-f", "RUNNING")),
                (b, job("job-b", "COMPLETED", 7)),
                (a, job("job-a", "RUNNING")),
                (b, job("job-b", "COMPLETED", None, "2026-01-02T03:04:05Z")),
            ]
        )
        await ledger.record_statuses([(a, job("job-a2", "RUNNING"))])  # another job id
        found = await ledger.get_many([a, b, unknown])
        history_a = await ledger.history(a)
        history_b = await ledger.history(b)
    assert sorted(found) == [a, b]
    assert (found[a].job_id, found[a].status, found[a].records) == ("job-a2", "RUNNING", 3)
    assert found[a].completed_at is None
    assert (found[b].job_id, found[b].status, found[b].records) == ("job-b", "COMPLETED", 7)
    assert found[b].completed_at is not None
    assert found[b].completed_at.isoformat() == "2026-01-02T03:04:05+00:00"
    assert [(e.kind, e.job_id, e.detail) for e in history_a[2:]] == [
        ("status", "job-a", {"status": "RUNNING", "records": 3}),
        ("status", "job-a2", {"status": "RUNNING", "records": None}),
    ]
    assert [(e.kind, e.job_id, e.detail) for e in history_b[2:]] == [
        ("status", "job-b", {"status": "RUNNING", "records": None}),
        ("status", "job-b", {"status": "COMPLETED", "records": 7}),
    ]
