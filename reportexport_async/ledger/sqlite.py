"""The ledger in one SQLite file (by default `ledger.sqlite` in the user's data folder: see
`ledger.location`), the embedded default: stdlib `sqlite3` behind one thread of its own, WAL
journal, a busy timeout, a schema version (`PRAGMA user_version`) with migrations, and every
read-modify-write in one `BEGIN IMMEDIATE` transaction, so many tasks of one process and several
processes on one machine can share it. What is recorded, and how, is `base.SharedLedger`'s; this
module opens the file, runs the calls, and names what SQLite's errors mean for the file.

Group commit: the ledger's thread takes every call waiting for it at once and runs the writes among
them in one transaction, each in a savepoint of its own (one that fails is rolled back alone and
raises to its caller). Every call still returns only once its write is committed: an intent is
recorded before its submit is sent, a job id before anything depends on it, exactly as with one
transaction per call; many tasks writing at once just share a commit and a thread hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ..errors import LedgerError
from ..machine.clock import Clock, SystemClock
from .base import SharedLedger
from .location import LEGACY_FOLDER, default_ledger
from .records import CLAIM_TIMEOUT, Row, account_of, new_owner
from .schema import ACCOUNT_OF, MIGRATIONS, SCHEMA_VERSION, tables
from .sql import Tx, drive, sqlite_dialect

__all__ = ["DEFAULT_LEDGER_PATH", "GROUP_LIMIT", "Ledger"]

#: Stands for the default ledger where a path is expected (`Client(ledger=...)`'s default): the
#: file `ledger.location.default_ledger()` chooses when the ledger is made. It spells where
#: versions before the user's data folder kept it, relative to the current folder.
DEFAULT_LEDGER_PATH = LEGACY_FOLDER / "ledger.sqlite"
T = TypeVar("T")

log = logging.getLogger("reportexport_async.ledger")

#: The most calls one transaction of the ledger's thread takes (a bound on how long a batch
#: holds SQLite's write lock when many tasks write at once).
GROUP_LIMIT = 64


def _code(exc: sqlite3.Error) -> str:
    """SQLite's result code name, e.g. `SQLITE_READONLY_DBMOVED` ("" when it has none)."""
    return str(getattr(exc, "sqlite_errorname", "") or "")


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


class Ledger(SharedLedger):
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
        path: str | Path | None = None,
        *,
        clock: Clock | None = None,
        busy_timeout: float = 30.0,
        read_only: bool = False,
        lease: timedelta = CLAIM_TIMEOUT,
    ) -> None:
        if path is None or path is DEFAULT_LEDGER_PATH:  # the default: nothing in the cwd
            found = default_ledger()
            notice = found.notice("ledger='{}'")
            if notice is not None:
                log.warning("%s", notice)
            path = found.path
        self.path = Path(path)
        #: How long a claim lasts without renewal (`renew_leases`).
        self.lease = lease
        self.clock: Clock = clock or SystemClock()
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        #: Who holds a claim on a submit: host, process and a nonce, unique per ledger object.
        self.owner = new_owner()
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

    @property
    def _account_column(self) -> bool:
        return self._schema >= 6  # a read-only file of an older schema is read as it is

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < (3, 35, 0):  # RETURNING, used by `base`
            raise LedgerError(
                f"the ledger needs SQLite 3.35 or newer; this Python has {sqlite3.sqlite_version}"
            )
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

    def _open_file(self, target: str, uri: bool = False) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                target,
                uri=uri,
                timeout=self.busy_timeout,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
                check_same_thread=False,  # used from the ledger's thread, one call at a time
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        db.row_factory = sqlite3.Row
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            db.close()
            raise self._error(exc) from exc
        return db

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
        db = self._open_file(where)
        try:
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
            db = self._open_file(target, uri=True)
            try:
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
        # Step 6 fills each export's account from its canonical JSON, as a new row gets it.
        db.create_function(ACCOUNT_OF, 1, account_of, deterministic=True)
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            self._refuse_newer(version)  # again: another process may have migrated meanwhile
            # A new file gets the current tables; an older one each step it missed.
            steps = [tables({"int": "INTEGER", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"})]
            for step in steps if version == 0 else MIGRATIONS[version:]:
                for statement in step.split(";"):
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

    async def _run(
        self, work: Callable[[Tx], Coroutine[Any, Any, T]], *, write: bool = True, one: bool = False
    ) -> T:
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
        call = _Call(lambda db: drive(work(_SqliteTx(db))), write, loop, loop.create_future())
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


class _SqliteTx:
    """`sql.Tx` on the ledger thread's connection: every statement done when it returns."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def rows(self, sql: str, *args: Any) -> Sequence[Row]:
        # fetchall: a statement left unfinished would keep its savepoint from being released.
        rows: list[Row] = self.db.execute(sqlite_dialect(sql), args).fetchall()
        return rows

    async def row(self, sql: str, *args: Any) -> Row | None:
        rows = await self.rows(sql, *args)
        return rows[0] if rows else None

    async def value(self, sql: str, *args: Any) -> Any:
        rows = self.db.execute(sqlite_dialect(sql), args).fetchall()
        return rows[0][0] if rows else None

    async def execute(self, sql: str, *args: Any) -> int:
        return self.db.execute(sqlite_dialect(sql), args).rowcount

    async def lock(self, key: str) -> None:
        """Nothing: a write transaction holds the whole file."""
