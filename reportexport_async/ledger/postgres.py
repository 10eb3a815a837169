"""The ledger in PostgreSQL: the same records as the SQLite file (`sqlite.py`), shared by every
process and host given the same URL, so that any command started on several machines cooperates
(claims are leases, the daily quotas and the hourly bucket of each account are counted here). What
is recorded, and how, is `base.SharedLedger`'s; this module connects, runs the calls, and sends
some of them as one statement.

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
take-over) one transaction as on SQLite. The pool leaves the session as it is when a connection
comes back (`_keep_session`): the ledger sets no session state, so asyncpg's reset query would be
one more round trip per call for nothing. A chunk's life (claim, job id, status, lease, download)
is five round trips, and its share of the daily-quota charge and the hourly bucket about two.

The schema is versioned in `reportexport_schema`; migrations run under an advisory lock, so
several workers starting at once migrate once. A connection lost mid-run (a server restart, a
fail-over, a cut network) is retried for `reconnect_for` seconds, each wait logged, before the
ledger says the database is unreachable.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import asyncpg  # type: ignore[import-untyped]

from ..core.models import Job, JobStatus
from ..errors import LedgerError
from ..machine.clock import Clock, SystemClock
from .base import INTENT, SharedLedger
from .records import CLAIM_TIMEOUT, LedgerEntry, Row, entry_of, new_owner, redact_url, stamp
from .schema import PG_MIGRATIONS, PG_SCHEMA_VERSION
from .sql import Tx, detail

__all__ = ["OPEN_RETRY_FOR", "PG_MIGRATIONS", "PG_SCHEMA_VERSION", "PostgresLedger"]

log = logging.getLogger("reportexport_async.ledger")
T = TypeVar("T")

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


class PostgresLedger(SharedLedger):
    """A ledger in the PostgreSQL database at `url`. Use as an async context manager (or
    `open()`/`close()`), like `sqlite.Ledger`, whose methods it shares (`LedgerStore`)."""

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
        self.owner = new_owner()
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

    async def _version(self, tx: Tx) -> int:
        if not await tx.value("SELECT to_regclass('reportexport_schema') IS NOT NULL"):
            return 0
        return int(await tx.value("SELECT version FROM reportexport_schema"))

    def _refuse_newer(self, version: int) -> None:
        if version > PG_SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger {self.path!r} has schema version {version}, newer than this "
                f"version of reportexport_async understands ({PG_SCHEMA_VERSION}); upgrade "
                "reportexport_async, or use another database",
                problem="newer",
            )

    async def _check_version(self) -> None:
        async def work(tx: Tx) -> None:
            self._refuse_newer(await self._version(tx))

        await self._run(work, write=False)

    async def _migrate(self) -> None:
        async def work(tx: Tx) -> None:
            await tx.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            version = await self._version(tx)
            self._refuse_newer(version)
            if version == 0:
                await tx.execute("CREATE TABLE reportexport_schema (version INTEGER NOT NULL)")
                await tx.execute("INSERT INTO reportexport_schema VALUES (0)")
            for number in range(version, PG_SCHEMA_VERSION):
                await tx.execute(PG_MIGRATIONS[number])
            if version != PG_SCHEMA_VERSION:
                await tx.execute("UPDATE reportexport_schema SET version = $1", PG_SCHEMA_VERSION)

        await self._run(work, write=True)

    async def _run(
        self, work: Callable[[Tx], Coroutine[Any, Any, T]], *, write: bool = True, one: bool = False
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
                            return await work(_PgTx(conn))
                        async with conn.transaction():
                            return await work(_PgTx(conn))
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

    # -- calls sent as one statement --------------------------------------------------------

    async def get_many(self, fingerprints: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of `fingerprints` that exist, in one round trip."""
        keys = list(dict.fromkeys(fingerprints))
        rows = await self._rows("SELECT * FROM exports WHERE fingerprint = ANY($1)", keys)
        return {row["fingerprint"]: entry_of(row) for row in rows}

    async def _new_intent(self, values: tuple[Any, ...]) -> Row | None:
        """One statement: the intent and its history row, or nothing (the export is known)."""
        return await self._run(
            lambda tx: tx.row(
                f"WITH claimed AS ({INTENT}), noted AS (INSERT INTO events "
                "(fingerprint, at, kind, job_id, detail) "
                "SELECT fingerprint, $8, 'intent', NULL, $12 FROM claimed) "
                "SELECT * FROM claimed",
                *values,
                detail({"owner": self.owner}),
            ),
            one=True,
        )

    async def _noted(
        self, update: str, args: Sequence[Any], at: str, kind: str, job_id: str | None,
        data: dict[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """One statement: the change, and its history row for each row changed."""
        n = len(args)
        return await self._run(
            lambda tx: tx.execute(
                f"WITH changed AS ({update} RETURNING fingerprint) "
                "INSERT INTO events (fingerprint, at, kind, job_id, detail) "
                f"SELECT fingerprint, ${n + 1}::text, ${n + 2}::text, ${n + 3}::text, "
                f"${n + 4}::text FROM changed",
                *args, at, kind, job_id, detail(data),
            ),
            one=True,
        )  # fmt: skip

    async def record_statuses(self, seen: Sequence[tuple[str, Job]]) -> None:
        """A tracker refresh's statuses in one statement: the rows locked in fingerprint order,
        each set to its last state seen, and a `status` event for each state that differs from
        the one before it (the row's, or the previous one seen of the same export)."""
        if not seen:
            return
        at = self._now()
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
        for fingerprint, job in seen:
            done = job.status is JobStatus.COMPLETED
            data = {"status": job.status.value, "records": job.records_processed}
            row = (
                fingerprint, job.id, job.status.value, job.records_processed,
                (stamp(job.completed_date) or at) if done else None, detail(data),
            )  # fmt: skip
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        await self._run(lambda tx: tx.execute(_RECORD_STATUSES, *columns, at), one=True)

    async def record_download(
        self, fingerprint: str, job_id: str, path: Path, size: int, sha256: str
    ) -> None:
        """One statement: the row locked, changed, and its history rows in order (the status it
        reached, if it was recorded as another one, then the download)."""
        at, done = self._now(), JobStatus.COMPLETED.value
        await self._run(
            lambda tx: tx.execute(
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
                job_id, done, at, str(path), size, sha256, fingerprint,
                detail({"status": done}),
                detail({"path": str(path), "size": size, "sha256": sha256}),
            ),
            one=True,
        )  # fmt: skip


class _PgTx:
    """`sql.Tx` on a pooled asyncpg connection."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def row(self, sql: str, *args: Any) -> Row | None:
        return await self.conn.fetchrow(sql, *args)  # type: ignore[no-any-return]

    async def rows(self, sql: str, *args: Any) -> Sequence[Row]:
        return await self.conn.fetch(sql, *args)  # type: ignore[no-any-return]

    async def value(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        status = str(await self.conn.execute(sql, *args))  # e.g. "UPDATE 3", "INSERT 0 1"
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def lock(self, key: str) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)
