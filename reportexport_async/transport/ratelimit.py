"""One rate limiter per account, shared by every task and every client object given it.

It holds three limits (docs/api-facts.md §5):

- the hourly bucket (1,000 calls by default), a fixed window corrected by the `X-RateLimit-*`
  headers of every answer; a call waits for room rather than provoking a 429;
- the daily ReportExport and ClickExport quotas (100 and 10): a call that would exceed one fails at
  once with `QuotaExhausted` carrying when the quota resets, instead of sleeping for hours;
- a concurrency limit on calls in flight.

The arithmetic lives in the pure core (`core.quota`); this module owns the clock, the lock and the
waiting. Today's daily use is kept by a `QuotaStore`: in memory by default, in the ledger once it
exists (its `counters`, a store of their own), so it survives restarts and is shared by
processes.

A daily quota is charged when its call is sent, and refunded when the answer shows the server did
not count it (`core.quota.counted_by_server`: never connected, 401/403, 429, a gateway's 5xx), so
the local count follows the server's. The quota day is the account's, on the server's clock (the
session makes the limiter's clock its `transport.server_clock.ServerClock`): UTC until a daily-quota
429 tells when the server's day ends; that time zone is then remembered by the store.

When the store is a ledger's counters (it has `hourly`), the hourly bucket is kept there too, so
every process and host on one ledger spends one bucket per account: the limiter takes
`SHARED_HOURLY_BATCH` calls at a time (a hundredth of what is left, when that is more, up to
`SHARED_HOURLY_BATCH_MAX`) from the stored bucket in one transaction (the headers seen since the
last take are applied in the same transaction), and hands them out locally. Calls taken but not
used when the window ends are lost, never handed out twice.

Nothing waits in silence: every wait for the hourly bucket is announced to the listeners
(`add_listener`) with what it waits for and until when.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Protocol, TypeVar

import anyio

from ..core.policies import RateLimitPolicy
from ..core.quota import (
    DailyQuota,
    HourlyWindow,
    account_reset,
    charged_days,
    daily_quota,
    learned_zone,
    quota_day_bounds,
    zone_minutes,
    zone_of_minutes,
)
from ..core.ratelimit_headers import RateLimitInfo
from ..core.requests import Endpoint
from ..errors import ConfigurationError, QuotaExhausted, QuotaName
from ..machine.clock import Clock, SystemClock

__all__ = ["Charge", "LimiterWait", "MemoryQuotaStore", "QuotaStore", "RateLimiter"]

#: Calls the limiter takes at once from a bucket kept in a shared store (one transaction): at
#: least `SHARED_HOURLY_BATCH`, and a hundredth of what the bucket has left when that is more
#: (up to `SHARED_HOURLY_BATCH_MAX`), so a large bucket costs a transaction every many calls.
SHARED_HOURLY_BATCH = 5
SHARED_HOURLY_SHARE = 100
SHARED_HOURLY_BATCH_MAX = 50


@dataclass(frozen=True, slots=True)
class Charge:
    """The daily-quota units one call took: `refund` gives them back when the server did not
    count the call."""

    name: QuotaName
    days: tuple[date, ...]
    account: str


@dataclass(frozen=True, slots=True)
class LimiterWait:
    """A wait the limiter is about to make: `what` it waits for, `until` when."""

    what: str
    until: datetime


_A = TypeVar("_A")


class QuotaStore(Protocol):
    """Where the daily quotas' use is counted, per account (`account` is the limiter's key:
    origin, account type and SID). `charge` checks and counts in one step."""

    async def used(self, name: QuotaName, day: date, account: str = "") -> int: ...

    async def charge(self, name: QuotaName, day: date, limit: int, account: str = "") -> int | None:
        """Count one call if fewer than `limit` are used on `day`; return the new count, or
        None when the quota is spent (nothing counted)."""
        ...

    async def exhaust(self, name: QuotaName, day: date, limit: int, account: str = "") -> None:
        """Record that the server refused the quota for `day`: it is spent, whatever the count
        (which stays what the server counted)."""
        ...

    async def spent(self, name: QuotaName, day: date, account: str = "") -> bool:
        """Whether the server refused the quota for `day`."""
        ...

    async def refund(self, name: QuotaName, day: date, account: str = "") -> None:
        """Give back one unit charged on `day` (never below zero): the server did not count it."""
        ...

    async def quota_zone(self, account: str = "") -> int | None:
        """The account's quota day as a UTC offset in minutes, once learned (else None)."""
        ...

    async def learn_quota_zone(self, minutes: int, account: str = "") -> None:
        """Remember the account's quota day offset, learned from the server's reset time."""
        ...


