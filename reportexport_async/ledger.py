"""The job ledger: durable memory of every export, so nothing is submitted twice (the guide's
rule 1, docs/guide.md), an interrupted run re-attaches to its jobs, completed results cost no call,
and the daily quota's use survives restarts and is shared by processes. It also keeps the chunks
`chunk="auto"` chose for each export, so a rerun plans the same chunks.

One SQLite file (default `.reportexport/ledger.sqlite` in the working folder), stdlib `sqlite3`
behind one thread of its own: WAL journal, a busy timeout, a schema version (`PRAGMA user_version`)
with migrations, and every read-modify-write in one `BEGIN IMMEDIATE` transaction, so many tasks of
one process and several processes on one machine can share it.

Group commit: the ledger's thread takes every call waiting for it at once and runs the writes among
them in one transaction, each in a savepoint of its own (one that fails is rolled back alone and
raises to its caller). Every call still returns only once its write is committed: an intent is
recorded before its submit is sent, a job id before anything depends on it, exactly as with one
transaction per call; many tasks writing at once just share a commit and a thread hop.
`get_many` reads many entries in one call.

The ledger remembers; it does not decide. The core decides (fingerprints, the replay guard); the
flow in `exports.py` and the orchestrator ask the ledger what is known and tell it what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .clock import Clock, SystemClock
from .core.chunking import Chunk
from .core.models import Job, JobStatus
from .core.quota import HourlyWindow
from .errors import LedgerError, QuotaName

__all__ = ["DEFAULT_LEDGER_PATH", "Ledger", "LedgerEntry", "LedgerEvent"]

DEFAULT_LEDGER_PATH = Path(".reportexport") / "ledger.sqlite"
T = TypeVar("T")

# Each entry moves the schema one version forward; `user_version` says how many have run.
MIGRATIONS: tuple[str, ...] = (
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
        records       INTEGER,
        created_at    TEXT NOT NULL,
        claimed_by    TEXT,
        claimed_at    TEXT,
        submitted_at  TEXT,
        completed_at  TEXT,
        status_at     TEXT,
        file_path     TEXT,
        file_size     INTEGER,
        file_sha256   TEXT,
        downloaded_at TEXT,
        replays       INTEGER NOT NULL DEFAULT 0,
        last_replay_at TEXT
    );
    CREATE INDEX exports_job ON exports(job_id);
    CREATE INDEX exports_report ON exports(report_id);
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL,
        at          TEXT NOT NULL,
        kind        TEXT NOT NULL,
        job_id      TEXT,
        detail      TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_fingerprint ON events(fingerprint);
    CREATE INDEX events_job ON events(job_id);
    CREATE TABLE quota_use (
        day  TEXT NOT NULL,
        name TEXT NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (day, name)
    );
    """,
    # 2: the daily quotas are counted per account (a ledger may serve several accounts).
    """
    CREATE TABLE quota_use_v2 (
        account TEXT NOT NULL,
        day     TEXT NOT NULL,
        name    TEXT NOT NULL,
        used    INTEGER NOT NULL,
        PRIMARY KEY (account, day, name)
    );
    INSERT INTO quota_use_v2 (account, day, name, used) SELECT '', day, name, used FROM quota_use;
    DROP TABLE quota_use;
    ALTER TABLE quota_use_v2 RENAME TO quota_use
    """,
    # 3: the chunks `chunk="auto"` chose, per account and export (report, filters, format), so
    # a later run over the same days reuses them instead of exporting the days again.
    """
    CREATE TABLE auto_chunks (
        account     TEXT NOT NULL,
        export      TEXT NOT NULL,
        chunks      TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (account, export)
    )
    """,
    # 4: a daily quota the server refused is marked spent (its count stays the server's), and the
    # account's quota day (a UTC offset) is learned from the reset of a daily-quota 429.
    """
    ALTER TABLE quota_use ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE quota_zone (
        account            TEXT PRIMARY KEY,
        utc_offset_minutes INTEGER NOT NULL
    )
    """,
    # 5: a claim is a lease: the worker (`claimed_by`) holds the chunk from its intent to its
    # download while it renews `lease_until`; and the hourly bucket of each account is kept here
    # so that every process and host on the ledger spends one bucket.
    """
    ALTER TABLE exports ADD COLUMN lease_until TEXT;
    CREATE INDEX exports_claimed ON exports(claimed_by);
    CREATE TABLE hourly_bucket (
        account   TEXT PRIMARY KEY,
        lim       INTEGER NOT NULL,
        remaining INTEGER NOT NULL,
        resets_at TEXT NOT NULL
    )
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: The most calls one transaction of the ledger's thread takes (a bound on how long a batch
#: holds SQLite's write lock when many tasks write at once).
GROUP_LIMIT = 64

#: How long a claim (a lease) lasts without renewal. A running worker renews its leases every
#: third of it; a worker that dies (SIGKILL, a lost host) loses them when they run out, and
#: another takes its chunks over: by the recorded job id, or by submitting again when none was
#: recorded (the service's own de-duplication then returns the same job, docs/api-facts.md §1d).
CLAIM_TIMEOUT = timedelta(seconds=120)


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows about one export (one fingerprint)."""

    fingerprint: str
    canonical: str
    endpoint: str
    report_id: str | None
    range_start: date | None
    range_end: date | None
    result_format: str
    job_id: str | None
    status: JobStatus | None
    records: int | None
    created_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    submitted_at: datetime | None
    completed_at: datetime | None
    status_at: datetime | None
    file_path: Path | None
    file_size: int | None
    file_sha256: str | None
    downloaded_at: datetime | None
    replays: int
    last_replay_at: datetime | None
    #: Until when `claimed_by` holds the chunk (None: no lease, or a ledger before schema 5).
    lease_until: datetime | None = None

    @property
    def filters(self) -> dict[str, Any]:
        return dict(json.loads(self.canonical).get("filters", []))

    @property
    def account(self) -> str:
        """The entry's account as `core.fingerprint.account_key` names it (origin, type, SID):
        a ledger shared by several accounts keeps them apart by it."""
        body = json.loads(self.canonical)
        return f"{body.get('origin')}/{body.get('account_type')}/{body.get('account_sid')}"


