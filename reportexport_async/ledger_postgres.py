"""The ledger in PostgreSQL: the same records as the SQLite file (`ledger.py`), shared by every
process and host given the same URL, so that any command started on several machines cooperates
(claims are leases, the daily quotas and the hourly bucket of each account are counted here).

Driver: asyncpg, with its connection pool. It is asyncio-native (no thread per query), the
fastest of the maintained drivers, and its pool survives a server restart: a connection that
broke is replaced on the next acquire. Every read-modify-write is one transaction that locks the
rows it changes (`SELECT ... FOR UPDATE`, or one conditional `INSERT ... ON CONFLICT ... DO UPDATE
... WHERE`), never a lock held across an API call.

Round trips are what a call costs (each one a switch to the server's process, and a network
hop between hosts), so the calls a chunk makes on its way are one statement each, and one
statement is its own transaction (no BEGIN and COMMIT around it): a change and its history row
are one statement (`WITH changed AS (UPDATE ...) INSERT INTO events ...`), a tracker refresh's
statuses are one statement over arrays, and a claim or a lease that needs no decision in Python
(a new intent; a lease nobody else holds) is one conditional statement, the rarer cases (a
take-over) one transaction as before. The pool leaves the session as it is when a connection
comes back (`_keep_session`): the ledger sets no session state, so asyncpg's reset query would be
one more round trip per call for nothing. A chunk's life (claim, job id, status, lease, download)
is five round trips, and its share of the daily-quota charge and the hourly bucket about two.

Times are stored as ISO-8601 UTC text, as in the SQLite file: one row shape and one decoder
(`ledger._entry`) for both, and text that sorts as time. The schema is versioned in
`reportexport_schema`; migrations run under an advisory lock, so several workers starting at once
migrate once. A connection lost mid-run (a server restart, a fail-over) is retried for
`reconnect_for` seconds, each wait logged, before the ledger says the database is unreachable.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import asyncpg  # type: ignore[import-untyped]

from .clock import Clock, SystemClock
from .core.chunking import Chunk
from .core.models import Job, JobStatus
from .core.quota import HourlyWindow
from .errors import LedgerError, QuotaName
from .ledger import (
    CLAIM_TIMEOUT,
    INTENT_COLUMNS,
    LedgerEntry,
    LedgerEvent,
    _account_pattern,
    _entry,
    _intent_values,
    _time,
    lease_alive,
)
from .ledger_store import redact_url

__all__ = ["PG_MIGRATIONS", "PG_SCHEMA_VERSION", "PostgresLedger"]

log = logging.getLogger("reportexport_async.ledger")
T = TypeVar("T")

#: Each entry moves the PostgreSQL schema one version forward (the first one is the SQLite
#: file's schema 5 as a whole).
PG_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE exports (
        fingerprint   TEXT PRIMARY KEY,
        canonical     TEXT NOT NULL,
        endpoint      TEXT NOT NULL,
        report_id     TEXT,
        range_start   TEXT,
        range_end     TEXT,
        result_format TEXT NOT NULL,
        job_id        TEXT,
        status        TEXT,
        records       BIGINT,
        created_at    TEXT NOT NULL,
        claimed_by    TEXT,
        claimed_at    TEXT,
        submitted_at  TEXT,
        completed_at  TEXT,
        status_at     TEXT,
        file_path     TEXT,
        file_size     BIGINT,
        file_sha256   TEXT,
        downloaded_at TEXT,
        replays       INTEGER NOT NULL DEFAULT 0,
        last_replay_at TEXT,
        lease_until   TEXT
    );
    CREATE INDEX exports_job ON exports(job_id);
    CREATE INDEX exports_report ON exports(report_id);
    CREATE INDEX exports_claimed ON exports(claimed_by);
    CREATE TABLE events (
        id          BIGSERIAL PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        at          TEXT NOT NULL,
        kind        TEXT NOT NULL,
        job_id      TEXT,
        detail      TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_fingerprint ON events(fingerprint);
    CREATE INDEX events_job ON events(job_id);
    CREATE TABLE quota_use (
        account TEXT NOT NULL,
        day     TEXT NOT NULL,
        name    TEXT NOT NULL,
        used    INTEGER NOT NULL,
        spent   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, day, name)
    );
    CREATE TABLE quota_zone (
        account            TEXT PRIMARY KEY,
        utc_offset_minutes INTEGER NOT NULL
    );
    CREATE TABLE auto_chunks (
        account     TEXT NOT NULL,
        export      TEXT NOT NULL,
        chunks      TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (account, export)
    );
    CREATE TABLE hourly_bucket (
        account   TEXT PRIMARY KEY,
        lim       INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        resets_at TEXT NOT NULL
    )
    """,
)
PG_SCHEMA_VERSION = len(PG_MIGRATIONS)
_MIGRATION_LOCK = 0x7265_7870  # any constant: the advisory lock key of migrations

