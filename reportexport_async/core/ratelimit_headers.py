"""Read rate-limit headers into one small value, at an explicit ``now``.

docs/api-facts.md §5 "Headers and 429":

- brand/agency send ``X-RateLimit-Limit``/``-Remaining``/``-Reset``; the reset is documented as
  seconds but the docs' example (``1487332519``) is an epoch (unsettled, §8);
- partner sends ``X-RateLimit-Limit-hour``/``X-RateLimit-Remaining-hour``/``RateLimit-Reset``
  (seconds) and ``Retry-After`` on 429s.

So a reset value above ~10^9 is read as a Unix epoch, anything smaller as delta-seconds
([INFERRED] in docs/api-facts.md §5). ``Retry-After`` may be delta-seconds or an HTTP-date (RFC 9110
§10.2.3). Values that are negative, unparsable, non-finite or absurdly far away are ignored,
because one bad header must not park the whole client for a year.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from .personas import RateLimitHeaderNames

__all__ = [
    "DEFAULT_HEADER_NAMES",
    "EPOCH_THRESHOLD",
    "MAX_HORIZON",
    "RateLimitInfo",
    "parse_rate_limit_headers",
    "parse_reset",
    "parse_retry_after",
]

#: A reset value above this is a Unix epoch, below it delta-seconds (docs/api-facts.md §5,
#: [INFERRED]).
EPOCH_THRESHOLD = 1_000_000_000
#: The farthest reset we believe: a daily quota resets within a day, plus slack for zones.
MAX_HORIZON = timedelta(hours=26)
#: How far in the past an epoch reset may be and still be read as "already reset" (clock skew).
MAX_SKEW = timedelta(minutes=5)

#: Every spelling, used when the caller does not pass a persona's preferred order.
DEFAULT_HEADER_NAMES = RateLimitHeaderNames(
    limit=("X-RateLimit-Limit", "X-RateLimit-Limit-hour", "RateLimit-Limit"),
    remaining=("X-RateLimit-Remaining", "X-RateLimit-Remaining-hour", "RateLimit-Remaining"),
    reset=("X-RateLimit-Reset", "RateLimit-Reset", "X-RateLimit-Reset-hour"),
)


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What one answer said about the hourly bucket. Every field may be None (not sent or
    not believable)."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None
    #: From ``Retry-After`` only, in seconds from the ``now`` the headers were read at.
    retry_after: float | None = None

    @property
    def is_empty(self) -> bool:
        return (
            self.limit is None
            and self.remaining is None
            and self.reset_at is None
            and self.retry_after is None
        )

    def wait_hint(self, now: datetime) -> float | None:
        """Seconds to wait before the next call: ``Retry-After`` wins, then the reset time
        (only when the bucket is known to be empty, or unknown), else None."""
        if self.retry_after is not None:
            return self.retry_after
        if self.reset_at is not None and (self.remaining is None or self.remaining <= 0):
            return max(0.0, (self.reset_at - now).total_seconds())
        return None


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_retry_after(
    value: str | None, now: datetime, *, max_horizon: timedelta = MAX_HORIZON
) -> float | None:
    """``Retry-After`` as delta-seconds or HTTP-date, in seconds from ``now``; None if insane."""
    _require_aware(now)
    if value is None or not value.strip():
        return None
    seconds = _number(value)
    if seconds is None:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 HTTP-dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
        if seconds < 0:
            # A date in the past means "now"; tolerate a little skew, not a stale header.
            return 0.0 if -seconds <= MAX_SKEW.total_seconds() else None
    if seconds < 0 or seconds > max_horizon.total_seconds():
        return None
    return seconds


def parse_reset(
    value: str | None, now: datetime, *, max_horizon: timedelta = MAX_HORIZON
) -> datetime | None:
    """A reset header as an absolute time: epoch above ``EPOCH_THRESHOLD``, else seconds."""
    _require_aware(now)
    if value is None:
        return None
    number = _number(value)
    if number is None or number < 0:
        return None
    if number > EPOCH_THRESHOLD:
        try:
            when = datetime.fromtimestamp(number, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
        if when < now:
            return now if now - when <= MAX_SKEW else None
    else:
        when = now + timedelta(seconds=number)
    if when - now > max_horizon:
        return None
    return when


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    number = _number(value)
    if number is None or number < 0 or not number.is_integer() or number > 10**9:
        return None
    return int(number)


def _first(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    """Case-insensitive lookup that works for plain dicts as well as CIMultiDict."""
    lowered: dict[str, str] = {}
    for key, val in headers.items():
        lowered.setdefault(key.lower(), val)
    for name in names:
        found = lowered.get(name.lower())
        if found is not None:
            return found
    return None


def parse_rate_limit_headers(
    headers: Mapping[str, str],
    now: datetime,
    *,
    names: RateLimitHeaderNames = DEFAULT_HEADER_NAMES,
    max_horizon: timedelta = MAX_HORIZON,
) -> RateLimitInfo:
    """Everything the headers say about the hourly bucket, read at ``now`` (aware)."""
    _require_aware(now)
    return RateLimitInfo(
        limit=_count(_first(headers, names.limit)),
        remaining=_count(_first(headers, names.remaining)),
        reset_at=parse_reset(_first(headers, names.reset), now, max_horizon=max_horizon),
        retry_after=parse_retry_after(
            _first(headers, names.retry_after), now, max_horizon=max_horizon
        ),
    )
