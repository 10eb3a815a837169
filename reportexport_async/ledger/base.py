"""What both stores record about exports, written once: every call of `LedgerStore` as the
statements it runs (`sql.Tx`), the claim and lease decisions taken by the core
(`core.leases`). A store (`sqlite.Ledger`, `postgres.PostgresLedger`) only opens its database and
runs a call's statements in one transaction (`_run`); PostgreSQL replaces a few calls by one
statement each (a round trip is what a call costs there), with the same effect."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from ..core.chunking import Chunk
from ..core.leases import Claim, decide_claim, taken_from
from ..core.models import Job, JobStatus
from ..errors import LedgerError
from ..machine.clock import Clock
from .counters import Counters
from .records import (
    LedgerEntry,
    LedgerEvent,
    Row,
    account_of,
    account_pattern,
    entry_of,
    event_of,
    lease_alive,
    stamp,
)
from .sql import Tx, detail

__all__ = ["SharedLedger"]

#: The columns of a new intent (`claim`), in the order of `SharedLedger._intent`.
INTENT = (
    "INSERT INTO exports (fingerprint, canonical, endpoint, report_id, range_start, range_end, "
    "result_format, created_at, claimed_by, claimed_at, lease_until, account) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $10, $11) "
    "ON CONFLICT (fingerprint) DO NOTHING RETURNING *"
)
SELECT = "SELECT * FROM exports WHERE fingerprint = $1"
LEASE = (
    "UPDATE exports SET claimed_by = $1, claimed_at = $2, lease_until = $3 WHERE fingerprint = $4"
)
RELEASE = "UPDATE exports SET claimed_by = NULL, claimed_at = NULL, lease_until = NULL WHERE "
#: A worker's own rows, locked in fingerprint order, as every multi-row write does.
MINE = "fingerprint IN (SELECT fingerprint FROM exports WHERE claimed_by = $1 ORDER BY fingerprint FOR UPDATE)"  # noqa: E501
EVENT = "INSERT INTO events (fingerprint, at, kind, job_id, detail) VALUES ($1, $2, $3, $4, $5)"
FINALS = tuple(s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED))


T = TypeVar("T")


class SharedLedger:
    """The calls of `store.LedgerStore`, over a store's `_run`."""

    owner: str
    lease: timedelta
    clock: Clock

    async def _run(
        self, work: Callable[[Tx], Coroutine[Any, Any, T]], *, write: bool = True, one: bool = False
    ) -> T:
        """`work` in one transaction (`one`: a single statement, atomic by itself)."""
        raise NotImplementedError

    @cached_property
    def counters(self) -> Counters:
        """The daily and hourly counters: a store of their own over this ledger's transactions,
        the one a rate limiter is given (`RateLimiter(store=ledger.counters)`)."""
        return Counters(self._run)

    @property
    def _account_column(self) -> bool:
        """Whether the exports have their `account` column (a SQLite file read as it is, of a
        schema before 6, has not: its accounts are told apart in their canonical JSON)."""
        return True

    def _account_filter(self, account: str, params: list[Any]) -> str:
        """The condition selecting `account`'s exports, its parameter appended to `params`."""
        if self._account_column:
            params.append(account)
            return f"account = ${len(params)}"
        params.append(account_pattern(account))
        return f"canonical LIKE ${len(params)} ESCAPE '\\'"

    def _of_account(self, found: list[LedgerEntry], account: str | None) -> list[LedgerEntry]:
        """`found` (selected by `_account_filter`) checked against `account` where only a LIKE
        selected it: LIKE may ignore case."""
        if account is None or self._account_column:
            return found
        return [e for e in found if e.account == account]

    def _now(self) -> str:
        return stamp(self.clock.now()) or ""

    def _held(self, entry: LedgerEntry, now: datetime) -> bool:
        return lease_alive(entry, self.owner, now, self.lease)

    @staticmethod
    async def _event(
        tx: Tx, fingerprint: str, at: str, kind: str, job_id: str | None, data: Any = None
    ) -> None:
        await tx.execute(EVENT, fingerprint, at, kind, job_id, detail(data))

    async def _noted(
        self, update: str, args: Sequence[Any], at: str, kind: str, job_id: str | None,
        data: dict[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """Run `update` (of one export, `fingerprint = ...`) and, if it changed the row, write
        the history row (`kind`, `job_id`, `data`) of that export; the number of rows changed."""

        async def work(tx: Tx) -> int:
            row = await tx.row(f"{update} RETURNING fingerprint", *args)
            if row is not None:
                await self._event(tx, row["fingerprint"], at, kind, job_id, data)
            return 0 if row is None else 1

        return await self._run(work)

    # -- reading ----------------------------------------------------------------------------

    async def _entry(self, sql: str, *args: Any) -> LedgerEntry | None:
        row = await self._run(lambda tx: tx.row(sql, *args), write=False, one=True)
        return None if row is None else entry_of(row)

    async def _rows(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._run(lambda tx: tx.rows(sql, *args), write=False, one=True))

    async def get(self, fingerprint: str) -> LedgerEntry | None:
        return await self._entry(SELECT, fingerprint)

    async def get_many(self, fingerprints: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of `fingerprints` that exist (a plan looks up every chunk at once)."""
        keys, found = list(dict.fromkeys(fingerprints)), dict[str, LedgerEntry]()
        for start in range(0, len(keys), 500):  # below SQLite's limit of bound values
            part = keys[start : start + 500]
            marks = ", ".join(f"${n}" for n in range(1, len(part) + 1))
            rows = await self._rows(f"SELECT * FROM exports WHERE fingerprint IN ({marks})", *part)
            found.update((row["fingerprint"], entry_of(row)) for row in rows)
        return found

    async def entries(
        self, report_id: str | None = None, *, account: str | None = None
    ) -> list[LedgerEntry]:
        """Every entry, or those of `report_id`; with `account` (`core.fingerprint.account_key`)
        only that account's, selected in SQL: a ledger may serve thousands of accounts."""
        where, params = ["1 = 1"], list[Any]()
        if report_id is not None:
            params.append(report_id)
            where.append(f"report_id = ${len(params)}")
        if account is not None:
            where.append(self._account_filter(account, params))
        order = "created_at, fingerprint" if report_id is None else "range_start, created_at"
        rows = await self._rows(
            f"SELECT * FROM exports WHERE {' AND '.join(where)} ORDER BY {order}", *params
        )
        return self._of_account([entry_of(row) for row in rows], account)

    async def unfinished(self) -> list[LedgerEntry]:
        """Entries with a job that is not known to be final: a later run re-attaches to them."""
        rows = await self._rows(
            "SELECT * FROM exports WHERE job_id IS NOT NULL AND "
            "(status IS NULL OR status NOT IN ($1, $2, $3))",
            *FINALS,
        )
        return [entry_of(row) for row in rows]

    async def find(self, key: str, *, account: str | None = None) -> LedgerEntry | None:
        """An entry by fingerprint (or a unique prefix of it) or by job id; with `account`
        (`core.fingerprint.account_key`), only among that account's entries: job ids are the
        server's, and two accounts (two sandboxes of one seed) may use the same ones."""
        prefix = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = (
            "SELECT * FROM exports WHERE (fingerprint = $1 OR job_id = $1 "
            "OR fingerprint LIKE $2 ESCAPE '\\')"
        )
        params: list[Any] = [key, prefix]
        if account is not None:
            query += f" AND {self._account_filter(account, params)}"
        found = self._of_account(
            [entry_of(row) for row in await self._rows(query, *params)], account
        )
        if len(found) > 1:
            raise LedgerError(f"{key!r} matches more than one entry; give more characters")
        return found[0] if found else None

    async def history(self, key: str) -> list[LedgerEvent]:
        """Every event of an entry (by fingerprint, a unique prefix, or a job id), oldest first."""
        entry = await self.find(key)
        if entry is None:
            return []
        rows = await self._rows(
            "SELECT * FROM events WHERE fingerprint = $1 ORDER BY id", entry.fingerprint
        )
        return [event_of(row) for row in rows]

    async def replays_since(self, fingerprint: str, since: datetime) -> int:
        count = await self._run(
            lambda tx: tx.value(
                "SELECT COUNT(*) FROM events WHERE fingerprint = $1 AND kind = 'replay' "
                "AND at >= $2",
                fingerprint,
                stamp(since),
            ),
            write=False,
            one=True,
        )
        return int(count)

    # -- claims and leases ------------------------------------------------------------------

    def _intent(
        self, fingerprint: str, canonical: str, endpoint: str, report_id: str | None,
        range_start: date | None, range_end: date | None, result_format: str, at: str,
        until: str | None,
    ) -> tuple[Any, ...]:  # fmt: skip
        """The parameters of `INTENT`: the row of a new intent, claimed by this worker."""
        start = None if range_start is None else range_start.isoformat()
        end = None if range_end is None else range_end.isoformat()
        return (fingerprint, canonical, endpoint, report_id, start, end, result_format, at,
                self.owner, until, account_of(canonical))  # fmt: skip

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
        at, until = stamp(now) or "", stamp(now + self.lease)
        values = self._intent(
            fingerprint, canonical, endpoint, report_id, range_start, range_end, result_format,
            at, until,
        )  # fmt: skip

        inserted = await self._new_intent(values)
        if inserted is not None:
            return entry_of(inserted), True

        async def work(tx: Tx) -> tuple[LedgerEntry, bool]:
            row = await tx.row(f"{SELECT} FOR UPDATE", fingerprint)
            if row is None:
                row = await tx.row(INTENT, *values)
                if row is not None:
                    await self._event(tx, fingerprint, at, "intent", None, {"owner": self.owner})
                    return entry_of(row), True
                # Another worker's intent came first (rows are never deleted): wait for it.
                row = await tx.row(f"{SELECT} FOR UPDATE", fingerprint)
            assert row is not None
            entry = entry_of(row)
            decision = decide_claim(entry, self._held(entry, now))
            if decision is Claim.HELD:
                return entry, False
            if decision is Claim.FOLLOW:
                return await self._lease_to_me(tx, entry, at, until), False
            fresh = await tx.row(f"{LEASE} RETURNING *", self.owner, at, until, fingerprint)
            data = {"owner": self.owner, "took_over": entry.claimed_by}
            await self._event(tx, fingerprint, at, "intent", None, data)
            return entry_of(fresh or row), True

        return await self._run(work)

    async def _new_intent(self, values: tuple[Any, ...]) -> Row | None:
        """A store's shortcut for the common case of a claim, a new export: its intent recorded
        (`INTENT`'s `values`) with its history row, or None (then `claim` decides in one
        transaction). None here: on SQLite the transaction costs no more."""
        return None

    async def _lease_to_me(
        self, tx: Tx, entry: LedgerEntry, at: str, until: str | None
    ) -> LedgerEntry:
        """Lease a known job's chunk to this worker (a take-over is written to its history)."""
        fresh = await tx.row(f"{LEASE} RETURNING *", self.owner, at, until, entry.fingerprint)
        holder = taken_from(entry, self.owner)
        if holder is not None:
            data = {"owner": self.owner, "took_over": holder}
            await self._event(tx, entry.fingerprint, at, "lease", entry.job_id, data)
        return entry_of(fresh) if fresh is not None else entry

    async def take_lease(self, fingerprint: str) -> tuple[LedgerEntry | None, bool]:
        """Take (or renew) the lease of a known chunk unless another live worker holds it.
        Returns the entry (None when the ledger has none) and whether this worker holds it."""
        now = self.clock.now()
        at, until = stamp(now) or "", stamp(now + self.lease)
        # The common case, one statement: a lease nobody else holds (mine, or nobody's) is
        # free (`core.leases.lease_running`), and taking it records no event.
        taken = await self._run(
            lambda tx: tx.row(
                f"{LEASE} AND (claimed_by IS NULL OR claimed_by = $1) RETURNING *",
                self.owner, at, until, fingerprint,
            ),
            one=True,
        )  # fmt: skip
        if taken is not None:
            return entry_of(taken), True

        async def work(tx: Tx) -> tuple[LedgerEntry | None, bool]:
            row = await tx.row(f"{SELECT} FOR UPDATE", fingerprint)
            if row is None:
                return None, False
            entry = entry_of(row)
            if decide_claim(entry, self._held(entry, now)) is Claim.HELD:
                return entry, False
            return await self._lease_to_me(tx, entry, at, until), True

        return await self._run(work)

    async def renew_leases(self) -> int:
        """Push back the end of every lease this worker holds, in one statement."""
        until = stamp(self.clock.now() + self.lease)
        return await self._run(
            lambda tx: tx.execute(
                f"UPDATE exports SET lease_until = $2 WHERE {MINE}", self.owner, until
            ),
            one=True,
        )

    async def _release(self, where: str, *args: object) -> int:
        """Give back this worker's claims on the rows `where` selects (its parameters `args`
        after the owner, `$1`); the number of rows released."""
        return await self._run(lambda tx: tx.execute(RELEASE + where, self.owner, *args), one=True)

    async def release_lease(self, fingerprint: str) -> None:
        """Give back this worker's lease of one chunk (it stops following it)."""
        await self._release("fingerprint = $2 AND claimed_by = $1", fingerprint)

    async def release_leases(self) -> int:
        """Give back every lease this worker holds (its run is over): another worker may take
        those chunks at once instead of waiting for the leases to run out."""
        return await self._release(MINE)

    async def release_claim(self, fingerprint: str) -> None:
        """The submit failed before any job existed: let the next attempt claim at once."""
        await self._release("fingerprint = $2 AND claimed_by = $1 AND job_id IS NULL", fingerprint)

    # -- what happened to a job -------------------------------------------------------------

    async def record_submitted(self, fingerprint: str, job_id: str) -> None:
        """The job id, right after the submit answered. The claim stays: it is now the lease of
        the worker that follows the job to its download."""
        at, until = self._now(), stamp(self.clock.now() + self.lease)
        await self._noted(
            "UPDATE exports SET job_id = $1, status = $2, submitted_at = $3, status_at = $3, "
            "lease_until = CASE WHEN claimed_by = $4 THEN $5 ELSE lease_until END "
            "WHERE fingerprint = $6",
            (job_id, JobStatus.QUEUED.value, at, self.owner, until, fingerprint),
            at, "submitted", job_id,
        )  # fmt: skip

    async def forget_job(self, fingerprint: str, job_id: str) -> bool:
        """The server no longer knows `job_id` (404): the export needs a new submit. Its job,
        status and file are cleared (the history keeps them, as a `job_unknown` event), unless
        another process already recorded a newer job. True when the entry was cleared."""
        cleared = await self._noted(
            "UPDATE exports SET job_id = NULL, status = NULL, records = NULL, "
            "claimed_by = NULL, claimed_at = NULL, lease_until = NULL, submitted_at = NULL, "
            "completed_at = NULL, status_at = NULL, file_path = NULL, file_size = NULL, "
            "file_sha256 = NULL, downloaded_at = NULL WHERE fingerprint = $1 AND job_id = $2",
            (fingerprint, job_id),
            self._now(), "job_unknown", job_id,
        )  # fmt: skip
        return cleared > 0

    async def record_replay(
        self, fingerprint: str, old_job_id: str, job: Job, *, rule: str
    ) -> None:
        """A replay was made; `job` is the answer (its id may be new, docs/api-facts.md §2)."""
        at, status = self._now(), job.status.value
        await self._noted(
            "UPDATE exports SET job_id = $1, status = $2, status_at = $3, submitted_at = $3, "
            "replays = replays + 1, last_replay_at = $3, completed_at = NULL, "
            "file_sha256 = NULL, file_size = NULL, downloaded_at = NULL WHERE fingerprint = $4",
            (job.id, status, at, fingerprint),
            at, "replay", job.id, {"rule": rule, "old_job_id": old_job_id, "status": status},
        )  # fmt: skip

    async def record_status(self, fingerprint: str, job: Job) -> None:
        """A job's state as last seen (only changes are written to the history)."""
        await self.record_statuses([(fingerprint, job)])

    async def record_statuses(self, seen: Sequence[tuple[str, Job]]) -> None:
        """Several jobs' states in one transaction (a tracker refresh sees many at once)."""
        if not seen:
            return
        at = self._now()

        async def work(tx: Tx) -> None:
            for fingerprint, job in seen:
                status = job.status.value
                row = await tx.row("SELECT status, job_id FROM exports WHERE fingerprint = $1", fingerprint)  # fmt: skip  # noqa: E501
                done = job.status is JobStatus.COMPLETED
                completed = (stamp(job.completed_date) or at) if done else None
                await tx.execute(
                    "UPDATE exports SET job_id = $1, status = $2, records = COALESCE($3, records), "
                    "status_at = $4, completed_at = COALESCE($5, completed_at) "
                    "WHERE fingerprint = $6",
                    job.id, status, job.records_processed, at, completed, fingerprint,
                )  # fmt: skip
                if row is None or row["status"] != status or row["job_id"] != job.id:
                    data = {"status": status, "records": job.records_processed}
                    await self._event(tx, fingerprint, at, "status", job.id, data)

        await self._run(work)

    async def record_download(
        self, fingerprint: str, job_id: str, path: Path, size: int, sha256: str
    ) -> None:
        """A result was downloaded whole. The Download answers 200 only for a COMPLETED job
        (docs/api-facts.md §2), so this records that status too: a job tracked by postbacks alone is
        never seen COMPLETED by a status call, and the next run must know it is done."""
        at, done = self._now(), JobStatus.COMPLETED.value

        async def work(tx: Tx) -> None:
            row = await tx.row("SELECT status FROM exports WHERE fingerprint = $1", fingerprint)
            await tx.execute(
                "UPDATE exports SET job_id = $1, status = $2, status_at = $3, "
                "completed_at = COALESCE(completed_at, $3), file_path = $4, file_size = $5, "
                "file_sha256 = $6, downloaded_at = $3, claimed_by = NULL, claimed_at = NULL, "
                "lease_until = NULL WHERE fingerprint = $7",
                job_id, done, at, str(path), size, sha256, fingerprint,
            )  # fmt: skip
            if row is not None and row["status"] != done:
                await self._event(tx, fingerprint, at, "status", job_id, {"status": done})
            data = {"path": str(path), "size": size, "sha256": sha256}
            await self._event(tx, fingerprint, at, "download", job_id, data)

        await self._run(work)

    async def record_event(
        self,
        fingerprint: str,
        kind: str,
        job_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        at = self._now()
        await self._run(lambda tx: self._event(tx, fingerprint, at, kind, job_id, detail), one=True)

    # -- the chunks `chunk="auto"` chose ----------------------------------------------------

    @staticmethod
    async def _stored_chunks(tx: Tx, account: str, export: str, lock: str = "") -> list[Chunk]:
        text = await tx.value(
            f"SELECT chunks FROM auto_chunks WHERE account = $1 AND export = $2{lock}",
            account,
            export,
        )
        if text is None:
            return []
        try:
            return [
                Chunk(date.fromisoformat(a), date.fromisoformat(b)) for a, b in json.loads(text)
            ]
        except (TypeError, ValueError) as exc:  # a damaged record: the ledger's error
            raise LedgerError(f"the auto chunks of {export} are damaged: {exc}") from exc

    async def auto_chunks(self, account: str, export: str) -> list[Chunk]:
        """The chunks recorded for `export` (`core.fingerprint.export_key`) of `account`
        (`core.fingerprint.account_key`), in order; empty when none are."""
        return await self._run(
            lambda tx: self._stored_chunks(tx, account, export), write=False, one=True
        )

    async def record_auto_chunks(
        self, account: str, export: str, chunks: Sequence[Chunk], *, expected: Sequence[Chunk]
    ) -> bool:
        """Replace the record with `chunks` if it still holds `expected` (what the caller planned
        from); False, and nothing written, if another run changed it meanwhile."""
        at = self._now()
        text = json.dumps([[c.start.isoformat(), c.end.isoformat()] for c in chunks])

        async def work(tx: Tx) -> bool:
            await tx.lock(account + export)  # the row may not exist yet to be locked
            if await self._stored_chunks(tx, account, export, " FOR UPDATE") != list(expected):
                return False
            await tx.execute(
                "INSERT INTO auto_chunks (account, export, chunks, recorded_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (account, export) DO UPDATE SET "
                "chunks = excluded.chunks, recorded_at = excluded.recorded_at",
                account, export, text, at,
            )  # fmt: skip
            return True

        return await self._run(work)