@dataclass(frozen=True)
class LedgerEvent:
    fingerprint: str
    at: datetime
    kind: str  # intent, submitted, status, download, replay, replay_refused, error
    job_id: str | None
    detail: dict[str, Any]


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


#: The columns of a new intent (`claim`), in the order of `_intent_values`; both stores insert it.
INTENT_COLUMNS = (
    "fingerprint, canonical, endpoint, report_id, range_start, range_end, result_format, "
    "created_at, claimed_by, claimed_at, lease_until"
)


def _intent_values(
    fingerprint: str,
    canonical: str,
    endpoint: str,
    report_id: str | None,
    range_start: date | None,
    range_end: date | None,
    result_format: str,
    *,
    stamp: str | None,
    owner: str,
    until: str | None,
) -> tuple[str | None, ...]:
    """The row of a new intent: made now (`stamp`), claimed by `owner` until `until`."""
    start = None if range_start is None else range_start.isoformat()
    end = None if range_end is None else range_end.isoformat()
    return (fingerprint, canonical, endpoint, report_id, start, end, result_format, stamp, owner,
            stamp, until)  # fmt: skip


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _parse_day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _entry(row: sqlite3.Row) -> LedgerEntry:
    status = row["status"]
    return LedgerEntry(
        fingerprint=row["fingerprint"],
        canonical=row["canonical"],
        endpoint=row["endpoint"],
        report_id=row["report_id"],
        range_start=_parse_day(row["range_start"]),
        range_end=_parse_day(row["range_end"]),
        result_format=row["result_format"],
        job_id=row["job_id"],
        status=None if status is None else JobStatus.parse(status),
        records=row["records"],
        created_at=_parse_time(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
        claimed_by=row["claimed_by"],
        claimed_at=_parse_time(row["claimed_at"]),
        submitted_at=_parse_time(row["submitted_at"]),
        completed_at=_parse_time(row["completed_at"]),
        status_at=_parse_time(row["status_at"]),
        file_path=None if row["file_path"] is None else Path(row["file_path"]),
        file_size=row["file_size"],
        file_sha256=row["file_sha256"],
        downloaded_at=_parse_time(row["downloaded_at"]),
        replays=row["replays"],
        last_replay_at=_parse_time(row["last_replay_at"]),
        # `in` on a sqlite3.Row looks at its values: the names are its keys().
        lease_until=_parse_time(row["lease_until"]) if "lease_until" in row.keys() else None,  # noqa: SIM118
    )


def lease_alive(entry: LedgerEntry, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Whether another worker holds `entry`'s lease right now. A lease is free when nobody
    holds it, when it ran out (a claim from before leases lasts `ttl` from its claim), or when
    its holder is a process of this machine that no longer exists (the fast path: no waiting
    for the lease to run out after a local crash)."""
    if entry.claimed_by in (None, owner):
        return False
    until = entry.lease_until
    if until is None:
        until = None if entry.claimed_at is None else entry.claimed_at + ttl
    if until is None or now >= until:
        return False
    return _owner_alive(entry.claimed_by)


def _stored_chunks(db: sqlite3.Connection, account: str, export: str) -> list[Chunk]:
    row = db.execute(
        "SELECT chunks FROM auto_chunks WHERE account = ? AND export = ?", (account, export)
    ).fetchone()
    if row is None:
        return []
    try:
        return [Chunk(date.fromisoformat(a), date.fromisoformat(b)) for a, b in json.loads(row[0])]
    except (TypeError, ValueError) as exc:  # a damaged record: reported as the ledger's error
        raise sqlite3.DatabaseError(f"the auto chunks of {export} are damaged: {exc}") from exc


def _account_pattern(account: str) -> str:
    """A LIKE pattern for the canonical JSON of `account`'s entries: the canonical form sorts
    its keys, so it starts with the SID and the account type (`core.fingerprint`)."""
    origin, kind, sid = account.rsplit("/", 2)

    def literal(value: str) -> str:
        text = json.dumps(value)
        return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    head = f'{{"account_sid":{literal(sid)},"account_type":{literal(kind)},'
    return f'{head}%"origin":{literal(origin)},%'


def _code(exc: sqlite3.Error) -> str:
    """SQLite's result code name, e.g. `SQLITE_READONLY_DBMOVED` ("" when it has none)."""
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _owner_alive(owner: str | None) -> bool:
    """False when the claim's owner is a process of this machine that no longer exists (it was
    killed between its intent and its job id); True when it lives or cannot be checked."""
    if owner is None:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@dataclass(eq=False)
class _Call:
    """One call waiting for the ledger's thread, and where its answer goes."""

    work: Callable[[sqlite3.Connection], Any]
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] | None = None  # (failed, result or exception), once known


def _deliver(calls: list[_Call]) -> None:
    """In the event loop: hand each call its answer (a caller that gave up gets nothing)."""
    for call in calls:
        if call.future.done() or call.outcome is None:
            continue
        failed, value = call.outcome
        if failed:
            call.future.set_exception(value)
        else:
            call.future.set_result(value)


class _Writer:
    """The ledger's own thread: it owns the connection and takes every waiting call at once (up
    to `GROUP_LIMIT`): the reads first, outside any transaction (they see only committed
    records), then the writes in order in one transaction, a savepoint each; it answers them
    all after the commit."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        #: Lists of calls, one per turn of an event loop that made calls; None to stop.
        self.calls: queue.SimpleQueue[list[_Call] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="reportexport-ledger", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = self.calls.get()
            if first is None:
                break
            batch = list(first)
            while len(batch) < GROUP_LIMIT:
                try:
                    more = self.calls.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch += more
            self._run(batch)
        self.db.close()

    def _run(self, batch: list[_Call]) -> None:
        db = self.db
        for call in batch:
            if not call.write:
                try:
                    call.outcome = (False, call.work(db))
                except BaseException as exc:
                    call.outcome = (True, exc)
        writes = [call for call in batch if call.write]
        if writes:
            try:
                self._transaction(writes)
            except BaseException as exc:  # BEGIN or COMMIT failed: no write of the batch made it
                with contextlib.suppress(Exception):
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                for call in writes:
                    call.outcome = (True, exc)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        for call in batch:
            by_loop.setdefault(call.loop, []).append(call)
        for loop, calls in by_loop.items():
            # A closed loop: nobody waits for these answers any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, calls)

    def _transaction(self, writes: list[_Call]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        for call in writes:
            db.execute("SAVEPOINT one_call")
            try:
                call.outcome = (False, call.work(db))
            except BaseException as exc:  # this call's changes only are undone
                if not db.in_transaction:  # SQLite undid it all (a full disk, an I/O error)
                    raise
                db.execute("ROLLBACK TO one_call")
                call.outcome = (True, exc)
            db.execute("RELEASE one_call")
        db.execute("COMMIT")

    def stop(self) -> None:
        """Blocking: answer what is queued, close the connection, end the thread."""
        self.calls.put(None)
        self.thread.join()


class Ledger:
    """The ledger file. Use as an async context manager (or `open()`/`close()`).

    Every method is a coroutine and may be called from many tasks at once: the calls are queued
    to the ledger's thread, which commits the writes waiting together in one transaction (group
    commit) and answers each caller once its write is committed. `get_many` is `get` for many
    fingerprints in one call.

    With `read_only=True` nothing is ever written: the file is opened in SQLite's read-only mode,
    with no switch to WAL and no migration, so a ledger on a read-only file or folder can still be
    shown. A ledger of an older schema is read as it is; a query that needs a newer column says
    that a writable run must upgrade it first."""

    def __init__(
        self,
        path: str | Path = DEFAULT_LEDGER_PATH,
        *,
        clock: Clock | None = None,
        busy_timeout: float = 30.0,
        read_only: bool = False,
        lease: timedelta = CLAIM_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        #: How long a claim lasts without renewal (`renew_leases`).
        self.lease = lease
        self.clock: Clock = clock or SystemClock()
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        #: Who holds a claim on a submit: host, process and a nonce, unique per ledger object.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._db: sqlite3.Connection | None = None
        self._schema = SCHEMA_VERSION  # the file's, once open
        self._writer: _Writer | None = None  # the thread that owns `_db`, once open
        #: Calls made during the current turn of each event loop, handed to the thread together
        #: at the end of the turn: one wake-up of the thread per turn, not per call.
        self._outbox: dict[asyncio.AbstractEventLoop, list[_Call]] = {}

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"Ledger({str(self.path)!r}{mode})"

    async def __aenter__(self) -> Ledger:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._db is None:
            connect = self._connect_read_only if self.read_only else self._connect
            db = await anyio.to_thread.run_sync(connect)
            self._writer = _Writer(db)
            self._db = db

    async def close(self) -> None:
        if self._db is not None and self._writer is not None:
            writer, self._db, self._writer = self._writer, None, None
            for calls in self._outbox.values():  # made this turn: answered before the close
                writer.calls.put(calls)
            self._outbox.clear()
            with anyio.CancelScope(shield=True):  # what is queued is answered, then closed
                await anyio.to_thread.run_sync(writer.stop)

    def _connect(self) -> sqlite3.Connection:
        where = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the folder of the ledger {where!r} ({exc.strerror}); "
                "choose another path for the ledger",
                problem="folder",
            ) from exc
        try:
            db = sqlite3.connect(
                where,
                timeout=self.busy_timeout,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
                check_same_thread=False,  # used from worker threads, one at a time
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        db.row_factory = sqlite3.Row
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            # Read-only checks first: a ledger that is corrupt or from a newer schema is refused
            # before anything (the switch to WAL included) writes to it.
            self._check_readable(db)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate(db)
        except sqlite3.Error as exc:
            db.close()
            raise self._error(exc) from exc
        except BaseException:
            db.close()
            raise
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise LedgerError(f"no ledger at {str(self.path)!r}", problem="missing")
        uri = self.path.resolve().as_uri()
        # A WAL file whose folder is read-only cannot get the -shm file SQLite reads through;
        # `immutable` reads it without one (no writer can work there without one either).
        attempts = (f"{uri}?mode=ro", f"{uri}?mode=ro&immutable=1")
        for number, target in enumerate(attempts):
            try:
                db = sqlite3.connect(
                    target,
                    uri=True,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            db.row_factory = sqlite3.Row
            try:
                db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                self._check_readable(db)
            except sqlite3.Error as exc:
                db.close()
                retry = _code(exc).startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY"))
                if (
                    retry
                    and number + 1 < len(attempts)
                    and not os.access(self.path.parent, os.W_OK)
                ):
                    continue
                raise self._error(exc) from exc
            except BaseException:
                db.close()
                raise
            return db
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt raises

    def _check_readable(self, db: sqlite3.Connection) -> None:
        """Raise before any write if the file is from a newer schema or damaged."""
        self._schema = int(db.execute("PRAGMA user_version").fetchone()[0])
        self._refuse_newer(self._schema)
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise self._corrupt("; ".join(str(p) for p in problems[:3]))

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger {str(self.path)!r} has schema version {version}, newer than "
                f"this version of reportexport_async understands ({SCHEMA_VERSION}); "
                "upgrade reportexport_async, or use another ledger file",
                problem="newer",
            )

    def _corrupt(self, detail: str) -> LedgerError:
        """Only for a file that fails SQLite's own checks: it may still hold most of the record
        of every job, so the advice is to keep it, never to move it out of the way."""
        return LedgerError(
            f"the ledger {str(self.path)!r} is corrupt or not a SQLite file ({detail}); keep "
            "it: it holds the record of every job. Restore a backup, or start a new ledger at "
            "another path beside it",
            problem="corrupt",
        )

    def _error(self, exc: sqlite3.Error) -> LedgerError:
        """A SQLite error as what it means for the ledger file, named by its result code: a
        read-only or locked file is never called corrupt."""
        where = str(self.path)
        code = _code(exc)
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return LedgerError(
                f"the ledger {where!r} is locked by another process (still busy after "
                f"{self.busy_timeout:g} s); let it finish, then try again",
                problem="locked",
            )
        if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return self._corrupt(str(exc))
        if code.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN")):
            return self._unwritable(exc)
        if code.startswith("SQLITE_FULL"):
            return LedgerError(
                f"cannot write to {where!r}: the disk is full; free some space, then try again"
            )
        return LedgerError(f"ledger {where!r}: {exc}")

    def _unwritable(self, exc: sqlite3.Error) -> LedgerError:
        """Which of the file and its folder SQLite could not open or write (it also creates
        `<name>-wal` and `<name>-shm` beside the file)."""
        where, folder, name = str(self.path), self.path.parent, self.path.name
        exists = self.path.exists()
        if exists and not os.access(self.path, os.R_OK):
            return LedgerError(
                f"cannot read {where!r}: permission denied (check its permissions)",
                problem="unreadable",
            )
        if self.read_only:
            return LedgerError(f"cannot open the ledger {where!r} ({exc})")
        if exists and not os.access(self.path, os.W_OK):
            what = "read-only file (check its permissions"
        elif not os.access(folder, os.W_OK):
            what = (
                f"read-only folder {str(folder)!r} (SQLite creates {name}-wal and {name}-shm "
                "beside the ledger; check the folder's permissions"
            )
        elif _code(exc).startswith("SQLITE_CANTOPEN"):
            return LedgerError(f"cannot open the ledger {where!r} ({exc})")
        else:
            what = "read-only (check the permissions of the file, its folder and its disk"
        return LedgerError(
            f"cannot write to {where!r}: {what}); reading it without writing still works",
            problem="read-only",
        )

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            self._refuse_newer(version)  # again: another process may have migrated meanwhile
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # A write that changes nothing: SQLite grants BEGIN IMMEDIATE on a read-only file,
            # and a ledger that cannot record must say so now, not at its first job.
            db.execute("DELETE FROM exports WHERE 0")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._schema = SCHEMA_VERSION

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run `work` on the connection in the ledger's thread; a write inside an IMMEDIATE
        transaction (shared with the writes queued with it), answered once committed. Like a
        worker thread's call, it is not abandoned when cancelled: the caller learns the outcome,
        then the cancellation goes on."""
        writer = self._writer
        if writer is None:
            raise LedgerError("the ledger is not open: use `async with Ledger(...)`")
        if write and self.read_only:
            raise LedgerError(
                f"the ledger {str(self.path)!r} is open read-only: nothing can be recorded",
                problem="read-only",
            )
        loop = asyncio.get_running_loop()
        call = _Call(work, write, loop, loop.create_future())
        outbox = self._outbox.get(loop)
        if outbox is None:
            outbox = self._outbox[loop] = []
            loop.call_soon(self._hand_over, loop)
        outbox.append(call)
        try:
            with anyio.CancelScope(shield=True):
                result: T = await call.future
            return result
        except sqlite3.OperationalError as exc:
            if self._schema < SCHEMA_VERSION and str(exc).startswith("no such"):
                # Only a read-only ledger stays on an older schema (a writable one migrates).
                raise LedgerError(
                    f"the ledger {str(self.path)!r} has schema version {self._schema}, older "
                    f"than this version of reportexport_async needs here ({SCHEMA_VERSION}); "
                    "open it once for writing to upgrade it",
                    problem="older",
                ) from exc
            raise self._error(exc) from exc
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """At the end of a loop's turn: its calls go to the ledger's thread together."""
        calls = self._outbox.pop(loop, None)
        if calls and self._writer is not None:
            self._writer.calls.put(calls)

    def _now(self) -> str:
        return _time(self.clock.now()) or ""

    @staticmethod
    def _event(
        db: sqlite3.Connection,
        fingerprint: str,
        at: str,
        kind: str,
        job_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO events (fingerprint, at, kind, job_id, detail) VALUES (?, ?, ?, ?, ?)",
            (fingerprint, at, kind, job_id, json.dumps(detail or {}, sort_keys=True)),
        )

    # -- exports ------------------------------------------------------------------------------

    async def get(self, fingerprint: str) -> LedgerEntry | None:
        def work(db: sqlite3.Connection) -> LedgerEntry | None:
            row = db.execute(
                "SELECT * FROM exports WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            return None if row is None else _entry(row)

        return await self._run(work)

    async def get_many(self, fingerprints: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of `fingerprints` that exist, in one call (a plan looks up every chunk)."""
        keys = list(dict.fromkeys(fingerprints))

        def work(db: sqlite3.Connection) -> dict[str, LedgerEntry]:
            found: dict[str, LedgerEntry] = {}
            for start in range(0, len(keys), 500):  # below SQLite's limit of bound values
                part = keys[start : start + 500]
                rows = db.execute(
                    f"SELECT * FROM exports WHERE fingerprint IN ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
                found.update((row["fingerprint"], _entry(row)) for row in rows)
            return found

        return await self._run(work)

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
        """Record the intent to submit (write-ahead), unless a job is known or another live
        worker holds the claim. Returns the entry and whether this ledger now holds the claim
        and must submit. A known job whose lease is free is leased too (no submit): then
        `entry.claimed_by` is this ledger's `owner` and this worker follows the job."""
        now = self.clock.now()
        stamp = _time(now)
        until = _time(now + self.lease)

        def work(db: sqlite3.Connection) -> tuple[LedgerEntry, bool]:
            row = db.execute(
                "SELECT * FROM exports WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            if row is None:
                db.execute(
                    f"INSERT INTO exports ({INTENT_COLUMNS}) VALUES ({', '.join(['?'] * 11)})",
                    _intent_values(
                        fingerprint, canonical, endpoint, report_id, range_start, range_end,
                        result_format, stamp=stamp, owner=self.owner, until=until,
                    ),
                )  # fmt: skip
                self._event(db, fingerprint, stamp or "", "intent", None, {"owner": self.owner})
                fresh = db.execute(
                    "SELECT * FROM exports WHERE fingerprint = ?", (fingerprint,)
                ).fetchone()
                return _entry(fresh), True
            entry = _entry(row)
            if lease_alive(entry, self.owner, now, self.lease):
                return entry, False
            if entry.job_id is not None:
                return self._lease_to_me(db, entry, stamp or "", until), False
            db.execute(
                "UPDATE exports SET claimed_by = ?, claimed_at = ?, lease_until = ? "
                "WHERE fingerprint = ?",
                (self.owner, stamp, until, fingerprint),
            )
            self._event(
                db,
                fingerprint,
                stamp or "",
                "intent",
                None,
                {"owner": self.owner, "took_over": entry.claimed_by},
            )
            fresh = db.execute(
                "SELECT * FROM exports WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            return _entry(fresh), True

        return await self._run(work, write=True)

    def _lease_to_me(
        self, db: sqlite3.Connection, entry: LedgerEntry, stamp: str, until: str | None
    ) -> LedgerEntry:
        """Lease a known job's chunk to this worker (a takeover is written to its history)."""
        db.execute(
            "UPDATE exports SET claimed_by = ?, claimed_at = ?, lease_until = ? "
            "WHERE fingerprint = ?",
            (self.owner, stamp, until, entry.fingerprint),
        )
        if entry.claimed_by not in (None, self.owner):
            detail = {"owner": self.owner, "took_over": entry.claimed_by}
            self._event(db, entry.fingerprint, stamp, "lease", entry.job_id, detail)
        fresh = db.execute(
            "SELECT * FROM exports WHERE fingerprint = ?", (entry.fingerprint,)
        ).fetchone()
        return _entry(fresh)

    async def take_lease(self, fingerprint: str) -> tuple[LedgerEntry | None, bool]:
        """Take (or renew) the lease of a known chunk unless another live worker holds it.
        Returns the entry (None when the ledger has none) and whether this worker holds it."""
        now = self.clock.now()
        stamp, until = _time(now) or "", _time(now + self.lease)

        def work(db: sqlite3.Connection) -> tuple[LedgerEntry | None, bool]:
            row = db.execute(
                "SELECT * FROM exports WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            if row is None:
                return None, False
            entry = _entry(row)
            if lease_alive(entry, self.owner, now, self.lease):
                return entry, False
            return self._lease_to_me(db, entry, stamp, until), True

        return await self._run(work, write=True)

    async def renew_leases(self) -> int:
        """Push back the end of every lease this worker holds, in one statement."""
        until = _time(self.clock.now() + self.lease)

        def work(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE exports SET lease_until = ? WHERE claimed_by = ?", (until, self.owner)
            ).rowcount

        return await self._run(work, write=True)

    async def release_lease(self, fingerprint: str) -> None:
        """Give back this worker's lease of one chunk (it stops following it)."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE exports SET claimed_by = NULL, claimed_at = NULL, lease_until = NULL "
                "WHERE fingerprint = ? AND claimed_by = ?",
                (fingerprint, self.owner),
            )

        await self._run(work, write=True)

    async def release_leases(self) -> int:
        """Give back every lease this worker holds (its run is over): another worker may take
        those chunks at once instead of waiting for the leases to run out."""

        def work(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE exports SET claimed_by = NULL, claimed_at = NULL, lease_until = NULL "
                "WHERE claimed_by = ?",
                (self.owner,),
            ).rowcount

        return await self._run(work, write=True)

    async def hourly(
        self, account: str, change: Callable[[HourlyWindow | None], tuple[HourlyWindow, T]]
    ) -> T:
        """Read-modify-write the account's hourly bucket in one transaction: `change` (the
        core's arithmetic) gets the stored window (None before the first call) and returns the
        window to store and its answer."""

        def work(db: sqlite3.Connection) -> T:
            row = db.execute(
                "SELECT lim, remaining, resets_at FROM hourly_bucket WHERE account = ?",
                (account,),
            ).fetchone()
            window = (
                None
                if row is None
                else HourlyWindow(int(row[0]), int(row[1]), datetime.fromisoformat(row[2]))
            )
            new, answer = change(window)
            if new != window:
                db.execute(
                    "INSERT INTO hourly_bucket (account, lim, remaining, resets_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(account) DO UPDATE SET lim = excluded.lim, "
                    "remaining = excluded.remaining, resets_at = excluded.resets_at",
                    (account, new.limit, new.remaining, _time(new.resets_at)),
                )
            return answer

        return await self._run(work, write=True)

    async def record_submitted(self, fingerprint: str, job_id: str) -> None:
        """The job id, right after the submit answered. The claim stays: it is now the lease of
        the worker that follows the job to its download."""
        stamp = self._now()
        until = _time(self.clock.now() + self.lease)

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE exports SET job_id = ?, status = ?, submitted_at = ?, status_at = ?, "
                "lease_until = CASE WHEN claimed_by = ? THEN ? ELSE lease_until END "
                "WHERE fingerprint = ?",
                (job_id, JobStatus.QUEUED.value, stamp, stamp, self.owner, until, fingerprint),
            )
            self._event(db, fingerprint, stamp, "submitted", job_id)

        await self._run(work, write=True)

    async def forget_job(self, fingerprint: str, job_id: str) -> bool:
        """The server no longer knows `job_id` (404): the export needs a new submit. Its job,
        status and file are cleared (the history keeps them, as a `job_unknown` event), unless
        another process already recorded a newer job. True when the entry was cleared."""
        stamp = self._now()

        def work(db: sqlite3.Connection) -> bool:
            cleared = db.execute(
                "UPDATE exports SET job_id = NULL, status = NULL, records = NULL, "
                "claimed_by = NULL, claimed_at = NULL, lease_until = NULL, "
                "submitted_at = NULL, completed_at = NULL, "
                "status_at = NULL, file_path = NULL, file_size = NULL, file_sha256 = NULL, "
                "downloaded_at = NULL WHERE fingerprint = ? AND job_id = ?",
                (fingerprint, job_id),
            ).rowcount
            if cleared:
                self._event(db, fingerprint, stamp, "job_unknown", job_id)
            return bool(cleared)

        return await self._run(work, write=True)

    async def release_claim(self, fingerprint: str) -> None:
        """The submit failed before any job existed: let the next attempt claim at once."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE exports SET claimed_by = NULL, claimed_at = NULL, lease_until = NULL "
                "WHERE fingerprint = ? AND claimed_by = ? AND job_id IS NULL",
                (fingerprint, self.owner),
            )

        await self._run(work, write=True)

    async def record_status(self, fingerprint: str, job: Job) -> None:
        """A job's state as last seen (only changes are written to the history)."""
        await self.record_statuses([(fingerprint, job)])

    async def record_statuses(self, seen: Sequence[tuple[str, Job]]) -> None:
        """Several jobs' states in one transaction (a tracker refresh sees many at once)."""
        if not seen:
            return
        stamp = self._now()

        def work(db: sqlite3.Connection) -> None:
            for fingerprint, job in seen:
                status = job.status.value
                row = db.execute(
                    "SELECT status, job_id FROM exports WHERE fingerprint = ?", (fingerprint,)
                ).fetchone()
                done = job.status is JobStatus.COMPLETED
                completed = (_time(job.completed_date) or stamp) if done else None
                db.execute(
                    "UPDATE exports SET job_id = ?, status = ?, records = COALESCE(?, records), "
                    "status_at = ?, completed_at = COALESCE(?, completed_at) "
                    "WHERE fingerprint = ?",
                    (job.id, status, job.records_processed, stamp, completed, fingerprint),
                )
                if row is None or row["status"] != status or row["job_id"] != job.id:
                    detail = {"status": status, "records": job.records_processed}
                    self._event(db, fingerprint, stamp, "status", job.id, detail)

        await self._run(work, write=True)

    async def record_download(
        self, fingerprint: str, job_id: str, path: Path, size: int, sha256: str
    ) -> None:
        """A result was downloaded whole. The Download answers 200 only for a COMPLETED job
        (docs/api-facts.md §2), so this records that status too: a job tracked by postbacks alone is
        never seen COMPLETED by a status call, and the next run must know it is done."""
        stamp = self._now()
        done = JobStatus.COMPLETED.value

        def work(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT status FROM exports WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            db.execute(
                "UPDATE exports SET job_id = ?, status = ?, status_at = ?, "
                "completed_at = COALESCE(completed_at, ?), file_path = ?, file_size = ?, "
                "file_sha256 = ?, downloaded_at = ?, claimed_by = NULL, claimed_at = NULL, "
                "lease_until = NULL WHERE fingerprint = ?",
                (job_id, done, stamp, stamp, str(path), size, sha256, stamp, fingerprint),
            )
            if row is not None and row["status"] != done:
                self._event(db, fingerprint, stamp, "status", job_id, {"status": done})
            detail = {"path": str(path), "size": size, "sha256": sha256}
            self._event(db, fingerprint, stamp, "download", job_id, detail)

        await self._run(work, write=True)

    async def record_replay(
        self, fingerprint: str, old_job_id: str, job: Job, *, rule: str
    ) -> None:
        """A replay was made; `job` is the answer (its id may be new, docs/api-facts.md §2)."""
        stamp = self._now()

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE exports SET job_id = ?, status = ?, status_at = ?, submitted_at = ?, "
                "replays = replays + 1, last_replay_at = ?, completed_at = NULL, "
                "file_sha256 = NULL, file_size = NULL, downloaded_at = NULL "
                "WHERE fingerprint = ?",
                (job.id, job.status.value, stamp, stamp, stamp, fingerprint),
            )
            detail = {"rule": rule, "old_job_id": old_job_id, "status": job.status.value}
            self._event(db, fingerprint, stamp, "replay", job.id, detail)

        await self._run(work, write=True)

    async def record_event(
        self,
        fingerprint: str,
        kind: str,
        job_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        stamp = self._now()
        await self._run(
            lambda db: self._event(db, fingerprint, stamp, kind, job_id, detail), write=True
        )

    async def replays_since(self, fingerprint: str, since: datetime) -> int:
        def work(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT COUNT(*) FROM events WHERE fingerprint = ? AND kind = 'replay' AND at >= ?",
                (fingerprint, _time(since)),
            ).fetchone()
            return int(row[0])

        return await self._run(work)

    async def entries(
        self, report_id: str | None = None, *, account: str | None = None
    ) -> list[LedgerEntry]:
        """Every entry, or those of `report_id`; with `account` (`core.fingerprint.account_key`)
        only that account's, selected in SQL: a ledger may serve thousands of accounts."""
        where, params = ["1"], []
        if report_id is not None:
            where.append("report_id = ?")
            params.append(report_id)
        if account is not None:
            where.append("canonical LIKE ? ESCAPE '\\'")
            params.append(_account_pattern(account))
        order = "created_at, fingerprint" if report_id is None else "range_start, created_at"
        query = f"SELECT * FROM exports WHERE {' AND '.join(where)} ORDER BY {order}"

        def work(db: sqlite3.Connection) -> list[LedgerEntry]:
            found = [_entry(row) for row in db.execute(query, params).fetchall()]
            # LIKE ignores ASCII case: the exact account is checked here.
            return found if account is None else [e for e in found if e.account == account]

        return await self._run(work)

    async def unfinished(self) -> list[LedgerEntry]:
        """Entries with a job that is not known to be final: a later run re-attaches to them."""
        finals = tuple(
            s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
        )

        def work(db: sqlite3.Connection) -> list[LedgerEntry]:
            rows = db.execute(
                "SELECT * FROM exports WHERE job_id IS NOT NULL AND "
                f"(status IS NULL OR status NOT IN ({','.join('?' * len(finals))}))",
                finals,
            ).fetchall()
            return [_entry(row) for row in rows]

        return await self._run(work)

    async def find(self, key: str, *, account: str | None = None) -> LedgerEntry | None:
        """An entry by fingerprint (or a unique prefix of it) or by job id; with `account`
        (`core.fingerprint.account_key`), only among that account's entries: job ids are the
        server's, and two accounts (two sandboxes of one seed) may use the same ones."""
        query = "SELECT * FROM exports WHERE (fingerprint = ? OR job_id = ? OR fingerprint LIKE ?)"
        params = [key, key, f"{key}%"]
        if account is not None:
            query += " AND canonical LIKE ? ESCAPE '\\'"
            params.append(_account_pattern(account))

        def work(db: sqlite3.Connection) -> LedgerEntry | None:
            found = [_entry(row) for row in db.execute(query, params).fetchall()]
            found = [e for e in found if account is None or e.account == account]
            if len(found) > 1:
                raise LedgerError(f"{key!r} matches more than one entry; give more characters")
            return found[0] if found else None

        return await self._run(work)

    async def history(self, key: str) -> list[LedgerEvent]:
        """Every event of an entry (by fingerprint, a unique prefix, or a job id), oldest first."""
        entry = await self.find(key)
        if entry is None:
            return []
        fingerprint = entry.fingerprint

        def work(db: sqlite3.Connection) -> list[LedgerEvent]:
            rows = db.execute(
                "SELECT * FROM events WHERE fingerprint = ? ORDER BY id", (fingerprint,)
            ).fetchall()
            return [
                LedgerEvent(
                    fingerprint=row["fingerprint"],
                    at=_parse_time(row["at"]) or datetime.min.replace(tzinfo=UTC),
                    kind=row["kind"],
                    job_id=row["job_id"],
                    detail=json.loads(row["detail"]),
                )
                for row in rows
            ]

        return await self._run(work)

    # -- the chunks `chunk="auto"` chose --------------------------------------------------------

    async def auto_chunks(self, account: str, export: str) -> list[Chunk]:
        """The chunks recorded for `export` (`core.fingerprint.export_key`) of `account`
        (`core.fingerprint.account_key`), in order; empty when none are."""

        def work(db: sqlite3.Connection) -> list[Chunk]:
            return _stored_chunks(db, account, export)

        return await self._run(work)

    async def record_auto_chunks(
        self, account: str, export: str, chunks: Sequence[Chunk], *, expected: Sequence[Chunk]
    ) -> bool:
        """Replace the record with `chunks` if it still holds `expected` (what the caller planned
        from); False, and nothing written, if another run changed it meanwhile."""
        stamp = self._now()
        text = json.dumps([[c.start.isoformat(), c.end.isoformat()] for c in chunks])

        def work(db: sqlite3.Connection) -> bool:
            if _stored_chunks(db, account, export) != list(expected):
                return False
            db.execute(
                "INSERT INTO auto_chunks (account, export, chunks, recorded_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(account, export) DO UPDATE SET "
                "chunks = excluded.chunks, recorded_at = excluded.recorded_at",
                (account, export, text, stamp),
            )
            return True

        return await self._run(work, write=True)

    # -- daily quotas (the `QuotaStore` of `ratelimit.py`) ------------------------------------

    async def used(self, name: QuotaName, day: date, account: str = "") -> int:
        def work(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT used FROM quota_use WHERE account = ? AND day = ? AND name = ?",
                (account, day.isoformat(), name),
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(work)

    async def spent(self, name: QuotaName, day: date, account: str = "") -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT spent FROM quota_use WHERE account = ? AND day = ? AND name = ?",
                (account, day.isoformat(), name),
            ).fetchone()
            return row is not None and bool(row[0])

        return await self._run(work)

    async def charge(self, name: QuotaName, day: date, limit: int, account: str = "") -> int | None:
        def work(db: sqlite3.Connection) -> int | None:
            row = db.execute(
                "SELECT used, spent FROM quota_use WHERE account = ? AND day = ? AND name = ?",
                (account, day.isoformat(), name),
            ).fetchone()
            used = 0 if row is None else int(row[0])
            if used >= limit or (row is not None and row[1]):
                return None
            db.execute(
                "INSERT INTO quota_use (account, day, name, used) VALUES (?, ?, ?, 1) "
                "ON CONFLICT(account, day, name) DO UPDATE SET used = used + 1",
                (account, day.isoformat(), name),
            )
            return used + 1

        return await self._run(work, write=True)

    async def exhaust(self, name: QuotaName, day: date, limit: int, account: str = "") -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO quota_use (account, day, name, used, spent) VALUES (?, ?, ?, 0, 1) "
                "ON CONFLICT(account, day, name) DO UPDATE SET spent = 1",
                (account, day.isoformat(), name),
            )

        await self._run(work, write=True)

    async def refund(self, name: QuotaName, day: date, account: str = "") -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE quota_use SET used = used - 1 "
                "WHERE account = ? AND day = ? AND name = ? AND used > 0",
                (account, day.isoformat(), name),
            )

        await self._run(work, write=True)

    async def quota_zone(self, account: str = "") -> int | None:
        def work(db: sqlite3.Connection) -> int | None:
            row = db.execute(
                "SELECT utc_offset_minutes FROM quota_zone WHERE account = ?", (account,)
            ).fetchone()
            return None if row is None else int(row[0])

        return await self._run(work)

    async def learn_quota_zone(self, minutes: int, account: str = "") -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO quota_zone (account, utc_offset_minutes) VALUES (?, ?) "
                "ON CONFLICT(account) DO UPDATE "
                "SET utc_offset_minutes = excluded.utc_offset_minutes",
                (account, minutes),
            )

        await self._run(work, write=True)

    async def quota_history(self) -> Sequence[tuple[str, date, str, int]]:
        """(account, day, quota, used) for every day the ledger counted."""

        def work(db: sqlite3.Connection) -> list[tuple[str, date, str, int]]:
            rows = db.execute(
                "SELECT account, day, name, used FROM quota_use ORDER BY account, day, name"
            )
            return [(a, date.fromisoformat(d), n, int(u)) for a, d, n, u in rows.fetchall()]

        return await self._run(work)
