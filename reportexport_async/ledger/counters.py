"""The counters of the limits: the daily quotas of each account (what was charged, and whether the
server said a quota was spent), the account's quota day, and its hourly bucket. Shared by every
process and host on the ledger, so that they all spend one quota; the `QuotaStore` of
`transport/ratelimit.py`.

A small store of its own, beside the ledger's records rather than part of them: each ledger
makes one (`store.counters`) over its own database and transactions (`_run`), and the rate
limiter is given that object, never the ledger. So the limits are counted around each call
while the records of exports are written by the driver alone. Written once for both stores
(`sql.Tx`); the arithmetic is the core's (`core.quota`), and the charge's rule (never past the
limit, nothing once the server said the quota was spent) is one conditional statement: its
row's lock makes the check and the count one step for every worker on the account, in one
round trip."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

from ..core.quota import HourlyWindow
from ..errors import QuotaName
from .records import stamp
from .sql import Tx

__all__ = ["Counters", "Runner"]

T = TypeVar("T")
Work = Callable[[Tx], Coroutine[Any, Any, T]]

_WHERE = "WHERE account = $1 AND day = $2 AND name = $3"
_BUCKET = "SELECT lim, remaining, resets_at FROM hourly_bucket WHERE account = $1 FOR UPDATE"


class Runner(Protocol):
    """A store's way to run `work` in one transaction (`one`: a single statement, atomic by
    itself); a write on a read-only ledger is refused there."""

    async def __call__(self, work: Work[T], *, write: bool = True, one: bool = False) -> T: ...


class Counters:
    """The counters' calls, over the transactions of a store (SQLite's or PostgreSQL's)."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    def __repr__(self) -> str:
        return f"Counters({getattr(self._run, '__self__', None)!r})"

    async def used(self, name: QuotaName, day: date, account: str = "") -> int:
        used = await self._read_value(f"SELECT used FROM quota_use {_WHERE}", account, day, name)
        return 0 if used is None else int(used)

    async def spent(self, name: QuotaName, day: date, account: str = "") -> bool:
        return bool(
            await self._read_value(f"SELECT spent FROM quota_use {_WHERE}", account, day, name)
        )

    async def _read_value(self, sql: str, *args: Any) -> Any:
        values = [a.isoformat() if isinstance(a, date) else a for a in args]
        return await self._run(lambda tx: tx.value(sql, *values), write=False, one=True)

    async def charge(self, name: QuotaName, day: date, limit: int, account: str = "") -> int | None:
        """Count one use of the quota `name` on `day`; the count, or None (nothing counted) when
        it would pass `limit` or the server said the quota is spent."""
        if limit <= 0:
            return None
        used = await self._run(
            lambda tx: tx.value(
                "INSERT INTO quota_use AS q (account, day, name, used) VALUES ($1, $2, $3, 1) "
                "ON CONFLICT (account, day, name) DO UPDATE SET used = q.used + 1 "
                "WHERE q.used < $4 AND q.spent = 0 RETURNING used",
                account, day.isoformat(), name, limit,
            ),
            one=True,
        )  # fmt: skip
        return None if used is None else int(used)

    async def exhaust(self, name: QuotaName, day: date, limit: int, account: str = "") -> None:
        await self._run(
            lambda tx: tx.execute(
                "INSERT INTO quota_use (account, day, name, used, spent) VALUES ($1, $2, $3, 0, 1) "
                "ON CONFLICT (account, day, name) DO UPDATE SET spent = 1",
                account, day.isoformat(), name,
            ),
            one=True,
        )  # fmt: skip

    async def refund(self, name: QuotaName, day: date, account: str = "") -> None:
        await self._run(
            lambda tx: tx.execute(
                f"UPDATE quota_use SET used = used - 1 {_WHERE} AND used > 0",
                account, day.isoformat(), name,
            ),
            one=True,
        )  # fmt: skip

    async def quota_zone(self, account: str = "") -> int | None:
        minutes = await self._read_value(
            "SELECT utc_offset_minutes FROM quota_zone WHERE account = $1", account
        )
        return None if minutes is None else int(minutes)

    async def learn_quota_zone(self, minutes: int, account: str = "") -> None:
        await self._run(
            lambda tx: tx.execute(
                "INSERT INTO quota_zone (account, utc_offset_minutes) VALUES ($1, $2) "
                "ON CONFLICT (account) DO UPDATE "
                "SET utc_offset_minutes = excluded.utc_offset_minutes",
                account, minutes,
            ),
            one=True,
        )  # fmt: skip

    async def quota_history(self) -> Sequence[tuple[str, date, str, int]]:
        """(account, day, quota, used) for every day the ledger counted."""
        rows = await self._run(
            lambda tx: tx.rows(
                "SELECT account, day, name, used FROM quota_use ORDER BY account, day, name"
            ),
            write=False,
            one=True,
        )
        return [
            (r["account"], date.fromisoformat(r["day"]), r["name"], int(r["used"])) for r in rows
        ]

    async def hourly(
        self, account: str, change: Callable[[HourlyWindow | None], tuple[HourlyWindow, T]]
    ) -> T:
        """Read-modify-write the account's hourly bucket in one transaction: `change` (the
        core's arithmetic) gets the stored window (None before the first call) and returns the
        window to store and its answer."""

        async def work(tx: Tx) -> T:
            row = await tx.row(_BUCKET, account)
            if row is None:  # the first call of this account: make the row, then lock it
                await tx.lock("hourly" + account)
                row = await tx.row(_BUCKET, account)
            window = (
                None
                if row is None
                else HourlyWindow(
                    int(row["lim"]), int(row["remaining"]), datetime.fromisoformat(row["resets_at"])
                )
            )
            new, answer = change(window)
            if new != window:
                await tx.execute(
                    "INSERT INTO hourly_bucket (account, lim, remaining, resets_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (account) DO UPDATE SET "
                    "lim = excluded.lim, remaining = excluded.remaining, "
                    "resets_at = excluded.resets_at",
                    account, new.limit, new.remaining, stamp(new.resets_at),
                )  # fmt: skip
            return answer

        return await self._run(work)
