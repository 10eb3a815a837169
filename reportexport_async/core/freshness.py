"""Keeping a dataset current, as pure rules: which day it is, which chunks are final, which are
refreshed today, and which wait for later in the day.

The guide's rules 4 to 6 (docs/guide.md): refresh only with Replay and only when new data is
expected, at most once a day; a request without dates makes a new job only on a new calendar day;
data for recent days is still being completed, so the freshest results come later in the day.

- Which day it is comes from the server's clock (every `now` here is the server's, read from
  the `Date` header of its answers: `server_clock`) in the account's time zone: a machine whose
  clock is off never takes a day for another. The last complete day is the day before.
- A chunk's data is as of the day its job last completed (`fetched_on`). A chunk fetched more than
  `settle_days` days after its last day is **final**: its days had settled, and it costs nothing
  ever again. The replay guard's `fresh_data` rule (`core.replay`) is the same test.
- An unsettled chunk is **refreshed** (its own job replayed) at most once a day: not again on a
  day it was fetched or replayed. A chunk that holds the last complete day is refreshed only from
  `refresh_hour` of the account's day (**deferred** before that); and when it was fetched today
  before that hour, once more after it.
- A chunk never fetched is **new** when it ends inside the settle window (the latest days) and
  **history** otherwise: within a day's quota new days go first, then refreshes, then history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal

from .chunking import Chunk

__all__ = [
    "DEFAULT_REFRESH_HOUR",
    "DEFAULT_SETTLE_DAYS",
    "ChunkFreshness",
    "FreshnessPolicy",
    "Verdict",
    "account_day",
    "judge_fetched",
    "judge_unfetched",
]

#: Days a day's data keeps changing after it ends (the sandbox's `settle_days` default).
DEFAULT_SETTLE_DAYS = 3
#: The hour of the account's day from which the latest day is refreshed. Chosen from the
#: sandbox's data: a day gains its rows evenly over 1 + settle_days days, so by noon the day
#: before has gained half of what it gains before the next day's run (the documentation's sync
#: guide has the reasoning).
DEFAULT_REFRESH_HOUR = 12

ChunkFreshness = Literal["new", "history", "resume", "refresh", "deferred", "fresh", "final"]


@dataclass(frozen=True, slots=True)
class FreshnessPolicy:
    settle_days: int = DEFAULT_SETTLE_DAYS
    refresh_hour: int = DEFAULT_REFRESH_HOUR

    def __post_init__(self) -> None:
        if self.settle_days < 0:
            raise ValueError(f"the settle window must be 0 days or more, got {self.settle_days}")
        if not 0 <= self.refresh_hour <= 23:
            raise ValueError(f"the refresh hour must be 0 to 23, got {self.refresh_hour}")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a run does with one chunk, why, and (`deferred`) from when it may."""

    kind: ChunkFreshness
    reason: str
    until: datetime | None = None


def account_day(now: datetime, zone: tzinfo) -> date:
    """The account's calendar day at `now` (on the server's clock)."""
    return now.astimezone(zone).date()


def _is_final(chunk: Chunk, fetched_on: date, policy: FreshnessPolicy) -> bool:
    return (fetched_on - chunk.end).days > policy.settle_days


def judge_unfetched(chunk: Chunk, last_day: date, policy: FreshnessPolicy) -> Verdict:
    """A chunk with no file yet: a new day (inside the settle window) or history."""
    if chunk.end >= last_day - timedelta(days=policy.settle_days):
        return Verdict("new", "a new day: submitted first")
    return Verdict("history", "history never fetched: submitted after new days and refreshes")


def judge_fetched(
    chunk: Chunk,
    *,
    fetched_at: datetime,
    replayed_today: bool,
    now: datetime,
    zone: tzinfo,
    last_day: date,
    policy: FreshnessPolicy,
) -> Verdict:
    """A chunk whose file is whole, its data as of `fetched_at` (its job's completion). `now`
    is on the server's clock; `last_day` the account's last complete day."""
    fetched = fetched_at.astimezone(zone)
    local_now = now.astimezone(zone)
    today = local_now.date()
    if _is_final(chunk, fetched.date(), policy):
        return Verdict("final", f"fetched {fetched.date()}, after its days had settled")
    if replayed_today:
        return Verdict("fresh", "already refreshed today (at most once a day)")
    later = datetime.combine(today, time(policy.refresh_hour), zone)
    holds_latest = chunk.end >= last_day
    if fetched.date() >= today:
        if holds_latest and fetched < later <= local_now:
            return Verdict(
                "refresh", f"fetched today before {later:%H:%M}: refreshed later in the day"
            )
        if holds_latest and local_now < later and fetched < later:
            return Verdict(
                "deferred",
                f"fetched today at {fetched:%H:%M}; the latest day is refreshed after "
                f"{later:%H:%M} of the account's day",
                later,
            )
        return Verdict("fresh", "fetched today")
    if holds_latest and local_now < later:
        return Verdict(
            "deferred",
            f"the latest day is refreshed after {later:%H:%M} of the account's day",
            later,
        )
    return Verdict("refresh", f"fetched {fetched.date()}, its days still settling")