#: What a lost connection looks like: retried, the transaction run again from its start.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
)

#: A transaction the server rolled back to break a deadlock or a serialization conflict: run
#: again, up to this many times.
_CONFLICTS: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
_CONFLICT_TRIES = 10

Conn = Any  # asyncpg's Connection (its stubs are not shipped)


def _day(value: date) -> str:
    return value.isoformat()


def _detail(detail: dict[str, Any] | None) -> str:
    """An event's detail as stored."""
    return json.dumps(detail or {}, sort_keys=True)


async def _keep_session(conn: Conn) -> None:
    """What the pool does to a connection coming back, after asyncpg rolls back a transaction
    left open: nothing. The ledger leaves no session state (no SET, LISTEN, cursor or session
    advisory lock: its advisory locks are all transaction-scoped), so asyncpg's default reset
    (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) would be one more round
    trip per call, for nothing."""


#: How long opening the ledger tries to reach a server that never answered (seconds): a wrong
#: URL or a server that is down ends the run quickly, before any API call; a server lost once
#: the run is under way is waited for `reconnect_for` (a restart).
OPEN_RETRY_FOR = 5.0


#: `record_statuses` in one statement. Parameters: the arrays of the states seen, in order
#: ($1 fingerprints, $2 job ids, $3 statuses, $4 records, $5 completion times, $6 event
#: details), and $7 the time. The rows are locked in fingerprint order first (`locked`: read
#: once, being referenced twice, and before the UPDATE changes them, as the UPDATE joins it);
#: a fingerprint seen twice ends with its last state, its counts the last ones given
#: (COALESCE, as one UPDATE after another would).
_RECORD_STATUSES = """
WITH seen AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])
        WITH ORDINALITY AS s(fingerprint, job_id, status, records, completed, detail, n)
), locked AS (
    SELECT fingerprint, status, job_id FROM exports WHERE fingerprint = ANY($1::text[])
    ORDER BY fingerprint FOR UPDATE
), last AS (
    SELECT fingerprint,
        (array_agg(job_id ORDER BY n DESC))[1] AS job_id,
        (array_agg(status ORDER BY n DESC))[1] AS status,
        (array_agg(records ORDER BY n DESC) FILTER (WHERE records IS NOT NULL))[1] AS records,
        (array_agg(completed ORDER BY n DESC) FILTER (WHERE completed IS NOT NULL))[1]
            AS completed
    FROM seen GROUP BY fingerprint
), changed AS (
    UPDATE exports e SET job_id = last.job_id, status = last.status,
        records = COALESCE(last.records, e.records), status_at = $7,
        completed_at = COALESCE(last.completed, e.completed_at)
    FROM last JOIN locked USING (fingerprint) WHERE e.fingerprint = last.fingerprint
), ordered AS (
    SELECT seen.*, row_number() OVER w AS k, lag(status) OVER w AS prev_status,
        lag(job_id) OVER w AS prev_job
    FROM seen WINDOW w AS (PARTITION BY fingerprint ORDER BY n)
)
INSERT INTO events (fingerprint, at, kind, job_id, detail)
SELECT o.fingerprint, $7, 'status', o.job_id, o.detail
FROM ordered o LEFT JOIN locked l USING (fingerprint)
WHERE CASE WHEN o.k = 1 THEN (l.status, l.job_id) IS DISTINCT FROM (o.status, o.job_id)
    ELSE (o.prev_status, o.prev_job) IS DISTINCT FROM (o.status, o.job_id) END
ORDER BY o.n
"""