class SharedHourly(Protocol):
    """A store's transaction on an account's hourly bucket (`ledger.counters.Counters.hourly`):
    `change` gets the stored window and returns the window to store and an answer."""

    async def __call__(
        self,
        account: str,
        change: Callable[[HourlyWindow | None], tuple[HourlyWindow, _A]],
    ) -> _A: ...


class MemoryQuotaStore:
    """Daily use in memory: right for one process that does not restart."""

    def __init__(self) -> None:
        self._used: dict[tuple[str, QuotaName, date], int] = {}
        self._spent: set[tuple[str, QuotaName, date]] = set()
        self._zones: dict[str, int] = {}

    async def used(self, name: QuotaName, day: date, account: str = "") -> int:
        return self._used.get((account, name, day), 0)

    async def charge(self, name: QuotaName, day: date, limit: int, account: str = "") -> int | None:
        current = self._used.get((account, name, day), 0)
        if current >= limit or (account, name, day) in self._spent:
            return None
        self._used[(account, name, day)] = current + 1
        return current + 1

    async def exhaust(self, name: QuotaName, day: date, limit: int, account: str = "") -> None:
        self._spent.add((account, name, day))

    async def spent(self, name: QuotaName, day: date, account: str = "") -> bool:
        return (account, name, day) in self._spent

    async def refund(self, name: QuotaName, day: date, account: str = "") -> None:
        key = (account, name, day)
        self._used[key] = max(0, self._used.get(key, 0) - 1)

    async def quota_zone(self, account: str = "") -> int | None:
        return self._zones.get(account)

    async def learn_quota_zone(self, minutes: int, account: str = "") -> None:
        self._zones[account] = minutes


