"""The ledger's contract, one suite for both stores: every test runs on the SQLite file and on a
real PostgreSQL database (the server the test session starts, `tests/postgres_server.py`), through
the `LedgerStore` calls only, several ledger objects (several workers) on one store where the test
needs them, on one manual clock. Concurrency included: many workers claiming one chunk at once,
many charging one quota at once."""

from __future__ import annotations

import itertools
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from reportexport_async.core.chunking import Chunk
from reportexport_async.core.models import Job
from reportexport_async.core.policies import RateLimitPolicy
from reportexport_async.core.quota import HourlyWindow
from reportexport_async.core.requests import Endpoint
from reportexport_async.errors import ConfigurationError, LedgerError, QuotaExhausted
from reportexport_async.ledger import MIGRATIONS, Ledger
from reportexport_async.ledger.schema import PG_MIGRATIONS
from reportexport_async.ledger.store import LedgerStore, open_ledger
from reportexport_async.sandbox import ManualClock
from reportexport_async.transport.ratelimit import RateLimiter

from .conftest import SANDBOX_START
from .postgres_server import PostgresServer

LEASE = timedelta(seconds=60)
DAY = date(2026, 1, 1)
ACCOUNT = "https://api.impact.com/Mediapartners/IR123"
_databases = itertools.count()

Open = Callable[..., Any]  # opens one more ledger object (one more worker) on the store


@pytest.fixture(params=["sqlite", "postgresql"])
async def workers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Open, ManualClock]]:
    """`open()` gives one more worker (an open ledger object) on one store of the backend under
    test; every worker shares one manual clock and the lease `LEASE`."""
    clock = ManualClock(SANDBOX_START)
    if request.param == "sqlite":
        spec: str = str(tmp_path / "ledger.sqlite")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        spec = server.create_database(f"contract_{next(_databases)}_{os.getpid()}")
    async with AsyncExitStack() as stack:

        async def open_worker(**options: Any) -> LedgerStore:
            options = {"clock": clock, "lease": LEASE, **options}
            return await stack.enter_async_context(open_ledger(spec, **options))  # type: ignore[no-any-return]

        yield open_worker, clock


def canonical(sid: str = "IR123", report: str = "r") -> str:
    return (
        f'{{"account_sid":"{sid}","account_type":"Mediapartners","filters":[],'
        f'"origin":"https://api.impact.com","report_id":"{report}"}}'
    )


async def claim(ledger: LedgerStore, key: str, sid: str = "IR123") -> tuple[Any, bool]:
    return await ledger.claim(
        key, canonical(sid), endpoint="ReportExport", report_id="r",
        range_start=DAY, range_end=DAY, result_format="CSV",
    )  # fmt: skip


def job(job_id: str, status: str, records: int | None = None) -> Job:
    return Job.model_validate(
        {"Id": job_id, "Status": status, "RecordsProcessed": records, "ReportId": "r"}
    )


async def downloaded(ledger: LedgerStore, tmp_path: Path) -> LedgerStore:
    """`ledger` after chunk k1 was claimed, submitted (job-1) and downloaded, no status seen."""
    await claim(ledger, "k1")
    await ledger.record_submitted("k1", "job-1")
    await ledger.record_download("k1", "job-1", tmp_path / "f.csv", 3, "ab" * 32)
    return ledger


# -- claims and leases ------------------------------------------------------------------------


