"""Quota arithmetic: the daily ReportExport/ClickExport quotas and the hourly bucket.

docs/api-facts.md §5: 1,000 requests an hour (general bucket, which polling also spends [INFERRED]),
ReportExport 100 a day, ClickExport 10 a day. A call that would exceed a daily quota must fail at
once with ``QuotaExhausted`` carrying when it resets (waiting would take hours), so this module only
answers "how many fit" and "when does it reset". State is immutable and every function takes
``now``; ``transport/ratelimit.py`` owns the clock and the lock.

The day boundary of the daily quotas is not documented; it is a parameter (default UTC).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from ..errors import QuotaExhausted, QuotaName
from .ratelimit_headers import RateLimitInfo

__all__ = [
    "DailyQuota",
    "Export429",
    "HourlyWindow",
    "account_reset",
    "charged_days",
    "classify_export_429",
    "count_in_quota_day",
    "counted_by_server",
    "daily_quota",
    "learned_zone",
    "quota_day_bounds",
    "zone_minutes",
    "zone_of_minutes",
    "zone_of_reset",
]

HOUR = timedelta(hours=1)
#: Two reset times closer than this are the same window (header rounding, clock skew).
_SAME_WINDOW = timedelta(seconds=2)


def _aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")


def quota_day_bounds(now: datetime, tz: tzinfo = UTC) -> tuple[datetime, datetime]:
    """``[start, end)`` of the quota day containing ``now``: local midnights in ``tz``."""
    _aware(now)
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), time(0), tzinfo=tz)
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
    return start, end


def charged_days(now: datetime, tz: tzinfo = UTC, guard: float = 0.0) -> tuple[date, ...]:
    """The quota days a call made at ``now`` is counted on: its own, and also the next one when
    the reset is at most ``guard`` seconds away (clock skew or time in flight may let the server
    count it after midnight)."""
    start, end = quota_day_bounds(now, tz)
    if (end - now).total_seconds() <= guard:
        return (start.date(), end.date())
    return (start.date(),)


def count_in_quota_day(stamps: Iterable[datetime], now: datetime, tz: tzinfo = UTC) -> int:
    """How many of ``stamps`` (aware) fall in the quota day of ``now``; the ledger keeps the
    submit times, this turns them into "used today"."""
    start, end = quota_day_bounds(now, tz)
    return sum(1 for s in stamps if start <= s < end)


@dataclass(frozen=True, slots=True)
class DailyQuota:
    """A daily quota at one moment."""

    name: QuotaName
    limit: int
    used: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def fits(self, count: int = 1) -> bool:
        return count <= self.remaining

    def exhausted(self) -> QuotaExhausted:
        return QuotaExhausted(self.name, limit=self.limit, resets_at=self.resets_at, used=self.used)

    def check(self, count: int = 1) -> QuotaExhausted | None:
        """None if ``count`` more calls fit today, else the exception to raise."""
        return None if self.fits(count) else self.exhausted()


def daily_quota(
    name: QuotaName, limit: int, used: int, now: datetime, tz: tzinfo = UTC
) -> DailyQuota:
    """The quota ``name`` with ``used`` calls spent in today's quota day."""
    if limit < 0 or used < 0:
        raise ValueError("limit and used must be >= 0")
    _, end = quota_day_bounds(now, tz)
    return DailyQuota(name=name, limit=limit, used=used, resets_at=end)