class RateLimiter:
    """The account's limits. Give the same instance to every client of one account."""

    def __init__(
        self,
        policy: RateLimitPolicy | None = None,
        *,
        clock: Clock | None = None,
        store: QuotaStore | None = None,
    ) -> None:
        self.policy = policy or RateLimitPolicy()
        self.clock: Clock = clock or SystemClock()
        if store is not None and not callable(getattr(store, "charge", None)):
            # A ledger keeps its counters in a store of its own: the limiter never holds the
            # ledger itself (the records of exports are written by the driver alone).
            raise ConfigurationError(
                "store", "give a QuotaStore, such as a ledger's counters: store=ledger.counters"
            )
        self.store: QuotaStore = store or MemoryQuotaStore()
        #: The account this limiter counts for (set by the first session that uses it).
        self.account: str | None = None
        self._hourly: HourlyWindow | None = None
        self._lock: anyio.Lock | None = None
        self._in_flight: anyio.Semaphore | None = None
        #: The account's quota day, once the server told it (None: the policy's zone).
        self._zone: tzinfo | None = None
        self._zone_loaded = False
        self._listeners: list[Callable[[LimiterWait], None]] = []
        #: The shared bucket's transaction, when the store keeps one (a ledger).
        self._shared: SharedHourly | None = getattr(self.store, "hourly", None)
        self._granted = 0  # calls taken from the shared bucket, not handed out yet
        self._granted_until: datetime | None = None
        self._seen: RateLimitInfo | None = None  # headers not yet applied to the shared bucket

    def __repr__(self) -> str:
        window = self._hourly
        left = "unknown" if window is None else window.remaining
        return f"RateLimiter(hourly_limit={self.policy.hourly_limit}, remaining={left})"

    # anyio primitives are made on first use, inside the event loop that uses them.
    @property
    def _guard(self) -> anyio.Lock:
        if self._lock is None:
            # Fast acquire: a free lock is taken without a turn of the event loop (held only
            # around arithmetic, it is nearly always free; every call takes it twice).
            self._lock = anyio.Lock(fast_acquire=True)
        return self._lock

    @asynccontextmanager
    async def in_flight(self) -> AsyncIterator[None]:
        """Hold one of the `max_concurrent_requests` slots for the duration of a call."""
        if self._in_flight is None:
            self._in_flight = anyio.Semaphore(
                self.policy.max_concurrent_requests, fast_acquire=True
            )
        async with self._in_flight:
            yield

    def _daily_limit(self, name: QuotaName) -> int | None:
        if name == "ReportExport":
            return self.policy.daily_report_export
        if name == "ClickExport":
            return self.policy.daily_click_export
        return None

    @property
    def timezone(self) -> tzinfo:
        """The time zone of the account's quota day: learned from the server's daily-quota reset,
        else the policy's `quota_timezone` (UTC by default)."""
        return self._zone or self.policy.quota_timezone

    async def _load_zone(self) -> None:
        if self._zone_loaded:
            return
        self._zone_loaded = True
        minutes = await self.store.quota_zone(self.account or "")
        if minutes is not None:
            self._zone = zone_of_minutes(minutes)

    async def account_timezone(self) -> tzinfo:
        """`timezone`, after reading what the store learned in earlier runs."""
        await self._load_zone()
        return self.timezone

    def _day(self, now: datetime) -> date:
        return now.astimezone(self.timezone).date()

    def add_listener(self, listener: Callable[[LimiterWait], None]) -> None:
        """Call `listener` before every wait for the hourly bucket."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[LimiterWait], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _announce(self, what: str, until: datetime) -> None:
        for listener in list(self._listeners):
            listener(LimiterWait(what, until))

    async def daily(self, name: QuotaName) -> DailyQuota | None:
        """Today's state of a daily quota (None when that quota is switched off)."""
        limit = self._daily_limit(name)
        if limit is None:
            return None
        await self._load_zone()
        now = self.clock.now()
        day, account = self._day(now), self.account or ""
        used = await self.store.used(name, day, account)
        if await self.store.spent(name, day, account):
            used = limit  # the server said so, whatever the count
        return daily_quota(name, limit, min(used, limit), now, self.timezone)

    def bind(self, account: str) -> None:
        """Tie the limiter to one account; a limiter is never shared between accounts."""
        if self.account is None:
            self.account = account
        elif self.account != account:
            raise ConfigurationError(
                "limiter", "this RateLimiter already counts for another account; make one each"
            )

    @property
    def hourly(self) -> HourlyWindow | None:
        """The current view of the hourly bucket (None before the first call)."""
        return self._hourly

    async def acquire(self, endpoint: Endpoint) -> Charge | None:
        """Take room for one call: fail at once on a spent daily quota, wait for the hourly
        bucket otherwise. The daily quota is charged last, once nothing is left to wait for, so
        the call is counted on the day it is sent (a wait that crosses midnight would otherwise
        charge yesterday and let today go one over the server's count). Returns what was
        charged, for `refund`."""
        name = endpoint.daily_quota
        limit = self._daily_limit(name) if name else None
        if limit is not None:
            await self._load_zone()
        while True:
            async with self._guard:
                now = self.clock.now()
                if self._shared is not None:
                    window, wait = await self._take_shared(now)
                else:
                    window = self._hourly or HourlyWindow.fresh(self.policy.hourly_limit, now)
                    window, wait = window.acquire(now, reserve=self.policy.safety_margin)
                self._hourly = window
            if wait <= 0:
                break
            if name is not None and limit is not None:
                await self._refuse_if_spent(name, limit)  # no waiting for a spent quota
            # Wait for the window to roll over instead of provoking a 429.
            self._announce("the hourly API limit", window.resets_at)
            await self.clock.sleep(wait)
        if name is None or limit is None:
            return None
        now = self.clock.now()
        account = self.account or ""
        today, *also = charged_days(now, self.timezone, self.policy.quota_day_guard)
        counted = await self.store.charge(name, today, limit, account)
        if counted is None:
            raise self._spent(name, limit, now)
        days = [today]
        for day in also:  # near midnight: the server may count it on the next day too (if
            # that day is somehow full already, the server will say so)
            if await self.store.charge(name, day, limit, account) is not None:
                days.append(day)
        return Charge(name, tuple(days), account)

    async def _take_shared(self, now: datetime) -> tuple[HourlyWindow, float]:
        """One call from the calls taken before, or a new batch from the shared bucket (the
        headers seen since applied first). Under `_guard`."""
        assert self._shared is not None
        until = self._granted_until
        if self._granted > 0 and until is not None and now < until and self._hourly is not None:
            self._granted -= 1
            return self._hourly, 0.0
        seen, self._seen = self._seen, None
        limit, reserve = self.policy.hourly_limit, self.policy.safety_margin

        def change(
            stored: HourlyWindow | None,
        ) -> tuple[HourlyWindow, tuple[HourlyWindow, int, float]]:
            window = (stored or HourlyWindow.fresh(limit, now)).roll(now)
            if seen is not None and (seen.reset_at is None or seen.reset_at > now):
                window = window.observe(seen, now)  # a stale window's headers are dropped
            share = window.remaining // SHARED_HOURLY_SHARE
            batch = max(SHARED_HOURLY_BATCH, min(SHARED_HOURLY_BATCH_MAX, share))
            for count in (batch, 1):
                taken, wait = window.acquire(now, count=count, reserve=reserve)
                if wait <= 0:
                    return taken, (taken, count, 0.0)
            return window, (window, 0, window.wait_for(now, reserve=reserve))

        window, count, wait = await self._shared(self.account or "", change)
        self._granted, self._granted_until = max(0, count - 1), window.resets_at
        return window, wait

    async def refund(self, charge: Charge | None) -> None:
        """The server did not count the call `charge` was for: give its units back."""
        if charge is None:
            return
        for day in charge.days:
            await self.store.refund(charge.name, day, charge.account)

    async def counted_at(self, charge: Charge, now: datetime) -> None:
        """The server answered the call `charge` was for at `now` (its time). When that is past
        every day charged (the call was held up beyond the account's midnight and the guard
        around it), it is charged on the answer's day too: the server may have counted it
        there, and that day under-counted would let the run go one over the server's count. A
        day already full stays full (the server says so on the next call)."""
        day = self._day(now)
        if day <= max(charge.days):
            return
        limit = self._daily_limit(charge.name)
        if limit is not None:
            await self.store.charge(charge.name, day, limit, charge.account)

    async def _refuse_if_spent(self, name: QuotaName, limit: int) -> None:
        """Fail fast, before a wait for the hourly bucket, when today's quota is used up."""
        now = self.clock.now()
        day, account = self._day(now), self.account or ""
        if await self.store.used(name, day, account) >= limit or await self.store.spent(
            name, day, account
        ):
            raise self._spent(name, limit, now)

    def _spent(self, name: QuotaName, limit: int, now: datetime) -> QuotaExhausted:
        _, resets_at = quota_day_bounds(now, self.timezone)
        return QuotaExhausted(name, limit=limit, resets_at=resets_at, used=limit)

    async def observe(self, info: RateLimitInfo) -> None:
        """Correct the hourly view with what an answer's headers said."""
        if info.is_empty:
            return
        async with self._guard:
            now = self.clock.now()
            window = self._hourly or HourlyWindow.fresh(self.policy.hourly_limit, now)
            self._hourly = window.observe(info, now)
            if self._shared is not None:
                # Applied to the shared bucket with the next batch taken; calls this process
                # took but has not used stay its own unless the server says the bucket is empty.
                self._seen = info
                if self._hourly.remaining <= 0 and info.retry_after is None:
                    self._granted = 0

    async def hold(self, seconds: float) -> None:
        """A 429 said to wait `seconds`: empty the hourly bucket until then, for every task."""
        async with self._guard:
            now = self.clock.now()
            window = self._hourly or HourlyWindow.fresh(self.policy.hourly_limit, now)
            until = now + timedelta(seconds=max(0.0, seconds))
            self._hourly = replace(window, remaining=0, resets_at=until)
            if self._shared is not None:  # every worker waits, not only this one
                self._granted = 0
                held = self._hourly

                def empty(stored: HourlyWindow | None) -> tuple[HourlyWindow, None]:
                    return held, None

                await self._shared(self.account or "", empty)
        self._announce("the hourly API limit (the server answered 429)", until)

    async def exhausted(
        self, name: QuotaName, *, resets_at: datetime | None = None
    ) -> QuotaExhausted:
        """The server refused a daily quota: remember it until the day ends (other processes
        sharing the store stop spending too), and return the exception that says so. The reset
        the server sent is the end of the account's day: its time zone is learned from it."""
        limit = self._daily_limit(name) or 0
        now = self.clock.now()
        await self._load_zone()
        zone = learned_zone(resets_at, now, self.timezone)
        if zone is not None:
            self._zone = zone
            await self.store.learn_quota_zone(zone_minutes(zone), self.account or "")
        await self.store.exhaust(name, self._day(now), limit, self.account or "")
        resets_at = account_reset(resets_at, now, self.timezone)
        return QuotaExhausted(name, limit=limit, resets_at=resets_at, used=limit)
