"""Quota arithmetic (docs/api-facts.md §5: 1,000/hour, ReportExport 100/day, ClickExport 10/day)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportexport_async.core.quota import (
    HourlyWindow,
    account_reset,
    charged_days,
    classify_export_429,
    count_in_quota_day,
    counted_by_server,
    daily_quota,
    learned_zone,
    quota_day_bounds,
    zone_minutes,
    zone_of_minutes,
    zone_of_reset,
)
from reportexport_async.core.ratelimit_headers import RateLimitInfo
from reportexport_async.errors import QuotaExhausted

NOW = datetime(2026, 6, 15, 23, 30, tzinfo=UTC)
PST = timezone(timedelta(hours=-8))


def test_day_bounds_utc_and_other_zone() -> None:
    assert quota_day_bounds(NOW) == (
        datetime(2026, 6, 15, tzinfo=UTC),
        datetime(2026, 6, 16, tzinfo=UTC),
    )
    start, end = quota_day_bounds(NOW, PST)  # 15:30 local on the 15th
    assert start == datetime(2026, 6, 15, 8, tzinfo=UTC)
    assert end == datetime(2026, 6, 16, 8, tzinfo=UTC)


def test_day_bounds_need_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        quota_day_bounds(datetime(2026, 1, 1))


def test_daily_quota_fits_and_exhausts() -> None:
    quota = daily_quota("ReportExport", 100, 98, NOW)
    assert quota.remaining == 2
    assert quota.fits(2)
    assert not quota.fits(3)
    assert quota.check(2) is None
    err = quota.check(3)
    assert isinstance(err, QuotaExhausted)
    assert (err.quota, err.limit, err.used) == ("ReportExport", 100, 98)
    assert err.resets_at == datetime(2026, 6, 16, tzinfo=UTC)
    assert "2026-06-16" in str(err)


def test_daily_quota_over_use_clamps() -> None:
    assert daily_quota("ClickExport", 10, 12, NOW).remaining == 0


def test_count_in_quota_day() -> None:
    stamps = [
        datetime(2026, 6, 14, 23, 59, tzinfo=UTC),
        datetime(2026, 6, 15, 0, 0, tzinfo=UTC),
        datetime(2026, 6, 15, 23, 0, tzinfo=UTC),
        datetime(2026, 6, 16, 0, 0, tzinfo=UTC),
    ]
    assert count_in_quota_day(stamps, NOW) == 2


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from([UTC, PST]),
)
def test_reset_is_next_local_midnight(now: datetime, tz: timezone) -> None:
    start, end = quota_day_bounds(now, tz)
    assert start <= now < end
    assert end - start == timedelta(days=1)
    local_end = end.astimezone(tz)
    assert (local_end.hour, local_end.minute, local_end.second) == (0, 0, 0)


START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def test_hourly_window_acquire_and_wait() -> None:
    w = HourlyWindow.fresh(3, START)
    w, wait = w.acquire(START)
    assert (w.remaining, wait) == (2, 0.0)
    w, _ = w.acquire(START, count=2)
    assert w.remaining == 0
    same, wait = w.acquire(START + timedelta(minutes=10))
    assert same.remaining == 0
    assert wait == 50 * 60
    rolled, wait = w.acquire(START + timedelta(hours=1))
    assert (rolled.remaining, wait) == (2, 0.0)


def test_hourly_window_reserve() -> None:
    w = HourlyWindow.fresh(10, START)
    assert w.wait_for(START, count=1, reserve=5) == 0.0
    spent, _ = w.acquire(START, count=5, reserve=5)
    assert spent.wait_for(START, count=1, reserve=5) == 3600.0


def test_reserve_never_starves_a_full_window() -> None:
    """A server may announce a limit below our safety margin: a fresh window must still serve a
    call, or the limiter would wait for ever (found by tests/test_client.py)."""
    w = HourlyWindow.fresh(3, START)
    window, wait = w.acquire(START, reserve=10)
    assert (window.remaining, wait) == (2, 0.0)
    assert w.wait_for(START, count=2, reserve=9) == 0.0


def test_observe_same_window_keeps_lower_count() -> None:
    w = HourlyWindow(limit=1000, remaining=500, resets_at=START + timedelta(minutes=30))
    seen = w.observe(RateLimitInfo(remaining=700, reset_at=w.resets_at), START)
    assert seen.remaining == 500  # local charges the server has not seen yet
    seen = w.observe(RateLimitInfo(remaining=200, reset_at=w.resets_at), START)
    assert seen.remaining == 200  # another client spends the same bucket


def test_observe_adopts_server_window_and_limit() -> None:
    w = HourlyWindow.fresh(1000, START)
    server_reset = START + timedelta(minutes=5)
    seen = w.observe(RateLimitInfo(limit=500, remaining=40, reset_at=server_reset), START)
    assert (seen.limit, seen.remaining, seen.resets_at) == (500, 40, server_reset)


def test_observe_retry_after_empties_bucket() -> None:
    w = HourlyWindow.fresh(1000, START)
    seen = w.observe(RateLimitInfo(retry_after=120.0), START)
    assert seen.remaining == 0
    assert seen.wait_for(START) == 120.0
    assert seen.wait_for(START + timedelta(seconds=121)) == 0.0
    assert isinstance(seen.exhausted(), QuotaExhausted)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=7200), st.integers(min_value=1, max_value=5)),
        max_size=50,
    )
)
def test_window_never_goes_negative(steps: list[tuple[int, int]]) -> None:
    w = HourlyWindow.fresh(10, START)
    elapsed = 0
    for delta, count in steps:
        elapsed += delta
        w, wait = w.acquire(START + timedelta(seconds=elapsed), count=count)
        assert 0 <= w.remaining <= w.limit
        assert wait >= 0


@pytest.mark.parametrize(
    ("now", "guard", "days"),
    [
        (datetime(2026, 6, 15, 12, 0, tzinfo=UTC), 300, (date(2026, 6, 15),)),
        (datetime(2026, 6, 15, 23, 54, 59, tzinfo=UTC), 300, (date(2026, 6, 15),)),
        (datetime(2026, 6, 15, 23, 55, tzinfo=UTC), 300, (date(2026, 6, 15), date(2026, 6, 16))),
        (datetime(2026, 6, 15, 23, 59, 59, tzinfo=UTC), 0, (date(2026, 6, 15),)),
    ],
)
def test_charged_days_near_the_reset(now: datetime, guard: float, days: tuple[date, ...]) -> None:
    assert charged_days(now, UTC, guard) == days


def test_charged_days_follow_the_quota_timezone() -> None:
    tz = timezone(timedelta(hours=-8))
    now = datetime(2026, 6, 16, 7, 57, tzinfo=UTC)  # 23:57 on the 15th in UTC-8
    assert charged_days(now, tz, 300) == (date(2026, 6, 15), date(2026, 6, 16))


# -- what the server counted, and the account's day learned from a reset -------------------------


@pytest.mark.parametrize(
    ("status", "counted"),
    [
        (None, False),  # never sent
        (200, True),
        (400, True),  # bad input reached the API
        (404, True),  # an unknown report is counted by the API
        (401, False),
        (403, False),
        (429, False),
        (500, True),  # may come after the work: counted, erring on the side of the quota
        (502, False),
        (503, False),
        (504, False),
    ],
)
def test_counted_by_server(status: int | None, counted: bool) -> None:
    assert counted_by_server(status) is counted


@pytest.mark.parametrize("offset", [-480, -300, -705, 0, 60, 330, 345, 540, 600, 720])
def test_zone_of_reset_is_the_zone_whose_midnight_it_is(offset: int) -> None:
    zone = timezone(timedelta(minutes=offset))
    midnight = datetime(2026, 6, 16, tzinfo=zone)
    learned = zone_of_reset(midnight + timedelta(seconds=37))  # header rounding
    assert learned.utcoffset(None) == timedelta(minutes=offset)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(min_value=-47, max_value=48).map(lambda q: q * 15),
)
def test_zone_of_reset_round_trips(day: datetime, offset: int) -> None:
    zone = timezone(timedelta(minutes=offset))
    midnight = datetime.combine(day.date(), datetime.min.time(), tzinfo=zone)
    assert zone_of_reset(midnight).utcoffset(None) == timedelta(minutes=offset)


def test_a_daily_429_far_from_utc_midnight_is_the_daily_quota() -> None:
    # 04:00 at UTC-8 (12:00 UTC): the quota resets at 08:00 UTC tomorrow, 20 hours away.
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    verdict = classify_export_429("ReportExport", 20 * 3600, now, UTC)
    assert verdict.quota == "ReportExport"
    assert verdict.resets_at == datetime(2026, 6, 16, 8, 0, tzinfo=UTC)
    # An hour or less is the hourly bucket; a minute or less a burst.
    assert classify_export_429("ReportExport", 3000, now, UTC).quota == "hourly"
    assert classify_export_429("ReportExport", 30, now, UTC).retry


def test_learned_zone_and_account_reset() -> None:
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    far = datetime(2026, 6, 16, 8, 0, 7, tzinfo=UTC)  # UTC-8's midnight, as a hint rounds it
    zone = learned_zone(far, now, UTC)
    assert zone is not None
    assert zone.utcoffset(None) == timedelta(hours=-8)
    assert zone_minutes(zone) == -480
    assert zone_of_minutes(-480).utcoffset(None) == timedelta(hours=-8)
    assert learned_zone(datetime(2026, 6, 16, 0, 0, 30, tzinfo=UTC), now, UTC) is None
    assert learned_zone(None, now, UTC) is None
    assert learned_zone(now - timedelta(hours=1), now, UTC) is None
    # Once the zone is known, the reset is its midnight, not the hint's rounding.
    assert account_reset(far, now, zone) == datetime(2026, 6, 16, 8, 0, tzinfo=UTC)
    assert account_reset(None, now, UTC) == datetime(2026, 6, 16, tzinfo=UTC)


def test_an_outage_needs_time_and_failures_in_a_row() -> None:
    from reportexport_async.core.policies import OUTAGE_MIN_FAILURES, RetryPolicy

    policy = RetryPolicy(outage_limit=300)
    assert policy.is_outage(301, OUTAGE_MIN_FAILURES)
    assert policy.is_outage(250, OUTAGE_MIN_FAILURES, pause=60)
    assert not policy.is_outage(250, OUTAGE_MIN_FAILURES)
    assert not policy.is_outage(600, 2)  # two failures far apart


@pytest.mark.parametrize(
    ("resets_at", "learned"),
    [
        ("2026-06-16T05:00:20+00:00", -300),  # UTC-05:00's midnight, as a hint rounds it
        ("2026-06-15T18:15:00+00:00", 345),  # UTC+05:45 (Nepal)
        ("2026-06-16T03:30:00+00:00", -210),  # UTC-03:30 (Newfoundland)
        ("2026-06-15T19:45:00+00:00", None),  # UTC+04:15: no zone's midnight
        ("2026-06-16T05:07:00+00:00", None),  # 7 minutes off any quarter: another clock's
        ("2026-06-18T05:00:00+00:00", None),  # days away: not today's reset
    ],
)
def test_only_a_plausible_midnight_teaches_the_zone(resets_at: str, learned: int | None) -> None:
    now = datetime(2026, 6, 15, 13, 0, tzinfo=UTC)
    zone = learned_zone(datetime.fromisoformat(resets_at), now, UTC)
    assert (None if zone is None else zone_minutes(zone)) == learned