@dataclass(frozen=True, slots=True)
class HourlyWindow:
    """A fixed-window bucket for the hourly limit, corrected by the server's headers.

    Every method returns a new value; nothing here reads a clock. ``remaining`` counts calls
    still allowed in the window that ends at ``resets_at``.
    """

    limit: int
    remaining: int
    resets_at: datetime

    @classmethod
    def fresh(cls, limit: int, now: datetime, window: timedelta = HOUR) -> HourlyWindow:
        _aware(now)
        return cls(limit=limit, remaining=limit, resets_at=now + window)

    def roll(self, now: datetime, window: timedelta = HOUR) -> HourlyWindow:
        """Start a new window once the old one has ended."""
        _aware(now)
        if now >= self.resets_at:
            return HourlyWindow(limit=self.limit, remaining=self.limit, resets_at=now + window)
        return self

    def _reserve(self, reserve: int, count: int) -> int:
        """The reserve actually kept back: never so much that a full window could not serve
        ``count`` calls (a server may announce a limit below our safety margin)."""
        return max(0, min(reserve, self.limit - count))

    def wait_for(self, now: datetime, count: int = 1, reserve: int = 0) -> float:
        """Seconds until ``count`` calls fit (0 if they fit now), keeping ``reserve`` back."""
        current = self.roll(now)
        if current.remaining - current._reserve(reserve, count) >= count:
            return 0.0
        return max(0.0, (current.resets_at - now).total_seconds())

    def acquire(
        self, now: datetime, count: int = 1, reserve: int = 0
    ) -> tuple[HourlyWindow, float]:
        """``(new_state, 0.0)`` when ``count`` calls are taken now, or ``(state, wait)`` with
        the seconds to wait before asking again; the state is not charged then."""
        current = self.roll(now)
        if current.remaining - current._reserve(reserve, count) >= count:
            return replace(current, remaining=current.remaining - count), 0.0
        return current, max(0.0, (current.resets_at - now).total_seconds())

    def exhausted(self) -> QuotaExhausted:
        return QuotaExhausted("hourly", limit=self.limit, resets_at=self.resets_at, used=None)

    def observe(self, info: RateLimitInfo, now: datetime) -> HourlyWindow:
        """Correct the local view with what an answer's headers said (docs/api-facts.md §5).

        - A new limit replaces ours (limits are "subject to change").
        - A reset time in another window means the server's window is the true one: adopt its
          remaining count and reset time.
        - In the same window, keep the lower remaining count: calls this process has charged
          but the server has not seen yet must not be handed out twice; other clients spending
          the same account's bucket show up as a lower server count.
        - A 429's ``Retry-After`` empties the bucket until then.
        """
        _aware(now)
        state = self.roll(now)
        if info.limit is not None and info.limit > 0:
            state = replace(state, limit=info.limit, remaining=min(state.remaining, info.limit))
        if info.reset_at is not None and abs(info.reset_at - state.resets_at) > _SAME_WINDOW:
            remaining = info.remaining if info.remaining is not None else state.remaining
            state = replace(state, remaining=min(remaining, state.limit), resets_at=info.reset_at)
        elif info.remaining is not None:
            state = replace(state, remaining=min(state.remaining, info.remaining))
        if info.retry_after is not None:
            until = now + timedelta(seconds=info.retry_after)
            state = replace(state, remaining=0, resets_at=max(until, now))
        return state


#: A 429 on ReportExport/ClickExport whose hint is at most this many seconds is a burst: wait and
#: retry. Anything longer is a spent quota, and is never slept through (docs/api-facts.md §5).
SHORT_429_SECONDS = 60.0
#: A 429 whose reset falls this close to the end of the quota day is the daily quota.
_DAY_END_TOLERANCE = timedelta(minutes=5)
#: The hourly bucket never asks for a longer wait than its window (and a little skew): a reset
#: further away than this is the daily quota's, whatever the account's time zone.
_LONGEST_HOURLY = HOUR + _DAY_END_TOLERANCE


@dataclass(frozen=True, slots=True)
class Export429:
    """What a 429 on an export call means: ``retry`` (a short burst), or a spent ``quota``
    (``"ReportExport"``/``"ClickExport"`` for the daily quota, ``"hourly"`` for the bucket)."""

    retry: bool
    quota: QuotaName | None
    resets_at: datetime | None


def classify_export_429(
    name: QuotaName, hint: float | None, now: datetime, tz: tzinfo = UTC
) -> Export429:
    """Tell a burst from an hourly from a daily 429 on an export call.

    The API does not say which limit refused: a short hint is a burst; a reset more than an hour
    away (the hourly bucket's longest wait), a reset at the end of the quota day in ``tz``, or no
    hint at all, is the daily quota, and then the reset the server sent decides when it ends (an
    account whose day does not start at UTC midnight); anything between is the hourly bucket.
    Blindly retrying an export after a 429 would spend quota for nothing.
    """
    _aware(now)
    if hint is not None and hint <= SHORT_429_SECONDS:
        return Export429(retry=True, quota=None, resets_at=now + timedelta(seconds=hint))
    _, day_end = quota_day_bounds(now, tz)
    if hint is None:
        return Export429(retry=False, quota=name, resets_at=day_end)
    resets_at = now + timedelta(seconds=hint)
    if hint > _LONGEST_HOURLY.total_seconds() or resets_at >= day_end - _DAY_END_TOLERANCE:
        return Export429(retry=False, quota=name, resets_at=resets_at)
    return Export429(retry=False, quota="hourly", resets_at=resets_at)


