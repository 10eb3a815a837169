"""Retry and poll schedules (ways 4 and 5 of docs/guide.md; docs/api-facts.md §5, §7)."""

from __future__ import annotations

import math
from datetime import timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportexport_async.core.policies import PollPolicy, RateLimitPolicy, RetryPolicy, Timeouts
from reportexport_async.errors import ConfigurationError

unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
any_float = st.floats(allow_nan=True, allow_infinity=True)


def test_defaults() -> None:
    retry = RetryPolicy()
    assert (retry.max_attempts, retry.initial_backoff, retry.max_backoff) == (5, 0.5, 30.0)
    assert retry.retry_statuses == frozenset({429, 500, 502, 503, 504})
    poll = PollPolicy()
    assert (poll.initial, poll.maximum) == (5.0, 60.0)
    limits = RateLimitPolicy()
    assert (limits.hourly_limit, limits.daily_report_export, limits.daily_click_export) == (
        1000,
        100,
        10,
    )
    assert limits.usable_per_hour == 990
    assert Timeouts().download_total is None


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 30.0), (10_000, 30.0), (0, 0.5), (-3, 0.5)],
)
def test_backoff_ceiling(attempt: int, ceiling: float) -> None:
    assert RetryPolicy().backoff_ceiling(attempt) == ceiling


def test_full_jitter_spans_zero_to_ceiling() -> None:
    policy = RetryPolicy()
    assert policy.delay(3, 0.0) == 0.0
    assert policy.delay(3, 0.5) == 1.0
    assert policy.delay(3, 0.999999) < 2.0


@given(st.integers(min_value=-10, max_value=100_000), any_float)
def test_delay_bounded_and_never_negative(attempt: int, r: float) -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=7.0, multiplier=3.0)
    d = policy.delay(attempt, r)
    assert 0.0 <= d <= 7.0
    assert math.isfinite(d)


@given(
    st.integers(min_value=1, max_value=60),
    st.one_of(st.none(), any_float),
    unit,
)
def test_delay_with_hint_property(attempt: int, hint: float | None, r: float) -> None:
    policy = RetryPolicy()
    d = policy.delay_with_hint(attempt, hint, r)
    assert d >= 0.0
    assert math.isfinite(d)
    if hint is not None and math.isfinite(hint) and 0 <= hint <= policy.max_server_hint:
        assert d == hint
    else:
        assert d <= policy.max_backoff


def test_hint_table() -> None:
    policy = RetryPolicy(max_server_hint=100.0)
    assert policy.delay_with_hint(1, 40.0, 0.5) == 40.0  # sane hint wins, even above max_backoff
    assert policy.delay_with_hint(1, 500.0, 0.5) == 0.25  # insane: backoff
    assert policy.delay_with_hint(1, -1.0, 0.5) == 0.25
    assert policy.delay_with_hint(1, None, 0.5) == 0.25


def test_may_retry_respects_attempts_and_budget() -> None:
    policy = RetryPolicy(max_attempts=3, total_budget=10.0)
    assert policy.may_retry(1, elapsed=0.0, next_delay=1.0)
    assert not policy.may_retry(3, elapsed=0.0, next_delay=1.0)
    assert not policy.may_retry(1, elapsed=9.5, next_delay=1.0)
    assert policy.should_retry_status(503)
    assert not policy.should_retry_status(404)


@given(st.integers(min_value=-5, max_value=10_000), any_float)
def test_poll_interval_bounds(n: int, r: float) -> None:
    policy = PollPolicy()
    interval = policy.interval(n, r)
    assert 0.0 < interval <= policy.maximum
    assert interval >= policy.initial * (1 - policy.jitter) - 1e-9


def test_poll_grows_to_cap() -> None:
    policy = PollPolicy(jitter=0.0)
    intervals = [policy.interval(n, 0.5) for n in range(12)]
    assert intervals[0] == 5.0
    assert intervals == sorted(intervals)
    assert intervals[-1] == 60.0


@pytest.mark.parametrize(
    ("factory", "setting"),
    [
        (lambda: RetryPolicy(max_attempts=0), "retry.max_attempts"),
        (lambda: RetryPolicy(initial_backoff=0), "retry.initial_backoff"),
        (lambda: RetryPolicy(max_backoff=float("inf")), "retry.max_backoff"),
        (lambda: RetryPolicy(initial_backoff=5, max_backoff=1), "retry.max_backoff"),
        (lambda: RetryPolicy(multiplier=0.5), "retry.multiplier"),
        (lambda: PollPolicy(jitter=1.0), "poll.jitter"),
        (lambda: PollPolicy(initial=10, maximum=5), "poll.maximum"),
        (lambda: PollPolicy(growth=0.9), "poll.growth"),
        (lambda: RateLimitPolicy(hourly_limit=0), "rate_limit.hourly_limit"),
        (lambda: RateLimitPolicy(daily_report_export=-1), "rate_limit.daily_report_export"),
        (lambda: RateLimitPolicy(max_concurrent_requests=0), "rate_limit.max_concurrent_requests"),
        (lambda: RateLimitPolicy(safety_margin=1000), "rate_limit.safety_margin"),
        (lambda: Timeouts(connect=-1), "timeouts.connect"),
        (lambda: Timeouts(total=0), "timeouts.total"),
    ],
)
def test_policy_validation_names_the_setting(factory: object, setting: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        factory()  # type: ignore[operator]
    assert info.value.setting == setting
    assert str(info.value).startswith(setting + ":")


def test_policies_are_frozen_and_take_a_timezone() -> None:
    policy = RateLimitPolicy(daily_click_export=None, quota_timezone=timezone(timedelta(hours=-8)))
    assert policy.daily_click_export is None
    with pytest.raises(AttributeError):
        policy.hourly_limit = 5  # type: ignore[misc]
    assert RetryPolicy(retry_statuses={503}).retry_statuses == frozenset({503})  # type: ignore[arg-type]
