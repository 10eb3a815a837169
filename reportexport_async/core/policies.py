"""Retry, poll, rate-limit and timeout policies: small frozen values, every default here.

Ways 4 and 5 of docs/guide.md: policies are immutable objects (like httpx ``Timeout`` or
google-api-core ``Retry``), and polling a job is *not* retrying a request, so each has its own
schedule. Randomness is a parameter (``random_value`` in ``[0, 1)``), so schedules are pure
functions and tests need no seeding.

Why write the backoff by hand instead of using a retry library: the schedule has to combine
full jitter, a server hint (``Retry-After``/reset, docs/api-facts.md §5), a total time budget
and an injected clock, and the session's retry driver needs the delay as a plain number to sleep
on its own (injected) clock; a few lines of arithmetic do that with no extra dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, tzinfo

from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "PollPolicy",
    "RateLimitPolicy",
    "RetryPolicy",
    "Timeouts",
]

#: 429 and the 5xx codes the API documents as "retry with exponential backoff"
#: (docs/api-facts.md §5).
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


#: An outage needs this many failed calls in a row, besides lasting `RetryPolicy.outage_limit`.
OUTAGE_MIN_FAILURES = 5


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(name, f"must be a finite number {bound}, got {value!r}")


def _unit(random_value: float) -> float:
    """Clamp the injected random number into [0, 1) so a bad source cannot go negative."""
    if not math.isfinite(random_value):
        return 0.0
    return min(max(random_value, 0.0), math.nextafter(1.0, 0.0))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one HTTP request, the same for the API's calls and for downloads (one retry
    loop, ``transport.retrying.Retrier``): connection errors, timeouts and ``retry_statuses``.

    ``attempt`` counts from 1 (the attempt that just failed). Capped exponential backoff with
    FULL jitter: ``delay = random * min(max_backoff, initial * multiplier ** (attempt - 1))``.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0
    #: Stop retrying once this many seconds have passed since the first attempt (of a call; a
    #: download's attempts stream for as long as their result takes: bounded by number).
    total_budget: float = 120.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    #: A server hint longer than this is not waited for; the error goes to the caller.
    max_server_hint: float = 3600.0
    #: A run stops (``AccountUnavailable``) once every call has failed for this many seconds:
    #: an outage is waited out that long, never for ever.
    outage_limit: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("retry.max_attempts", f"must be >= 1, got {self.max_attempts}")
        _positive("retry.initial_backoff", self.initial_backoff)
        _positive("retry.max_backoff", self.max_backoff)
        _positive("retry.total_budget", self.total_budget, allow_zero=True)
        _positive("retry.max_server_hint", self.max_server_hint, allow_zero=True)
        _positive("retry.outage_limit", self.outage_limit)
        if not math.isfinite(self.multiplier) or self.multiplier < 1:
            raise ConfigurationError("retry.multiplier", f"must be >= 1, got {self.multiplier}")
        if self.max_backoff < self.initial_backoff:
            raise ConfigurationError("retry.max_backoff", "must be >= retry.initial_backoff")
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))

    def backoff_ceiling(self, attempt: int) -> float:
        """The un-jittered cap for ``attempt``: ``min(max, initial * multiplier**(n-1))``."""
        exponent = max(attempt, 1) - 1
        try:
            raw = self.initial_backoff * self.multiplier**exponent
        except OverflowError:
            return self.max_backoff
        return min(self.max_backoff, raw) if math.isfinite(raw) else self.max_backoff

    def delay(self, attempt: int, random_value: float) -> float:
        """Full-jitter delay in ``[0, backoff_ceiling(attempt))``; never negative."""
        return _unit(random_value) * self.backoff_ceiling(attempt)

    def sane_hint(self, server_hint_seconds: float | None) -> bool:
        return (
            server_hint_seconds is not None
            and math.isfinite(server_hint_seconds)
            and 0 <= server_hint_seconds <= self.max_server_hint
        )

    def delay_with_hint(
        self, attempt: int, server_hint_seconds: float | None, random_value: float
    ) -> float:
        """A sane server hint (``Retry-After``/reset, docs/api-facts.md §5) wins over the
        backoff."""
        if server_hint_seconds is not None and self.sane_hint(server_hint_seconds):
            return server_hint_seconds
        return self.delay(attempt, random_value)

    def should_retry_status(self, status: int) -> bool:
        return status in self.retry_statuses

    def is_outage(self, failing_for: float, failures_in_a_row: int, pause: float = 0.0) -> bool:
        """Every call has failed for longer than `outage_limit` (or will have after `pause`
        more seconds), and at least `OUTAGE_MIN_FAILURES` in a row: two failures far apart (a
        slow poll between them) are bad luck, not an outage."""
        return failures_in_a_row >= OUTAGE_MIN_FAILURES and failing_for + pause > self.outage_limit

    def may_retry(self, attempt: int, elapsed: float, next_delay: float) -> bool:
        """Whether attempt ``attempt + 1`` may start: attempts left, and the wait fits the
        total budget."""
        return attempt < self.max_attempts and elapsed + next_delay <= self.total_budget


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Waiting for a job (docs/api-facts.md §7 "Polling" [INFERRED]: 5 s growing to 60 s, to save
    the hourly quota). ``n`` counts polls already made, from 0."""

    initial: float = 5.0
    growth: float = 1.5
    maximum: float = 60.0
    #: Each interval is moved by up to ± this fraction, so many jobs do not poll in lockstep.
    jitter: float = 0.1

    def __post_init__(self) -> None:
        _positive("poll.initial", self.initial)
        _positive("poll.maximum", self.maximum)
        if not math.isfinite(self.growth) or self.growth < 1:
            raise ConfigurationError("poll.growth", f"must be >= 1, got {self.growth}")
        if not (0 <= self.jitter < 1):
            raise ConfigurationError("poll.jitter", f"must be in [0, 1), got {self.jitter}")
        if self.maximum < self.initial:
            raise ConfigurationError("poll.maximum", "must be >= poll.initial")

    def base_interval(self, n: int) -> float:
        try:
            raw = self.initial * self.growth ** max(n, 0)
        except OverflowError:
            return self.maximum
        return min(self.maximum, raw) if math.isfinite(raw) else self.maximum

    def interval(self, n: int, random_value: float) -> float:
        """Seconds before poll ``n + 1``: the grown base, jittered, never above ``maximum``."""
        factor = 1.0 - self.jitter + 2.0 * self.jitter * _unit(random_value)
        return min(self.maximum, self.base_interval(n) * factor)


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """Account-wide limits (docs/api-facts.md §5 "Numbers"). ``None`` disables a daily quota."""

    hourly_limit: int = 1000
    daily_report_export: int | None = 100
    daily_click_export: int | None = 10
    max_concurrent_requests: int = 8
    #: Calls per hour kept back for other tools sharing the account's bucket.
    safety_margin: int = 10
    #: The daily quotas' day boundary. Not documented (docs/api-facts.md §5); UTC unless told.
    quota_timezone: tzinfo = field(default=UTC)
    #: A quota call made this many seconds or less before the day's reset is counted on both
    #: days: it may reach the server after midnight and be counted there, which would let the
    #: new day go one over and provoke a 429 (at most a few units of the next day's quota).
    quota_day_guard: float = 300.0

    def __post_init__(self) -> None:
        if self.hourly_limit < 1:
            raise ConfigurationError("rate_limit.hourly_limit", "must be >= 1")
        for name in ("daily_report_export", "daily_click_export"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"rate_limit.{name}", "must be >= 0 or None")
        if self.max_concurrent_requests < 1:
            raise ConfigurationError("rate_limit.max_concurrent_requests", "must be >= 1")
        if not (math.isfinite(self.quota_day_guard) and 0 <= self.quota_day_guard <= 3600):
            raise ConfigurationError("rate_limit.quota_day_guard", "must be 0 to 3600 seconds")
        if not (0 <= self.safety_margin < self.hourly_limit):
            raise ConfigurationError(
                "rate_limit.safety_margin", "must be >= 0 and below rate_limit.hourly_limit"
            )

    @property
    def usable_per_hour(self) -> int:
        return self.hourly_limit - self.safety_margin

    def with_limits(
        self,
        *,
        hourly_limit: int | None = None,
        daily_report_export: int | None = None,
        daily_click_export: int | None = None,
    ) -> RateLimitPolicy:
        """A copy with an account's own limits (None keeps the current value). The safety
        margin shrinks with a small hourly limit so it always stays below it."""
        hourly = self.hourly_limit if hourly_limit is None else hourly_limit
        if hourly < 1:
            raise ConfigurationError("rate_limit.hourly_limit", "must be >= 1")
        return replace(
            self,
            hourly_limit=hourly,
            safety_margin=min(self.safety_margin, hourly // 10),
            daily_report_export=(
                self.daily_report_export if daily_report_export is None else daily_report_export
            ),
            daily_click_export=(
                self.daily_click_export if daily_click_export is None else daily_click_export
            ),
        )


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-request timeouts in seconds (``None`` = no limit). ``total`` bounds one API call;
    downloads use ``download_total`` (unbounded by default: a 1 GB result takes a while) and
    are protected by ``read``, the longest silence between two chunks."""

    connect: float = 10.0
    read: float = 60.0
    total: float | None = 120.0
    download_total: float | None = None

    def __post_init__(self) -> None:
        _positive("timeouts.connect", self.connect)
        _positive("timeouts.read", self.read)
        if self.total is not None:
            _positive("timeouts.total", self.total)
        if self.download_total is not None:
            _positive("timeouts.download_total", self.download_total)