#: Statuses of an answer that the server did not count as an export: credentials refused (401),
#: a permission missing (403), a limit that refused it (429), and gateway answers (502, 503, 504:
#: the API behind the gateway did not take the call). A 500 may come after the work was done, so
#: it counts, like a timeout after the request was sent.
_NOT_COUNTED = frozenset({401, 403, 429, 502, 503, 504})


def counted_by_server(status: int | None) -> bool:
    """Whether the server counted an export call against its daily quota. ``status`` is the
    answer's HTTP status, or None when the request was never sent (no connection could be made).
    A request that was sent but got no answer (a timeout, a cut connection) may have been counted:
    its charge stays, erring on the side of the quota.
    """
    if status is None:
        return False
    return status not in _NOT_COUNTED


def zone_of_reset(resets_at: datetime) -> tzinfo:
    """The account's quota time zone, as a fixed UTC offset, learned from when the server said
    its daily quota resets (the account's midnight): rounded to a quarter of an hour, between
    UTC-11:45 and UTC+12:00. (The rare zones beyond +12:00 share their midnight with one 24 hours
    behind and are taken for it: the quota's hours are right, the day's date one behind.)"""
    _aware(resets_at)
    utc = resets_at.astimezone(UTC)
    minutes = utc.hour * 60 + utc.minute + utc.second / 60
    quarter = round(minutes / 15) * 15 % 1440
    offset = -quarter  # local midnight at `quarter` minutes past UTC midnight
    if offset <= -720:
        offset += 1440
    return timezone(timedelta(minutes=offset))


def zone_of_minutes(minutes: int) -> tzinfo:
    """A fixed UTC offset of `minutes`."""
    return timezone(timedelta(minutes=minutes))


def zone_minutes(zone: tzinfo) -> int:
    """The UTC offset of a fixed-offset `zone`, in minutes."""
    offset = zone.utcoffset(None)
    if offset is None:
        raise ValueError("the zone has no fixed offset")
    return int(offset.total_seconds() // 60)


#: A reset further than this from a quarter-hour of UTC is no account's midnight: it was measured
#: on a clock that is not the server's, and teaches no time zone.
_QUARTER_TOLERANCE = timedelta(minutes=2)
#: The minutes past the hour of the UTC offsets time zones use (whole hours, half hours, and
#: the few at :45 such as UTC+05:45); a quarter past is none's.
_ZONE_MINUTES = frozenset({0, 30, 45})


def learned_zone(resets_at: datetime | None, now: datetime, tz: tzinfo) -> tzinfo | None:
    """The account's quota zone that a daily-quota 429's reset reveals, when it is not `tz`'s:
    a reset within the next day that does not fall at `tz`'s midnight and is a plausible
    midnight (near a quarter-hour of UTC, at an offset some time zone uses); None otherwise.
    `now` and `resets_at` are on the server's clock: one that is not would teach a wrong zone
    for good."""
    _aware(now)
    if resets_at is None or not now < resets_at <= now + timedelta(days=1) + _DAY_END_TOLERANCE:
        return None
    _, day_end = quota_day_bounds(now, tz)
    if abs(resets_at - day_end) <= _DAY_END_TOLERANCE:
        return None
    zone = zone_of_reset(resets_at)
    midnight = datetime.combine(resets_at.astimezone(zone).date(), time(0), zone)
    if resets_at.astimezone(zone).hour >= 12:  # rounded up to the next midnight
        midnight += timedelta(days=1)
    if abs(resets_at - midnight) > _QUARTER_TOLERANCE:
        return None
    return zone if zone_minutes(zone) % 60 in _ZONE_MINUTES else None


def account_reset(resets_at: datetime | None, now: datetime, tz: tzinfo) -> datetime:
    """When a refused daily quota resets: the end of the account's day in `tz`, unless the
    server named a time that is not near it (the hint's rounding and delay are dropped)."""
    _, day_end = quota_day_bounds(now, tz)
    if resets_at is None or abs(resets_at - day_end) <= _DAY_END_TOLERANCE:
        return day_end
    return resets_at
