"""The server's clock: the one "now" of every judgement of time (docs/guide.md, "Whose clock").

The account's day, the quota day and its reset, the replay guard, the settle window, the refresh
hour, the account's time zone, the ledger's stamps and the moments named in messages are all
taken on the server's clock, as its answers tell it (their `Date` header, `core.server_time`).
The machine's clock only measures the time since the last answer: a machine whose clock is
hours off changes no decision, and a server moved a day (a sandbox) is a new day for every rule
at once.

One `ServerClock` per account and server: the session observes every answer on it, and the
`Client` owns it (`client.clock`). It is a `Clock`, so everything that takes one takes it.
Before its first answer it is the machine's clock; `fresh_now` asks the server first (one call
that spends no quota) when no answer is recent enough to decide the day by.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

import anyio

from ..core.server_time import corrected_offset, server_date
from ..machine.clock import Clock, SystemClock

__all__ = ["FRESH_SECONDS", "ServerClock"]

#: An observation older than this (seconds of the machine's clock) is not trusted to decide
#: the day: a run that would decide by it asks the server first.
FRESH_SECONDS = 300.0


class ServerClock:
    """The server's time: the `machine` clock plus the offset its answers showed."""

    def __init__(self, machine: Clock | None = None) -> None:
        self.machine: Clock = machine or SystemClock()
        self._offset = 0.0
        self._seen_at: datetime | None = None  # on the machine's clock
        self._probe: Callable[[], Awaitable[object]] | None = None
        self._asking: anyio.Lock | None = None  # made in the event loop that uses it
        #: Whether a call that spends the daily quota asks the server first when no recent
        #: answer says what time it is (the `Client` sets it; single calls make no hidden call).
        self.ask_before_spending = False

    def __repr__(self) -> str:
        seen = "never observed" if self._seen_at is None else f"offset={self._offset:+.0f}s"
        return f"ServerClock({self.machine!r}, {seen})"

    def now(self) -> datetime:
        """The server's time now (the machine's until its first answer)."""
        return self.machine.now() + timedelta(seconds=self._offset)

    async def sleep(self, seconds: float) -> None:
        await self.machine.sleep(seconds)

    @property
    def offset(self) -> float:
        """Seconds the server's clock is ahead of the machine's (0 before any answer)."""
        return self._offset

    @property
    def observed(self) -> bool:
        return self._seen_at is not None

    def age(self) -> float | None:
        """Seconds of the machine's clock since the last answer (None: never observed)."""
        if self._seen_at is None:
            return None
        return (self.machine.now() - self._seen_at).total_seconds()

    def observe(self, headers: Mapping[str, str]) -> None:
        """An answer arrived now: its `Date` corrects the offset (headers without one: nothing)."""
        server = server_date(headers)
        if server is None:
            return
        machine_now = self.machine.now()
        self._offset = corrected_offset(self._offset, server, machine_now)
        self._seen_at = machine_now

    def set_probe(self, probe: Callable[[], Awaitable[object]]) -> None:
        """The call `fresh_now` makes to hear from the server: one that spends no quota."""
        self._probe = probe

    async def fresh_now(self, max_age: float = FRESH_SECONDS) -> datetime:
        """The server's time now, from an answer at most `max_age` seconds old: asks the server
        first (the probe) when there is none. A run that may spend anything, or that decides
        the day, starts here."""
        if self._probe is None or self._fresh(max_age):
            return self.now()
        if self._asking is None:
            self._asking = anyio.Lock()
        async with self._asking:  # many tasks at once: one of them asks
            if not self._fresh(max_age):
                await self._probe()
        return self.now()

    def _fresh(self, max_age: float) -> bool:
        age = self.age()
        return age is not None and 0 <= age <= max_age