async def test_a_new_export_is_claimed_by_its_first_worker_only(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, _ = workers
    a, b = await open_worker(), await open_worker()
    entry, must_submit = await claim(a, "k1")
    assert must_submit
    assert entry.claimed_by == a.owner
    assert entry.job_id is None
    again, mine = await claim(a, "k1")  # the holder asking again: still its own
    assert mine
    assert again.claimed_by == a.owner
    other, theirs = await claim(b, "k1")
    assert not theirs
    assert other.claimed_by == a.owner
    assert next((e.kind, e.detail) for e in await a.history("k1")) == (
        "intent",
        {"owner": a.owner},
    )


async def test_an_intent_whose_lease_ran_out_is_taken_over_and_submitted_again(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, clock = workers
    a, b = await open_worker(), await open_worker()
    a.owner = "another-host:1:dead"  # a worker elsewhere: its process cannot be checked
    await claim(a, "k1")
    clock.advance(LEASE.total_seconds() - 1)
    assert (await claim(b, "k1"))[1] is False  # still running
    clock.advance(1)
    entry, must_submit = await claim(b, "k1")
    assert must_submit
    assert entry.claimed_by == b.owner
    assert (await b.history("k1"))[-1].detail == {"owner": b.owner, "took_over": a.owner}


async def test_a_known_job_whose_lease_ran_out_is_followed_never_submitted_again(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, clock = workers
    a, b = await open_worker(), await open_worker()
    a.owner = "another-host:1:dead"
    await claim(a, "k1")
    await a.record_submitted("k1", "job-1")
    assert await b.take_lease("k1") == ((await b.get("k1")), False)
    clock.advance(LEASE.total_seconds())
    entry, must_submit = await claim(b, "k1")
    assert not must_submit  # the job is known: followed by its id
    assert (entry.job_id, entry.claimed_by) == ("job-1", b.owner)
    lease = (await b.history("k1"))[-1]
    assert (lease.kind, lease.job_id) == ("lease", "job-1")
    assert lease.detail == {"owner": b.owner, "took_over": a.owner}


async def test_a_claim_of_a_dead_process_on_this_machine_is_free_at_once(
    workers: tuple[Open, ManualClock],
) -> None:
    """The fast path after a local crash: no waiting for the lease to run out."""
    open_worker, _ = workers
    a, b = await open_worker(), await open_worker()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    a.owner = f"{socket.gethostname()}:{dead.stdout.strip()}:gone"
    await claim(a, "k1")
    entry, must_submit = await claim(b, "k1")
    assert must_submit
    assert entry.claimed_by == b.owner


async def test_take_lease_renew_and_release(workers: tuple[Open, ManualClock]) -> None:
    open_worker, clock = workers
    a, b = await open_worker(), await open_worker()
    a.owner = "another-host:1:a"
    assert await a.take_lease("nothing") == (None, False)
    for key in ("k1", "k2", "k3"):
        await claim(a, key)
        await a.record_submitted(key, f"job-{key}")
    for _ in range(3):  # renewed before it runs out, the lease is never free
        clock.advance(LEASE.total_seconds() - 1)
        assert await a.renew_leases() == 3
        assert (await b.take_lease("k1"))[1] is False
    await a.release_lease("k1")
    entry, mine = await b.take_lease("k1")
    assert mine
    assert entry is not None
    assert entry.claimed_by == b.owner
    assert await a.release_leases() == 2
    assert all(e.claimed_by is None for e in (await a.get_many(["k2", "k3"])).values())
    assert await a.renew_leases() == 0


async def test_release_claim_frees_an_intent_but_never_a_job(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, _ = workers
    a, b = await open_worker(), await open_worker()
    a.owner = "another-host:1:a"
    await claim(a, "k1")
    await claim(a, "k2")
    await a.record_submitted("k2", "job-2")
    await a.release_claim("k1")
    await a.release_claim("k2")
    assert (await claim(b, "k1"))[1] is True
    assert (await claim(b, "k2"))[1] is False  # still a's: its job is being followed


async def test_many_workers_claiming_one_chunk_at_once_leave_one_submitter(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, _ = workers
    ledgers = [await open_worker() for _ in range(6)]
    for n, ledger in enumerate(ledgers):
        ledger.owner = f"another-host:{n}:w"
    won: list[str] = []

    async def race(ledger: LedgerStore, key: str) -> None:
        for _ in range(3):  # several tasks of each worker, too
            if (await claim(ledger, key))[1]:
                won.append(f"{ledger.owner} {key}")

    async with anyio.create_task_group() as group:
        for key in ("k1", "k2"):
            for ledger in ledgers:
                group.start_soon(race, ledger, key)
    # Each chunk has one holder; its holder's repeated claims are its own, not new submitters.
    holders = {key: {w.split()[0] for w in won if w.endswith(key)} for key in ("k1", "k2")}
    assert all(len(owners) == 1 for owners in holders.values()), won
    intents = [e for e in await ledgers[0].history("k1") if e.kind == "intent"]
    assert {e.detail["owner"] for e in intents} == {holders["k1"].pop()}


async def test_many_workers_taking_over_one_expired_lease_at_once_leave_one_holder(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, clock = workers
    first, *others = [await open_worker() for _ in range(5)]
    first.owner = "another-host:1:first"
    for n, ledger in enumerate(others):
        ledger.owner = f"another-host:{n + 2}:w"
    await claim(first, "k1")
    await first.record_submitted("k1", "job-1")
    clock.advance(LEASE.total_seconds())
    taken: list[str] = []

    async def take(ledger: LedgerStore) -> None:
        _entry, mine = await ledger.take_lease("k1")
        if mine:
            taken.append(ledger.owner)

    async with anyio.create_task_group() as group:
        for ledger in others:
            group.start_soon(take, ledger)
    assert len(taken) == 1
    assert (await first.get("k1")).claimed_by == taken[0]  # type: ignore[union-attr]
    leases = [e for e in await first.history("k1") if e.kind == "lease"]
    assert [e.detail["owner"] for e in leases] == taken


# -- what happened to a job -------------------------------------------------------------------


async def test_a_chunks_life_is_recorded_with_its_history(
    workers: tuple[Open, ManualClock], tmp_path: Path
) -> None:
    open_worker, _ = workers
    ledger = await open_worker()
    await claim(ledger, "k1")
    await ledger.record_submitted("k1", "job-1")
    running = job("job-1", "RUNNING")
    await ledger.record_statuses([("k1", running), ("k1", running), ("k2", job("x", "RUNNING"))])
    assert [e.fingerprint for e in await ledger.unfinished()] == ["k1"]
    await ledger.record_status("k1", job("job-1", "COMPLETED", 7))
    assert await ledger.unfinished() == []
    await ledger.record_download("k1", "job-1", tmp_path / "f.csv", 3, "ab" * 32)
    done = await ledger.get("k1")
    assert done is not None
    assert (done.status, done.records, done.file_size, done.claimed_by) == ("COMPLETED", 7, 3, None)
    assert done.file_path == tmp_path / "f.csv"
    assert done.completed_at is not None
    assert [(e.kind, e.job_id) for e in await ledger.history("job-1")] == [
        ("intent", None), ("submitted", "job-1"), ("status", "job-1"), ("status", "job-1"),
        ("download", "job-1"),
    ]  # fmt: skip


async def test_a_download_seen_only_by_postback_records_the_completion(
    workers: tuple[Open, ManualClock], tmp_path: Path
) -> None:
    open_worker, _ = workers
    ledger = await downloaded(await open_worker(), tmp_path)
    kinds = [(e.kind, e.detail.get("status")) for e in await ledger.history("k1")]
    assert kinds[-2:] == [("status", "COMPLETED"), ("download", None)]


async def test_replays_are_counted_and_a_forgotten_job_is_cleared_once(
    workers: tuple[Open, ManualClock], tmp_path: Path
) -> None:
    open_worker, clock = workers
    ledger = await downloaded(await open_worker(), tmp_path)
    before = clock.now()
    clock.advance(10)
    await ledger.record_replay("k1", "job-1", job("job-2", "QUEUED"), rule="failed")
    entry = await ledger.get("k1")
    assert entry is not None
    assert (entry.job_id, entry.replays, entry.file_sha256) == ("job-2", 1, None)
    assert await ledger.replays_since("k1", before) == 1
    assert await ledger.replays_since("k1", clock.now() + timedelta(seconds=1)) == 0
    assert await ledger.forget_job("k1", "job-1") is False  # an older job: nothing cleared
    assert await ledger.forget_job("k1", "job-2") is True
    assert (await ledger.get("k1")).job_id is None  # type: ignore[union-attr]
    await ledger.record_event("k1", "error", None, {"why": "test"})
    assert [e.kind for e in await ledger.history("k1")][-3:] == ["replay", "job_unknown", "error"]


async def test_entries_are_found_by_key_prefix_job_report_and_account(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, _ = workers
    ledger = await open_worker()
    await claim(ledger, "abc1")
    await claim(ledger, "abc2", sid="IR9_9")
    await ledger.record_submitted("abc2", "job-2")
    assert (await ledger.find("abc1")).fingerprint == "abc1"  # type: ignore[union-attr]
    assert (await ledger.find("job-2")).fingerprint == "abc2"  # type: ignore[union-attr]
    assert await ledger.find("zzz") is None
    with pytest.raises(LedgerError, match="more than one"):
        await ledger.find("abc")
    assert await ledger.find("abc_") is None  # `_` is a character, not a wildcard
    assert [e.fingerprint for e in await ledger.entries(account=ACCOUNT)] == ["abc1"]
    other = ACCOUNT.replace("IR123", "IR9_9")
    assert [e.fingerprint for e in await ledger.entries(account=other)] == ["abc2"]
    assert len(await ledger.entries(report_id="r")) == 2
    assert set(await ledger.get_many(["abc1", "nope", "abc2", "abc1"])) == {"abc1", "abc2"}


async def test_auto_chunks_are_replaced_only_if_unchanged(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, _ = workers
    a, b = await open_worker(), await open_worker()
    one, two = [Chunk(DAY, DAY)], [Chunk(DAY, DAY + timedelta(days=1))]
    assert await a.auto_chunks(ACCOUNT, "e") == []
    assert await a.record_auto_chunks(ACCOUNT, "e", one, expected=[])
    assert not await b.record_auto_chunks(ACCOUNT, "e", two, expected=[])
    assert await b.record_auto_chunks(ACCOUNT, "e", two, expected=one)
    assert await a.auto_chunks(ACCOUNT, "e") == two
    assert await a.auto_chunks("other", "e") == []


# -- the counters -----------------------------------------------------------------------------


async def test_the_daily_quota_is_charged_up_to_its_limit_per_account(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, _ = workers
    a, b = await open_worker(), await open_worker()
    assert [await a.counters.charge("ReportExport", DAY, 2, "x") for _ in range(3)] == [1, 2, None]
    assert await b.counters.used("ReportExport", DAY, "x") == 2
    await b.counters.refund("ReportExport", DAY, "x")
    assert await a.counters.charge("ReportExport", DAY, 2, "x") == 2
    assert await a.counters.charge("ReportExport", DAY, 0, "y") is None
    assert await a.counters.charge("ReportExport", DAY + timedelta(days=1), 2, "x") == 1
    await a.counters.exhaust("ReportExport", DAY, 2, "z")  # the server said so: nothing more today
    assert await b.counters.spent("ReportExport", DAY, "z")
    assert not await b.counters.spent("ReportExport", DAY, "x")
    assert await b.counters.charge("ReportExport", DAY, 100, "z") is None
    assert await b.counters.used("ReportExport", DAY, "z") == 0
    assert await a.counters.quota_zone("x") is None
    await a.counters.learn_quota_zone(-420, "x")
    assert await b.counters.quota_zone("x") == -420
    assert [(acct, day, used) for acct, day, _, used in await b.counters.quota_history()] == [
        ("x", DAY, 2), ("x", DAY + timedelta(days=1), 1), ("z", DAY, 0),
    ]  # fmt: skip


async def test_many_workers_charging_at_once_never_pass_the_limit(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, _ = workers
    ledgers = [await open_worker() for _ in range(4)]
    counts: list[int | None] = []

    async def spend(ledger: LedgerStore) -> None:
        for _ in range(5):
            counts.append(await ledger.counters.charge("ReportExport", DAY, 7, "x"))

    async with anyio.create_task_group() as group:
        for ledger in ledgers:
            group.start_soon(spend, ledger)
    assert sorted(c for c in counts if c is not None) == list(range(1, 8))
    assert counts.count(None) == 20 - 7


async def test_the_hourly_bucket_is_one_for_every_worker(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, clock = workers
    ledgers = [await open_worker() for _ in range(3)]
    seen: list[HourlyWindow | None] = []

    def take(window: HourlyWindow | None) -> tuple[HourlyWindow, None]:
        seen.append(window)
        now = clock.now()
        return (window or HourlyWindow.fresh(100, now)).acquire(now, count=1)[0], None

    async with anyio.create_task_group() as group:
        for ledger in ledgers:
            for _ in range(4):
                group.start_soon(ledger.counters.hourly, "acct", take)
    assert seen.count(None) == 1  # the first call made the bucket, the others used it
    stored = await ledgers[0].counters.hourly("acct", lambda w: (w, w))  # type: ignore[arg-type,return-value]
    assert stored is not None
    assert stored.remaining == 100 - 12


async def test_the_counters_are_a_store_of_their_own_that_the_limiter_is_given(
    workers: tuple[Open, ManualClock],
) -> None:
    """The limiter counts through the ledger's counters, one object per ledger over its
    database; it is never given the ledger, whose records only the driver writes."""
    open_worker, clock = workers
    ledger = await open_worker()
    assert ledger.counters is ledger.counters
    assert not hasattr(ledger, "charge")  # the records' store has no quota calls of its own
    with pytest.raises(ConfigurationError) as refused:
        RateLimiter(store=ledger)  # type: ignore[arg-type]
    assert refused.value.setting == "store"
    assert "ledger.counters" in str(refused.value)
    limiter = RateLimiter(
        RateLimitPolicy(daily_report_export=2), clock=clock, store=ledger.counters
    )
    limiter.bind(ACCOUNT)
    charges = [await limiter.acquire(Endpoint.REPORT_EXPORT) for _ in range(2)]
    with pytest.raises(QuotaExhausted):
        await limiter.acquire(Endpoint.REPORT_EXPORT)
    await limiter.refund(charges[0])
    other = await open_worker()  # another worker reads the same counts
    assert await other.counters.used("ReportExport", clock.now().date(), ACCOUNT) == 1
    assert await ledger.entries() == []
    assert await ledger.unfinished() == []


# -- a store of the schema before the account column ---------------------------------------------

#: Rows written by the version before the `account` column: (fingerprint, SID, report, job id).
#: Two accounts reuse a job id; `ir123` differs from `IR123` only by case.
_OLD_ROWS = [
    ("old1", "IR123", "r", "job-1"),
    ("old2", "IR9_9", "r", "job-1"),
    ("old3", "IR123", "s", "job-3"),
    ("old4", "ir123", "r", "job-4"),
]


def _old_inserts() -> str:
    return ";".join(
        "INSERT INTO exports (fingerprint, canonical, endpoint, report_id, result_format, job_id, "
        f"created_at) VALUES ('{key}', '{canonical(sid, report)}', "
        f"'ReportExport', '{report}', 'CSV', '{job}', '2026-01-0{n}T00:00:00+00:00')"
        for n, (key, sid, report, job) in enumerate(_OLD_ROWS, start=1)
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_store_from_before_the_account_column_gets_it_filled_and_found_alike(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """An old store opens, its rows get their account from their canonical JSON, and every
    lookup by account finds the rows it found before (the case of a SID counts)."""
    if backend == "sqlite":
        path = tmp_path / "old.sqlite"
        with sqlite3.connect(path) as db:
            db.executescript(
                ";".join(MIGRATIONS[:5]) + ";" + _old_inserts() + ";PRAGMA user_version = 5"
            )
        db.close()
        spec = str(path)

        def accounts() -> list[tuple[str, str]]:
            with sqlite3.connect(path) as db:
                found = db.execute("SELECT fingerprint, account FROM exports ORDER BY 1").fetchall()
                indexes = [r[1] for r in db.execute("PRAGMA index_list(exports)")]
            db.close()
            assert "exports_account" in indexes
            return found
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = f"old_schema_{os.getpid()}"
        spec = server.create_database(name)
        server.psql(
            PG_MIGRATIONS[0] + ";CREATE TABLE reportexport_schema (version INTEGER NOT NULL);"
            "INSERT INTO reportexport_schema VALUES (1);" + _old_inserts(),
            database=name,
        )

        def accounts() -> list[tuple[str, str]]:
            text = server.psql("SELECT fingerprint, account FROM exports ORDER BY 1", name)
            return [tuple(line.split("|")) for line in text.splitlines()]  # type: ignore[misc]

    by_account: dict[str, list[str]] = {}  # what the rows' canonical JSON says
    for key, sid, _, _ in _OLD_ROWS:
        by_account.setdefault(ACCOUNT.replace("IR123", sid), []).append(key)
    job_1 = {ACCOUNT: "old1", ACCOUNT.replace("IR123", "IR9_9"): "old2"}

    async def lookups(ledger: LedgerStore) -> None:
        for account, keys in by_account.items():
            assert [e.fingerprint for e in await ledger.entries(account=account)] == keys
            of_r = [e.fingerprint for e in await ledger.entries("r", account=account)]
            assert of_r == [k for k in keys if k != "old3"]
            found = await ledger.find("job-1", account=account)
            assert (found and found.fingerprint) == job_1.get(account)

    clock = ManualClock(SANDBOX_START)
    if backend == "sqlite":  # read as it is first: the accounts are told apart as before
        async with open_ledger(spec, clock=clock, read_only=True) as reader:
            await lookups(reader)
    async with open_ledger(spec, clock=clock) as ledger:
        await lookups(ledger)
        await claim(ledger, "new1", sid="IR9_9")
        other = ACCOUNT.replace("IR123", "IR9_9")
        found = await ledger.entries("r", account=other)
        assert sorted(e.fingerprint for e in found) == ["new1", "old2"]
    expected = [(key, ACCOUNT.replace("IR123", sid)) for key, sid, _, _ in _OLD_ROWS]
    assert accounts() == sorted([*expected, ("new1", other)])


# -- the SQLite file ----------------------------------------------------------------------------


async def test_a_migrated_sqlite_file_has_the_tables_of_a_new_one(tmp_path: Path) -> None:
    """The schema is described once: a file of version 1 migrated step by step ends with the
    tables a new file gets at once."""
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.executescript(MIGRATIONS[0] + ";PRAGMA user_version = 1")
    db.close()
    async with Ledger(old), Ledger(tmp_path / "new.sqlite"):
        pass

    def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
        with sqlite3.connect(path) as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            found = {n: db.execute(f"PRAGMA table_info({n})").fetchall() for n in sorted(names)}
        db.close()
        return found

    assert tables(old) == tables(tmp_path / "new.sqlite")


async def test_a_read_only_ledger_reads_and_records_nothing(
    workers: tuple[Open, ManualClock],
) -> None:
    open_worker, _ = workers
    writer = await open_worker()
    await claim(writer, "k1")
    await writer.release_claim("k1")
    reader = await open_worker(read_only=True)
    assert (await reader.get("k1")) is not None
    writes = [
        claim(reader, "k2"),
        reader.take_lease("k1"),
        reader.renew_leases(),
        reader.release_leases(),
        reader.record_event("k1", "error"),
        reader.counters.charge("ReportExport", DAY, 5, "x"),
        reader.counters.hourly("x", lambda w: (HourlyWindow.fresh(5, SANDBOX_START), None)),
    ]
    for write in writes:
        with pytest.raises(LedgerError) as caught:
            await write
        assert caught.value.problem == "read-only"
    assert [e.kind for e in await writer.history("k1")] == ["intent"]
    assert (await writer.get("k1")).claimed_by is None  # type: ignore[union-attr]
