"""Rate-limit headers at an explicit ``now`` (docs/api-facts.md §5 "Headers and 429")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportexport_async.core.personas import persona_for
from reportexport_async.core.ratelimit_headers import (
    RateLimitInfo,
    parse_rate_limit_headers,
    parse_reset,
    parse_retry_after,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
EPOCH_NOW = int(NOW.timestamp())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("700", 700.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Mon, 15 Jun 2026 12:10:00 GMT", 600.0),  # IMF-fixdate
        ("Monday, 15-Jun-26 12:10:00 GMT", 600.0),  # obsolete RFC 850
        ("Mon Jun 15 12:10:00 2026", 600.0),  # asctime
        ("Mon, 15 Jun 2026 11:58:00 GMT", 0.0),  # slightly past: now
        ("Mon, 15 Jun 2025 11:58:00 GMT", None),  # a year past: stale
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("9999999", None),  # absurdly far
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("700", NOW + timedelta(seconds=700)),  # partner: seconds
        ("0", NOW),
        (str(EPOCH_NOW + 1800), NOW + timedelta(seconds=1800)),  # brand docs' epoch form
        (f"{EPOCH_NOW + 60}.0", NOW + timedelta(seconds=60)),
        (str(EPOCH_NOW - 60), NOW),  # epoch slightly in the past: skew, already reset
        ("1487332519", None),  # the docs' example epoch: years ago
        (str(EPOCH_NOW + 10 * 86400), None),  # epoch ten days away
        ("500000", None),  # seconds, but ~6 days
        ("-1", None),
        ("abc", None),
        (None, None),
    ],
)
def test_reset(value: str | None, expected: datetime | None) -> None:
    assert parse_reset(value, NOW) == expected


def test_brand_headers() -> None:
    info = parse_rate_limit_headers(
        {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "998", "X-RateLimit-Reset": "120"},
        NOW,
        names=persona_for("brand").rate_limit_headers,
    )
    assert info == RateLimitInfo(1000, 998, NOW + timedelta(seconds=120), None)
    assert info.wait_hint(NOW) is None  # not empty: no need to wait


def test_partner_headers_on_429() -> None:
    info = parse_rate_limit_headers(
        {
            "x-ratelimit-limit-hour": "1000",
            "X-RateLimit-Remaining-hour": "0",
            "RateLimit-Reset": "700",
            "Retry-After": "650",
        },
        NOW,
        names=persona_for("partner").rate_limit_headers,
    )
    assert (info.limit, info.remaining) == (1000, 0)
    assert info.reset_at == NOW + timedelta(seconds=700)
    assert info.retry_after == 650.0
    assert info.wait_hint(NOW) == 650.0  # Retry-After wins


def test_default_names_read_every_spelling() -> None:
    info = parse_rate_limit_headers({"X-RateLimit-Remaining-hour": "5"}, NOW)
    assert info.remaining == 5


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-RateLimit-Limit": "-1", "X-RateLimit-Remaining": "1.5", "X-RateLimit-Reset": "x"},
        {"X-RateLimit-Limit": "", "Retry-After": "never"},
    ],
)
def test_garbage_is_ignored(headers: dict[str, str]) -> None:
    info = parse_rate_limit_headers(headers, NOW)
    assert info.is_empty


def test_wait_hint_from_reset_when_empty() -> None:
    info = RateLimitInfo(limit=1000, remaining=0, reset_at=NOW + timedelta(seconds=30))
    assert info.wait_hint(NOW) == 30.0
    assert info.wait_hint(NOW + timedelta(seconds=60)) == 0.0


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_rate_limit_headers({}, datetime(2026, 1, 1))


@given(st.text(max_size=40))
def test_any_text_never_raises_and_stays_in_horizon(value: str) -> None:
    after = parse_retry_after(value, NOW)
    reset = parse_reset(value, NOW)
    assert after is None or 0 <= after <= 26 * 3600
    assert reset is None or NOW - timedelta(minutes=5) <= reset <= NOW + timedelta(hours=26)


@given(st.integers(min_value=0, max_value=26 * 3600))
def test_seconds_and_epoch_agree(seconds: int) -> None:
    assert parse_reset(str(seconds), NOW) == parse_reset(str(EPOCH_NOW + seconds), NOW)