class PostgresLedger:
    """A ledger in the PostgreSQL database at `url`. Use as an async context manager (or
    `open()`/`close()`), like `ledger.Ledger`, whose methods it shares (`LedgerStore`)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        read_only: bool = False,
        lease: timedelta = CLAIM_TIMEOUT,
        pool_size: int = 4,
        reconnect_for: float = 60.0,
        open_retry_for: float = OPEN_RETRY_FOR,
    ) -> None:
        self.url = url
        self.path: Path | str = redact_url(url)
        self.clock: Clock = clock or SystemClock()
        self.read_only = read_only
        self.lease = lease
        self.pool_size = pool_size
        self.reconnect_for = reconnect_for
        self.open_retry_for = open_retry_for
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool: Any = None

    #: The class of the pool's connections (a subclass can watch the statements sent).
    connection_class: type[Any] = asyncpg.Connection

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"PostgresLedger({self.path!r}{mode})"

    async def __aenter__(self) -> PostgresLedger:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await self._retrying(
                lambda: asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    command_timeout=60,
                    connection_class=self.connection_class,
                    reset=_keep_session,
                ),
                within=min(self.reconnect_for, self.open_retry_for),
            )
        except asyncpg.InvalidCatalogNameError as exc:
            raise LedgerError(
                f"the database of the ledger {self.path!r} does not exist; create it "
                "(CREATE DATABASE ...) or give another URL",
                problem="missing",
            ) from exc
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            raise LedgerError(
                f"the database server of the ledger {self.path!r} refused the login "
                f"({type(exc).__name__}); check the user and password in the URL",
                problem="other",
            ) from exc
        except asyncpg.PostgresError as exc:
            raise LedgerError(f"ledger {self.path!r}: {exc}") from exc
        self._pool = pool
        try:
            if not self.read_only:
                await self._migrate()
            else:
                await self._check_version()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await pool.close()
                except _CONNECTION_ERRORS:
                    pool.terminate()

    async def _retrying(
        self, attempt: Callable[[], Awaitable[T]], *, within: float | None = None
    ) -> T:
        """Run `attempt`, again while the server cannot be reached, for `within` seconds
        (default `reconnect_for`; real time: a database outage is not simulated time)."""
        limit = self.reconnect_for if within is None else within
        started = time.monotonic()
        pause = 0.1
        while True:
            try:
                return await attempt()
            except _CONNECTION_ERRORS as exc:
                waited = time.monotonic() - started
                if waited >= limit:
                    raise LedgerError(
                        f"cannot reach the database of the ledger {self.path!r} "
                        f"({type(exc).__name__}: {exc}) for {waited:.0f} s; check that the "
                        "server runs and the URL is right, then run again (nothing is lost: "
                        "the next run resumes)",
                        problem="other",
                    ) from exc
                log.warning(
                    "the ledger's database %s is unreachable (%s); trying again in %.1f s "
                    "(giving up %.0f s after the first failure)",
                    self.path,
                    type(exc).__name__,
                    pause,
                    limit,
                )
                await anyio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _version(self, conn: Conn) -> int:
        exists = await conn.fetchval("SELECT to_regclass('reportexport_schema') IS NOT NULL")
        if not exists:
            return 0
        return int(await conn.fetchval("SELECT version FROM reportexport_schema"))

    def _refuse_newer(self, version: int) -> None:
        if version > PG_SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger {self.path!r} has schema version {version}, newer than this "
                f"version of reportexport_async understands ({PG_SCHEMA_VERSION}); upgrade "
                "reportexport_async, or use another database",
                problem="newer",
            )

    async def _check_version(self) -> None:
        async def work(conn: Conn) -> None:
            self._refuse_newer(await self._version(conn))

        await self._run(work, write=False)

    async def _migrate(self) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            version = await self._version(conn)
            self._refuse_newer(version)
            if version == 0:
                await conn.execute("CREATE TABLE reportexport_schema (version INTEGER NOT NULL)")
                await conn.execute("INSERT INTO reportexport_schema VALUES (0)")
            for number in range(version, PG_SCHEMA_VERSION):
                await conn.execute(PG_MIGRATIONS[number])
            if version != PG_SCHEMA_VERSION:
                await conn.execute("UPDATE reportexport_schema SET version = $1", PG_SCHEMA_VERSION)

        await self._run(work, write=True)

    async def _run(
        self, work: Callable[[Conn], Awaitable[T]], *, write: bool = True, one: bool = False
    ) -> T:
        """Run `work` in one transaction on a pooled connection, again from its start if the
        connection is lost. `one`: `work` is a single statement (atomic by itself): no BEGIN and
        COMMIT around it, one round trip instead of three."""
        pool = self._pool
        if pool is None:
            raise LedgerError("the ledger is not open: use `async with` first")
        if write and self.read_only:
            raise LedgerError(
                f"the ledger {self.path!r} is open read-only: nothing can be recorded",
                problem="read-only",
            )

        async def attempt() -> T:
            for tries in range(1, _CONFLICT_TRIES + 1):
                try:
                    async with pool.acquire() as conn:
                        if one:
                            return await work(conn)
                        async with conn.transaction():
                            return await work(conn)
                except _CONFLICTS:
                    # Two transactions waited for each other; the server broke the tie by
                    # rolling this one back: run it again.
                    if tries == _CONFLICT_TRIES:
                        raise
                    await anyio.sleep(random.uniform(0.0, 0.01 * tries))
            raise AssertionError("unreachable")  # pragma: no cover

        try:
            return await self._retrying(attempt)
        except asyncpg.PostgresError as exc:
            raise LedgerError(f"ledger {self.path!r}: {exc}") from exc

    def _now(self) -> str:
        return _time(self.clock.now()) or ""

    @staticmethod
    async def _event(
        conn: Conn,
        fingerprint: str,
        at: str,
        kind: str,
        job_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await conn.execute(
            "INSERT INTO events (fingerprint, at, kind, job_id, detail) "
            "VALUES ($1, $2, $3, $4, $5)",
            fingerprint,
            at,
            kind,
            job_id,
            _detail(detail),
        )

    # -- exports ------------------------------------------------------------------------------

    async def get(self, fingerprint: str) -> LedgerEntry | None:
        async def work(conn: Conn) -> LedgerEntry | None:
            row = await conn.fetchrow("SELECT * FROM exports WHERE fingerprint = $1", fingerprint)
            return None if row is None else _entry(row)

        return await self._run(work, write=False, one=True)

    async def get_many(self, fingerprints: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of `fingerprints` that exist, in one round trip."""
        keys = list(dict.fromkeys(fingerprints))

        async def work(conn: Conn) -> dict[str, LedgerEntry]:
            rows = await conn.fetch("SELECT * FROM exports WHERE fingerprint = ANY($1)", keys)
            return {row["fingerprint"]: _entry(row) for row in rows}

        return await self._run(work, write=False, one=True)

    async def claim(
        self,
        fingerprint: str,
        canonical: str,
        *,
        endpoint: str,
        report_id: str | None,
        range_start: date | None,
        range_end: date | None,
        result_format: str,
    ) -> tuple[LedgerEntry, bool]:
        """As `ledger.Ledger.claim`: the write-ahead intent, or the lease of a known job."""
        now = self.clock.now()
        stamp, until = _time(now) or "", _time(now + self.lease)
        insert = (
            f"INSERT INTO exports ({INTENT_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (fingerprint) DO NOTHING RETURNING *"
        )
        values = _intent_values(
            fingerprint, canonical, endpoint, report_id, range_start, range_end, result_format,
            stamp=stamp, owner=self.owner, until=until,
        )  # fmt: skip

        async def new_intent(conn: Conn) -> Any:
            # The common case, one statement: the intent and its history row, or nothing.
            return await conn.fetchrow(
                f"WITH claimed AS ({insert}), noted AS (INSERT INTO events "
                "(fingerprint, at, kind, job_id, detail) "
                "SELECT fingerprint, $8, 'intent', NULL, $12 FROM claimed) "
                "SELECT * FROM claimed",
                *values,
                _detail({"owner": self.owner}),
            )

        inserted = await self._run(new_intent, one=True)
        if inserted is not None:
            return _entry(inserted), True

        async def work(conn: Conn) -> tuple[LedgerEntry, bool]:
            # The export is known (rows are never deleted): one transaction decides.
            inserted = await conn.fetchrow(insert, *values)
            if inserted is not None:
                await self._event(conn, fingerprint, stamp, "intent", None, {"owner": self.owner})
                return _entry(inserted), True
            row = await conn.fetchrow(
                "SELECT * FROM exports WHERE fingerprint = $1 FOR UPDATE", fingerprint
            )
            entry = _entry(row)
            if lease_alive(entry, self.owner, now, self.lease):
                return entry, False
            if entry.job_id is not None:
                return await self._lease_to_me(conn, entry, stamp, until), False
            fresh = await conn.fetchrow(
                "UPDATE exports SET claimed_by = $1, claimed_at = $2, lease_until = $3 "
                "WHERE fingerprint = $4 RETURNING *",
                self.owner,
                stamp,
                until,
                fingerprint,
            )
            detail = {"owner": self.owner, "took_over": entry.claimed_by}
            await self._event(conn, fingerprint, stamp, "intent", None, detail)
            return _entry(fresh), True

        return await self._run(work)

    async def _lease_to_me(
        self, conn: Conn, entry: LedgerEntry, stamp: str, until: str | None
    ) -> LedgerEntry:
        fresh = await conn.fetchrow(
            "UPDATE exports SET claimed_by = $1, claimed_at = $2, lease_until = $3 "
            "WHERE fingerprint = $4 RETURNING *",
            self.owner,
            stamp,
            until,
            entry.fingerprint,
        )
        if entry.claimed_by not in (None, self.owner):
            detail = {"owner": self.owner, "took_over": entry.claimed_by}
            await self._event(conn, entry.fingerprint, stamp, "lease", entry.job_id, detail)
        return _entry(fresh)

    async def take_lease(self, fingerprint: str) -> tuple[LedgerEntry | None, bool]:
        now = self.clock.now()
        stamp, until = _time(now) or "", _time(now + self.lease)

        async def free(conn: Conn) -> Any:
            # The common case, one statement: a lease nobody else holds (mine, or nobody's) is
            # free whatever `lease_alive` would say, and taking it records no event.
            return await conn.fetchrow(
                "UPDATE exports SET claimed_by = $1, claimed_at = $2, lease_until = $3 "
                "WHERE fingerprint = $4 AND (claimed_by IS NULL OR claimed_by = $1) RETURNING *",
                self.owner,
                stamp,
                until,
                fingerprint,
            )

        taken = await self._run(free, one=True)
        if taken is not None:
            return _entry(taken), True

        async def work(conn: Conn) -> tuple[LedgerEntry | None, bool]:
            row = await conn.fetchrow(
                "SELECT * FROM exports WHERE fingerprint = $1 FOR UPDATE", fingerprint
            )
            if row is None:
                return None, False
            entry = _entry(row)
            if lease_alive(entry, self.owner, now, self.lease):
                return entry, False
            return await self._lease_to_me(conn, entry, stamp, until), True

        return await self._run(work)

    async def renew_leases(self) -> int:
        until = _time(self.clock.now() + self.lease)

        async def work(conn: Conn) -> int:
            # Rows locked in fingerprint order, as every other multi-row write does.
            status = await conn.execute(
                "UPDATE exports SET lease_until = $1 WHERE fingerprint IN (SELECT fingerprint "
                "FROM exports WHERE claimed_by = $2 ORDER BY fingerprint FOR UPDATE)",
                until,
                self.owner,
            )
            return int(status.split()[-1])

        return await self._run(work, one=True)

    async def _release(self, where: str, *args: object) -> int:
        """Give back this worker's claims on the rows `where` selects (its parameters `args`
        after the owner, `$1`); the number of rows released."""

        async def work(conn: Conn) -> int:
            status = await conn.execute(
                "UPDATE exports SET claimed_by = NULL, claimed_at = NULL, lease_until = NULL "
                f"WHERE {where}",
                self.owner,
                *args,
            )
            return int(status.split()[-1])

        return await self._run(work, one=True)

    async def release_lease(self, fingerprint: str) -> None:
        await self._release("fingerprint = $2 AND claimed_by = $1", fingerprint)

    async def release_leases(self) -> int:
        # Rows locked in fingerprint order, as every other multi-row write does.
        return await self._release(
            "fingerprint IN (SELECT fingerprint FROM exports WHERE claimed_by = $1 "
            "ORDER BY fingerprint FOR UPDATE)"
        )

    async def release_claim(self, fingerprint: str) -> None:
        await self._release("fingerprint = $2 AND claimed_by = $1 AND job_id IS NULL", fingerprint)

    async def record_submitted(self, fingerprint: str, job_id: str) -> None:
        stamp = self._now()
        until = _time(self.clock.now() + self.lease)

        async def work(conn: Conn) -> None:
            await conn.execute(
                "WITH changed AS (UPDATE exports SET job_id = $1, status = $2, submitted_at = $3, "
                "status_at = $3, lease_until = CASE WHEN claimed_by = $4 THEN $5 "
                "ELSE lease_until END WHERE fingerprint = $6) "
                "INSERT INTO events (fingerprint, at, kind, job_id, detail) "
                "VALUES ($6, $3, 'submitted', $1, $7)",
                job_id,
                JobStatus.QUEUED.value,
                stamp,
                self.owner,
                until,
                fingerprint,
                _detail(None),
            )

        await self._run(work, one=True)

    async def forget_job(self, fingerprint: str, job_id: str) -> bool:
        stamp = self._now()

        async def work(conn: Conn) -> bool:
            # One history row per row cleared: the INSERT's count is the UPDATE's.
            status = await conn.execute(
                "WITH cleared AS (UPDATE exports SET job_id = NULL, status = NULL, "
                "records = NULL, claimed_by = NULL, claimed_at = NULL, lease_until = NULL, "
                "submitted_at = NULL, completed_at = NULL, status_at = NULL, file_path = NULL, "
                "file_size = NULL, file_sha256 = NULL, downloaded_at = NULL "
                "WHERE fingerprint = $1 AND job_id = $2 RETURNING fingerprint) "
                "INSERT INTO events (fingerprint, at, kind, job_id, detail) "
                "SELECT fingerprint, $3, 'job_unknown', $2, $4 FROM cleared",
                fingerprint,
                job_id,
                stamp,
                _detail(None),
            )
            return int(status.split()[-1]) > 0

        return await self._run(work, one=True)

    async def record_status(self, fingerprint: str, job: Job) -> None:
        await self.record_statuses([(fingerprint, job)])

    async def record_statuses(self, seen: Sequence[tuple[str, Job]]) -> None:
        """A tracker refresh's statuses in one statement: the rows locked in fingerprint order,
        each set to its last state seen, and a `status` event for each state that differs from
        the one before it (the row's, or the previous one seen of the same export)."""
        if not seen:
            return
        stamp = self._now()
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
        for fingerprint, job in seen:
            done = job.status is JobStatus.COMPLETED
            detail = {"status": job.status.value, "records": job.records_processed}
            row = (
                fingerprint,
                job.id,
                job.status.value,
                job.records_processed,
                (_time(job.completed_date) or stamp) if done else None,
                _detail(detail),
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)

        async def work(conn: Conn) -> None:
            await conn.execute(_RECORD_STATUSES, *columns, stamp)

        await self._run(work, one=True)

    async def record_download(
        self, fingerprint: str, job_id: str, path: Path, size: int, sha256: str
    ) -> None:
        stamp = self._now()
        done = JobStatus.COMPLETED.value

        async def work(conn: Conn) -> None:
            # One statement: the row locked, changed, and its history rows in order (the
            # status it reached, if it was recorded as another one, then the download).
            await conn.execute(
                "WITH before AS (SELECT fingerprint, status FROM exports WHERE fingerprint = $7 "
                "FOR UPDATE), changed AS (UPDATE exports e SET job_id = $1, status = $2, "
                "status_at = $3, completed_at = COALESCE(e.completed_at, $3), file_path = $4, "
                "file_size = $5, file_sha256 = $6, downloaded_at = $3, claimed_by = NULL, "
                "claimed_at = NULL, lease_until = NULL FROM before b "
                "WHERE e.fingerprint = b.fingerprint) "
                "INSERT INTO events (fingerprint, at, kind, job_id, detail) "
                "SELECT $7, $3, kind, $1, detail FROM ("
                "SELECT 1 AS n, 'status'::text AS kind, $8::text AS detail FROM before "
                "WHERE status <> $2 UNION ALL SELECT 2, 'download', $9) noted ORDER BY n",
                job_id,
                done,
                stamp,
                str(path),
                size,
                sha256,
                fingerprint,
                _detail({"status": done}),
                _detail({"path": str(path), "size": size, "sha256": sha256}),
            )

        await self._run(work, one=True)

    async def record_replay(
        self, fingerprint: str, old_job_id: str, job: Job, *, rule: str
    ) -> None:
        stamp = self._now()

        async def work(conn: Conn) -> None:
            await conn.execute(
                "WITH changed AS (UPDATE exports SET job_id = $1, status = $2, status_at = $3, "
                "submitted_at = $3, replays = replays + 1, last_replay_at = $3, "
                "completed_at = NULL, file_sha256 = NULL, file_size = NULL, downloaded_at = NULL "
                "WHERE fingerprint = $4) INSERT INTO events (fingerprint, at, kind, job_id, "
                "detail) VALUES ($4, $3, 'replay', $1, $5)",
                job.id,
                job.status.value,
                stamp,
                fingerprint,
                _detail({"rule": rule, "old_job_id": old_job_id, "status": job.status.value}),
            )

        await self._run(work, one=True)

    async def record_event(
        self,
        fingerprint: str,
        kind: str,
        job_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        stamp = self._now()

        async def work(conn: Conn) -> None:
            await self._event(conn, fingerprint, stamp, kind, job_id, detail)

        await self._run(work, one=True)

    async def replays_since(self, fingerprint: str, since: datetime) -> int:
        async def work(conn: Conn) -> int:
            return int(
                await conn.fetchval(
                    "SELECT COUNT(*) FROM events WHERE fingerprint = $1 AND kind = 'replay' "
                    "AND at >= $2",
                    fingerprint,
                    _time(since),
                )
            )

        return await self._run(work, write=False, one=True)

    async def entries(
        self, report_id: str | None = None, *, account: str | None = None
    ) -> list[LedgerEntry]:
        where, params = ["TRUE"], list[Any]()
        if report_id is not None:
            params.append(report_id)
            where.append(f"report_id = ${len(params)}")
        if account is not None:
            params.append(_account_pattern(account))
            where.append(f"canonical LIKE ${len(params)}")  # backslash escapes, as in SQLite
        order = "created_at, fingerprint" if report_id is None else "range_start, created_at"
        query = f"SELECT * FROM exports WHERE {' AND '.join(where)} ORDER BY {order}"

        async def work(conn: Conn) -> list[LedgerEntry]:
            found = [_entry(row) for row in await conn.fetch(query, *params)]
            return found if account is None else [e for e in found if e.account == account]

        return await self._run(work, write=False, one=True)

    async def unfinished(self) -> list[LedgerEntry]:
        finals = [s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)]

        async def work(conn: Conn) -> list[LedgerEntry]:
            rows = await conn.fetch(
                "SELECT * FROM exports WHERE job_id IS NOT NULL AND "
                "(status IS NULL OR NOT (status = ANY($1)))",
                finals,
            )
            return [_entry(row) for row in rows]

        return await self._run(work, write=False, one=True)

    async def find(self, key: str, *, account: str | None = None) -> LedgerEntry | None:
        query = (
            "SELECT * FROM exports WHERE (fingerprint = $1 OR job_id = $1 OR fingerprint LIKE $2)"
        )
        params = [key, key.replace("%", r"\%").replace("_", r"\_") + "%"]
        if account is not None:
            query += " AND canonical LIKE $3"  # backslash escapes, as in SQLite
            params.append(_account_pattern(account))

        async def work(conn: Conn) -> LedgerEntry | None:
            found = [_entry(row) for row in await conn.fetch(query, *params)]
            found = [e for e in found if account is None or e.account == account]
            if len(found) > 1:
                raise LedgerError(f"{key!r} matches more than one entry; give more characters")
            return found[0] if found else None

        return await self._run(work, write=False, one=True)

    async def history(self, key: str) -> list[LedgerEvent]:
        entry = await self.find(key)
        if entry is None:
            return []

        async def work(conn: Conn) -> list[LedgerEvent]:
            rows = await conn.fetch(
                "SELECT * FROM events WHERE fingerprint = $1 ORDER BY id", entry.fingerprint
            )
            return [
                LedgerEvent(
                    fingerprint=row["fingerprint"],
                    at=datetime.fromisoformat(row["at"]),
                    kind=row["kind"],
                    job_id=row["job_id"],
                    detail=json.loads(row["detail"]),
                )
                for row in rows
            ]

        return await self._run(work, write=False, one=True)

    # -- the chunks `chunk="auto"` chose --------------------------------------------------------

    @staticmethod
    async def _stored_chunks(conn: Conn, account: str, export: str, lock: bool) -> list[Chunk]:
        text = await conn.fetchval(
            "SELECT chunks FROM auto_chunks WHERE account = $1 AND export = $2"
            + (" FOR UPDATE" if lock else ""),
            account,
            export,
        )
        if text is None:
            return []
        try:
            return [
                Chunk(date.fromisoformat(a), date.fromisoformat(b)) for a, b in json.loads(text)
            ]
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"the auto chunks of {export} are damaged: {exc}") from exc

    async def auto_chunks(self, account: str, export: str) -> list[Chunk]:
        async def work(conn: Conn) -> list[Chunk]:
            return await self._stored_chunks(conn, account, export, lock=False)

        return await self._run(work, write=False, one=True)

    async def record_auto_chunks(
        self, account: str, export: str, chunks: Sequence[Chunk], *, expected: Sequence[Chunk]
    ) -> bool:
        stamp = self._now()
        text = json.dumps([[c.start.isoformat(), c.end.isoformat()] for c in chunks])

        async def work(conn: Conn) -> bool:
            # Serialise writers of this record: the row may not exist yet to be locked.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", account + export)
            if await self._stored_chunks(conn, account, export, lock=True) != list(expected):
                return False
            await conn.execute(
                "INSERT INTO auto_chunks (account, export, chunks, recorded_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (account, export) DO UPDATE SET "
                "chunks = excluded.chunks, recorded_at = excluded.recorded_at",
                account,
                export,
                text,
                stamp,
            )
            return True

        return await self._run(work)

    # -- daily quotas and the hourly bucket ---------------------------------------------------

    async def used(self, name: QuotaName, day: date, account: str = "") -> int:
        async def work(conn: Conn) -> int:
            used = await conn.fetchval(
                "SELECT used FROM quota_use WHERE account = $1 AND day = $2 AND name = $3",
                account,
                _day(day),
                name,
            )
            return 0 if used is None else int(used)

        return await self._run(work, write=False, one=True)

    async def spent(self, name: QuotaName, day: date, account: str = "") -> bool:
        async def work(conn: Conn) -> bool:
            spent = await conn.fetchval(
                "SELECT spent FROM quota_use WHERE account = $1 AND day = $2 AND name = $3",
                account,
                _day(day),
                name,
            )
            return bool(spent)

        return await self._run(work, write=False, one=True)

    async def charge(self, name: QuotaName, day: date, limit: int, account: str = "") -> int | None:
        """One statement, one round trip: the row's lock makes the check and the count one step
        for every worker on the account."""
        if limit <= 0:
            return None

        async def work(conn: Conn) -> int | None:
            used = await conn.fetchval(
                "INSERT INTO quota_use AS q (account, day, name, used) VALUES ($1, $2, $3, 1) "
                "ON CONFLICT (account, day, name) DO UPDATE SET used = q.used + 1 "
                "WHERE q.used < $4 AND q.spent = 0 RETURNING used",
                account,
                _day(day),
                name,
                limit,
            )
            return None if used is None else int(used)

        return await self._run(work, one=True)

    async def exhaust(self, name: QuotaName, day: date, limit: int, account: str = "") -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO quota_use (account, day, name, used, spent) VALUES ($1, $2, $3, 0, 1) "
                "ON CONFLICT (account, day, name) DO UPDATE SET spent = 1",
                account,
                _day(day),
                name,
            )

        await self._run(work, one=True)

    async def refund(self, name: QuotaName, day: date, account: str = "") -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(
                "UPDATE quota_use SET used = used - 1 "
                "WHERE account = $1 AND day = $2 AND name = $3 AND used > 0",
                account,
                _day(day),
                name,
            )

        await self._run(work, one=True)

    async def quota_zone(self, account: str = "") -> int | None:
        async def work(conn: Conn) -> int | None:
            minutes = await conn.fetchval(
                "SELECT utc_offset_minutes FROM quota_zone WHERE account = $1", account
            )
            return None if minutes is None else int(minutes)

        return await self._run(work, write=False, one=True)

    async def learn_quota_zone(self, minutes: int, account: str = "") -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO quota_zone (account, utc_offset_minutes) VALUES ($1, $2) "
                "ON CONFLICT (account) DO UPDATE "
                "SET utc_offset_minutes = excluded.utc_offset_minutes",
                account,
                minutes,
            )

        await self._run(work, one=True)

    async def quota_history(self) -> Sequence[tuple[str, date, str, int]]:
        async def work(conn: Conn) -> list[tuple[str, date, str, int]]:
            rows = await conn.fetch(
                "SELECT account, day, name, used FROM quota_use ORDER BY account, day, name"
            )
            return [
                (r["account"], date.fromisoformat(r["day"]), r["name"], int(r["used"]))
                for r in rows
            ]

        return await self._run(work, write=False, one=True)

    async def hourly(
        self, account: str, change: Callable[[HourlyWindow | None], tuple[HourlyWindow, T]]
    ) -> T:
        async def work(conn: Conn) -> T:
            row = await conn.fetchrow(
                "SELECT lim, remaining, resets_at FROM hourly_bucket WHERE account = $1 FOR UPDATE",
                account,
            )
            if row is None:  # the first call of this account: make the row, then lock it
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('hourly' || $1))", account
                )
                row = await conn.fetchrow(
                    "SELECT lim, remaining, resets_at FROM hourly_bucket WHERE account = $1 "
                    "FOR UPDATE",
                    account,
                )
            window = (
                None
                if row is None
                else HourlyWindow(
                    int(row["lim"]), int(row["remaining"]), datetime.fromisoformat(row["resets_at"])
                )
            )
            new, answer = change(window)
            if new != window:
                await conn.execute(
                    "INSERT INTO hourly_bucket (account, lim, remaining, resets_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (account) DO UPDATE SET "
                    "lim = excluded.lim, remaining = excluded.remaining, "
                    "resets_at = excluded.resets_at",
                    account,
                    new.limit,
                    new.remaining,
                    _time(new.resets_at.astimezone(UTC)),
                )
            return answer

        return await self._run(work)
