"""The replay guard (the guide's rule 4, docs/guide.md): every rule of `core/replay.py`'s docstring
is checked as an invariant over statuses, ages, dates, counts and flags, plus one named example per
rule, the policy's validation and the time zone of the completion day."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reportexport_async.core.models import JobStatus
from reportexport_async.core.replay import (
    ReplayDecision,
    ReplayPolicy,
    ReplayRequest,
    check_replay,
    require_replay,
)
from reportexport_async.errors import ReplayRefused

FAST = settings(max_examples=200, deadline=None)

NOT_REPLAYABLE = {
    JobStatus.QUEUED: "in_progress",
    JobStatus.RUNNING: "in_progress",
    JobStatus.ERROR: "service_retries",
    JobStatus.UNKNOWN: "unknown_status",
}
ENDED_BADLY = (JobStatus.FAILED, JobStatus.CANCELLED)
ALLOW_RULES = {"failed", "expired", "forced", "fresh_data"}
ALL_RULES = ALLOW_RULES | set(NOT_REPLAYABLE.values()) | {"too_soon", "once_per_day"}
ALL_RULES |= {"not_justified"}

T0 = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

# Fixed offsets at both ends of the world, a DST zone, and "no zone" (the datetime's own).
ZONES: list[tzinfo | None] = [
    None,
    UTC,
    timezone(timedelta(hours=14)),
    timezone(timedelta(hours=-12)),
    ZoneInfo("America/Los_Angeles"),
]


# --- strategies ------------------------------------------------------------------------------

policies = st.builds(
    ReplayPolicy,
    min_age=st.sampled_from([timedelta(0), timedelta(minutes=30), HOUR, timedelta(hours=6)]),
    settle_days=st.integers(0, 7),
    max_per_day=st.integers(1, 3),
)


@st.composite
def replay_requests(draw: st.DrawFn) -> ReplayRequest:
    submitted_at = draw(
        st.datetimes(
            min_value=datetime(2025, 1, 1),
            max_value=datetime(2027, 12, 31),
            timezones=st.just(UTC),
        )
    )
    # Ages from 0 to several days, with extra weight on the minutes around the usual min_age.
    age = draw(
        st.one_of(
            st.timedeltas(timedelta(0), timedelta(days=10)),
            st.timedeltas(timedelta(minutes=25), timedelta(hours=7)),
            st.sampled_from([timedelta(0), timedelta(minutes=30), HOUR, timedelta(hours=6)]),
        )
    )
    now = submitted_at + age
    last_completed_at = draw(
        st.one_of(
            st.none(),
            st.timedeltas(timedelta(0), age).map(lambda d: submitted_at + d),
        )
    )
    tz = draw(st.sampled_from(ZONES))
    completed = last_completed_at or submitted_at
    completion_day = completed.astimezone(tz).date() if tz else completed.date()
    range_end = draw(
        st.one_of(
            st.none(),
            st.integers(-12, 3).map(lambda k: completion_day + timedelta(days=k)),
        )
    )
    return ReplayRequest(
        job_id=draw(st.text("abcdef0123456789-", min_size=1, max_size=12)),
        status=draw(st.sampled_from(list(JobStatus))),
        submitted_at=submitted_at,
        now=now,
        range_end=range_end,
        last_completed_at=last_completed_at,
        replays_today=draw(st.integers(0, 4)),
        fresh=draw(st.booleans()),
        force=draw(st.booleans()),
        expired=draw(st.booleans()),
        tz=tz,
    )


def completion_day(request: ReplayRequest) -> date:
    """The calendar day of the last completion (or of the submit), in `tz` when given."""
    completed = request.last_completed_at or request.submitted_at
    if request.tz is not None:
        return completed.astimezone(request.tz).date()
    return completed.date()


def fresh_window_hit(request: ReplayRequest, policy: ReplayPolicy) -> bool:
    if request.range_end is None:
        return True
    return request.range_end >= completion_day(request) - timedelta(days=policy.settle_days)


def passes_gates(request: ReplayRequest, policy: ReplayPolicy) -> bool:
    """Rules 1-5 all let the request through."""
    return (
        request.status not in NOT_REPLAYABLE
        and request.now - request.submitted_at >= policy.min_age
        and (request.replays_today < policy.max_per_day or request.force)
    )


# --- the invariants --------------------------------------------------------------------------


@FAST
@given(replay_requests(), policies)
def test_never_for_unfinished_error_or_unknown(
    request: ReplayRequest, policy: ReplayPolicy
) -> None:
    decision = check_replay(request, policy)
    if request.status in NOT_REPLAYABLE:
        assert not decision.allowed
        assert decision.rule == NOT_REPLAYABLE[request.status]
    # The flags cannot rescue these statuses.
    for status, rule in NOT_REPLAYABLE.items():
        forced = dataclasses.replace(request, status=status, force=True, expired=True, fresh=True)
        refused = check_replay(forced, policy)
        assert (refused.allowed, refused.rule) == (False, rule)


@FAST
@given(replay_requests(), policies)
def test_never_within_min_age(request: ReplayRequest, policy: ReplayPolicy) -> None:
    decision = check_replay(request, policy)
    if request.now - request.submitted_at < policy.min_age:
        assert not decision.allowed
        if request.status not in NOT_REPLAYABLE:
            assert decision.rule == "too_soon"
    # Whatever the flags, a job replayable in every other way is refused just before min_age.
    if policy.min_age > timedelta(0):
        early = dataclasses.replace(
            request,
            status=JobStatus.FAILED,
            now=request.submitted_at + policy.min_age - timedelta(microseconds=1),
            force=True,
            expired=True,
            fresh=True,
            replays_today=0,
        )
        assert check_replay(early, policy).rule == "too_soon"
        assert not check_replay(early, policy).allowed
        # ... and allowed exactly at min_age.
        on_time = dataclasses.replace(early, now=request.submitted_at + policy.min_age)
        assert check_replay(on_time, policy) == ReplayDecision(
            True, "failed", "the job ended FAILED"
        )


@FAST
@given(replay_requests(), policies)
def test_daily_limit_unless_forced(request: ReplayRequest, policy: ReplayPolicy) -> None:
    decision = check_replay(request, policy)
    earlier_pass = (
        request.status not in NOT_REPLAYABLE
        and request.now - request.submitted_at >= policy.min_age
    )
    if earlier_pass and request.replays_today >= policy.max_per_day:
        if request.force:
            assert decision.allowed
            assert decision.rule != "once_per_day"
        else:
            assert decision == ReplayDecision(False, "once_per_day", decision.reason)
    if decision.rule == "once_per_day":
        assert earlier_pass
        assert request.replays_today >= policy.max_per_day
        assert not request.force


@FAST
@given(replay_requests(), policies)
def test_an_allowed_replay_names_a_justification_that_holds(
    request: ReplayRequest, policy: ReplayPolicy
) -> None:
    decision = check_replay(request, policy)
    assert decision.rule in ALL_RULES
    assert decision.reason  # always says why, in words
    if not decision.allowed:
        assert decision.rule not in ALLOW_RULES
        return
    assert passes_gates(request, policy)
    assert decision.rule in ALLOW_RULES
    match decision.rule:
        case "failed":
            assert request.status in ENDED_BADLY
        case "expired":
            assert request.expired
            assert request.status is JobStatus.COMPLETED
        case "forced":
            assert request.force
            assert not request.expired
            assert request.status is JobStatus.COMPLETED
        case "fresh_data":
            assert request.fresh
            assert not request.force
            assert not request.expired
            assert request.status is JobStatus.COMPLETED
            assert fresh_window_hit(request, policy)


@FAST
@given(replay_requests(), policies)
def test_failed_or_cancelled_past_min_age_under_the_limit_is_allowed(
    request: ReplayRequest, policy: ReplayPolicy
) -> None:
    for status in ENDED_BADLY:
        candidate = dataclasses.replace(
            request,
            status=status,
            now=max(request.now, request.submitted_at + policy.min_age),
            replays_today=min(request.replays_today, policy.max_per_day - 1),
        )
        decision = check_replay(candidate, policy)
        assert decision.allowed
        assert decision.rule == "failed"


@FAST
@given(replay_requests(), policies)
def test_completed_without_a_flag_is_not_justified(
    request: ReplayRequest, policy: ReplayPolicy
) -> None:
    plain = dataclasses.replace(
        request,
        status=JobStatus.COMPLETED,
        now=max(request.now, request.submitted_at + policy.min_age),
        replays_today=min(request.replays_today, policy.max_per_day - 1),
        fresh=False,
        force=False,
        expired=False,
    )
    decision = check_replay(plain, policy)
    assert not decision.allowed
    assert decision.rule == "not_justified"


@FAST
@given(replay_requests(), policies)
def test_fresh_data_iff_the_range_touches_the_settle_window(
    request: ReplayRequest, policy: ReplayPolicy
) -> None:
    fresh = dataclasses.replace(
        request,
        status=JobStatus.COMPLETED,
        now=max(request.now, request.submitted_at + policy.min_age),
        replays_today=min(request.replays_today, policy.max_per_day - 1),
        fresh=True,
        force=False,
        expired=False,
    )
    decision = check_replay(fresh, policy)
    if fresh_window_hit(fresh, policy):
        assert decision == ReplayDecision(True, "fresh_data", decision.reason)
    else:
        assert decision == ReplayDecision(False, "not_justified", decision.reason)


@FAST
@given(replay_requests(), policies)
def test_the_full_decision_matches_the_docstring(
    request: ReplayRequest, policy: ReplayPolicy
) -> None:
    """An independent transcription of the docstring's rules 1-7, in order."""
    if request.status in NOT_REPLAYABLE:
        expected = (False, NOT_REPLAYABLE[request.status])
    elif request.now - request.submitted_at < policy.min_age:
        expected = (False, "too_soon")
    elif request.replays_today >= policy.max_per_day and not request.force:
        expected = (False, "once_per_day")
    elif request.status in ENDED_BADLY:
        expected = (True, "failed")
    elif request.expired:
        expected = (True, "expired")
    elif request.force:
        expected = (True, "forced")
    elif request.fresh and fresh_window_hit(request, policy):
        expected = (True, "fresh_data")
    else:
        expected = (False, "not_justified")
    decision = check_replay(request, policy)
    assert (decision.allowed, decision.rule) == expected


@FAST
@given(replay_requests(), policies)
def test_decisions_are_deterministic(request: ReplayRequest, policy: ReplayPolicy) -> None:
    first = check_replay(request, policy)
    # A rebuilt, equal request and an equal policy give the same decision, reason included.
    twin = dataclasses.replace(request)
    assert check_replay(twin, dataclasses.replace(policy)) == first
    assert check_replay(request, policy) == first


@FAST
@given(replay_requests(), policies)
def test_require_replay_raises_exactly_when_refused(
    request: ReplayRequest, policy: ReplayPolicy
) -> None:
    decision = check_replay(request, policy)
    if decision.allowed:
        assert require_replay(request, policy) == decision
    else:
        with pytest.raises(ReplayRefused) as caught:
            require_replay(request, policy)
        assert caught.value.rule == decision.rule
        assert caught.value.reason == decision.reason
        assert caught.value.job_id == request.job_id
        assert decision.rule in str(caught.value)


@FAST
@given(replay_requests())
def test_no_policy_means_the_default_policy(request: ReplayRequest) -> None:
    assert check_replay(request) == check_replay(request, ReplayPolicy())
    assert check_replay(request, None) == check_replay(request, ReplayPolicy())


# --- one named example per rule --------------------------------------------------------------


def example(**changes: object) -> ReplayRequest:
    base = ReplayRequest(
        job_id="J-1",
        status=JobStatus.COMPLETED,
        submitted_at=T0,
        now=T0 + 2 * HOUR,
        range_end=date(2026, 6, 14),
        last_completed_at=T0 + HOUR,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "allowed", "rule"),
    [
        pytest.param(
            example(status=JobStatus.QUEUED, force=True), False, "in_progress", id="queued"
        ),
        pytest.param(
            example(status=JobStatus.RUNNING, fresh=True), False, "in_progress", id="running"
        ),
        pytest.param(
            example(status=JobStatus.ERROR, force=True), False, "service_retries", id="error"
        ),
        pytest.param(
            example(status=JobStatus.UNKNOWN, force=True), False, "unknown_status", id="unknown"
        ),
        pytest.param(
            example(status=JobStatus.FAILED, now=T0 + timedelta(minutes=59), force=True),
            False,
            "too_soon",
            id="59-minutes-after-submit",
        ),
        pytest.param(
            example(status=JobStatus.FAILED, now=T0 - HOUR), False, "too_soon", id="clock-skew"
        ),
        pytest.param(
            example(status=JobStatus.FAILED, replays_today=1),
            False,
            "once_per_day",
            id="twice-a-day",
        ),
        pytest.param(
            example(expired=True, replays_today=1), False, "once_per_day", id="expired-twice-a-day"
        ),
        pytest.param(example(status=JobStatus.FAILED), True, "failed", id="failed"),
        pytest.param(example(status=JobStatus.CANCELLED), True, "failed", id="cancelled"),
        pytest.param(
            example(status=JobStatus.CANCELLED, now=T0 + HOUR), True, "failed", id="exactly-min-age"
        ),
        pytest.param(example(expired=True), True, "expired", id="expired"),
        pytest.param(example(force=True, replays_today=5), True, "forced", id="forced-past-limit"),
        pytest.param(example(fresh=True), True, "fresh_data", id="fresh-yesterday"),
        pytest.param(example(fresh=True, range_end=None), True, "fresh_data", id="fresh-default"),
        pytest.param(
            # completed 2026-06-15, settle window reaches back to 2026-06-12 inclusive
            example(fresh=True, range_end=date(2026, 6, 12)),
            True,
            "fresh_data",
            id="fresh-edge",
        ),
        pytest.param(
            example(fresh=True, range_end=date(2026, 6, 11)),
            False,
            "not_justified",
            id="fresh-but-settled",
        ),
        pytest.param(
            # no completion time: the submit day stands in for it
            example(fresh=True, last_completed_at=None, range_end=date(2026, 6, 12)),
            True,
            "fresh_data",
            id="fresh-no-completion-time",
        ),
        pytest.param(
            # completed much later than submitted: the window moves with the completion
            example(
                fresh=True,
                now=T0 + timedelta(days=30),
                last_completed_at=T0 + timedelta(days=20),
                range_end=date(2026, 7, 2),  # completed 5 July: window from 2 July
            ),
            True,
            "fresh_data",
            id="fresh-late-completion",
        ),
        pytest.param(
            example(
                fresh=True,
                now=T0 + timedelta(days=30),
                last_completed_at=T0 + timedelta(days=20),
                range_end=date(2026, 7, 1),
            ),
            False,
            "not_justified",
            id="settled-before-late-completion",
        ),
        pytest.param(example(), False, "not_justified", id="completed-no-flag"),
    ],
)
def test_named_examples(request_: ReplayRequest, allowed: bool, rule: str) -> None:
    decision = check_replay(request_)
    assert (decision.allowed, decision.rule) == (allowed, rule)
    if allowed:
        assert require_replay(request_) == decision
    else:
        with pytest.raises(ReplayRefused, match=rule) as caught:
            require_replay(request_)
        assert caught.value.rule == rule
        assert caught.value.job_id == "J-1"


def test_a_looser_policy_changes_the_outcome() -> None:
    # The same requests, judged by non-default policies.
    assert check_replay(example(status=JobStatus.FAILED, now=T0 + timedelta(minutes=5))).rule == (
        "too_soon"
    )
    quick = ReplayPolicy(min_age=timedelta(minutes=5))
    assert check_replay(
        example(status=JobStatus.FAILED, now=T0 + timedelta(minutes=5)), quick
    ).allowed
    twice = ReplayPolicy(max_per_day=2)
    assert check_replay(example(status=JobStatus.FAILED, replays_today=1), twice).allowed
    assert check_replay(example(status=JobStatus.FAILED, replays_today=2), twice).rule == (
        "once_per_day"
    )
    settled = example(fresh=True, range_end=date(2026, 6, 11))
    assert not check_replay(settled).allowed
    assert check_replay(settled, ReplayPolicy(settle_days=4)).rule == "fresh_data"
    same_day_only = ReplayPolicy(settle_days=0)
    yesterday = check_replay(example(fresh=True, range_end=date(2026, 6, 14)), same_day_only)
    assert (yesterday.allowed, yesterday.rule) == (False, "not_justified")
    assert check_replay(
        example(fresh=True, range_end=date(2026, 6, 15)), ReplayPolicy(settle_days=0)
    ).allowed


# --- the policy ------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = ReplayPolicy()
    assert policy.min_age == timedelta(hours=1)
    assert policy.settle_days == 3
    assert policy.max_per_day == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_age": timedelta(seconds=-1)},
        {"min_age": -HOUR},
        {"settle_days": -1},
        {"max_per_day": 0},
        {"max_per_day": -3},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="replay policy"):
        ReplayPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"min_age": timedelta(0)}, {"settle_days": 0}, {"max_per_day": 1}, {"max_per_day": 100}],
)
def test_policy_accepts_the_edges(kwargs: dict[str, object]) -> None:
    ReplayPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    policy = ReplayPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_per_day = 5  # type: ignore[misc]
    assert ReplayPolicy() == policy
    assert hash(ReplayPolicy()) == hash(policy)


# --- the completion day is taken in `tz` -----------------------------------------------------

# 02:00 UTC on 10 March is still 9 March in Los Angeles (and at UTC-8), but 10 March at UTC+14.
LATE = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


def at_completion(range_end: date, tz: tzinfo | None) -> ReplayRequest:
    return ReplayRequest(
        job_id="J-tz",
        status=JobStatus.COMPLETED,
        submitted_at=LATE - 2 * HOUR,
        now=LATE + 3 * HOUR,
        range_end=range_end,
        last_completed_at=LATE,
        fresh=True,
        tz=tz,
    )


@pytest.mark.parametrize(
    ("tz", "range_end", "allowed"),
    [
        # UTC: completion day 10 March, window from 7 March.
        (None, date(2026, 3, 7), True),
        (None, date(2026, 3, 6), False),
        (UTC, date(2026, 3, 7), True),
        (UTC, date(2026, 3, 6), False),
        # Los Angeles: completion day 9 March, window from 6 March.
        (ZoneInfo("America/Los_Angeles"), date(2026, 3, 6), True),
        (ZoneInfo("America/Los_Angeles"), date(2026, 3, 5), False),
        (timezone(timedelta(hours=-8)), date(2026, 3, 6), True),
        (timezone(timedelta(hours=-8)), date(2026, 3, 5), False),
        # UTC+14: still 10 March local.
        (timezone(timedelta(hours=14)), date(2026, 3, 7), True),
        (timezone(timedelta(hours=14)), date(2026, 3, 6), False),
    ],
)
def test_completion_day_is_taken_in_tz(tz: tzinfo | None, range_end: date, allowed: bool) -> None:
    decision = check_replay(at_completion(range_end, tz))
    assert decision.allowed is allowed
    assert decision.rule == ("fresh_data" if allowed else "not_justified")


def test_tz_east_of_utc_moves_the_completion_day_forward() -> None:
    # 22:00 UTC on 10 March is 11 March at UTC+5: the window starts a day later.
    evening = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)
    request = dataclasses.replace(
        at_completion(date(2026, 3, 7), None),
        last_completed_at=evening,
        now=evening + HOUR,
    )
    assert check_replay(request).allowed
    plus5 = dataclasses.replace(request, tz=timezone(timedelta(hours=5)))
    assert check_replay(plus5).rule == "not_justified"
    assert check_replay(dataclasses.replace(plus5, range_end=date(2026, 3, 8))).allowed


def test_tz_applies_to_the_submit_time_when_no_completion_is_known() -> None:
    request = dataclasses.replace(
        at_completion(date(2026, 3, 6), None), last_completed_at=None, submitted_at=LATE
    )
    assert not check_replay(request).allowed  # UTC day 10 March: window from 7 March
    la = dataclasses.replace(request, tz=ZoneInfo("America/Los_Angeles"))
    assert check_replay(la).rule == "fresh_data"  # LA day 9 March: window from 6 March


def test_tz_does_not_touch_the_other_rules() -> None:
    # The age is an absolute duration: a zone changes neither too_soon nor the failed rule.
    for tz in ZONES:
        soon = ReplayRequest("J", JobStatus.FAILED, T0, T0 + timedelta(minutes=59), tz=tz)
        assert check_replay(soon).rule == "too_soon"
        assert check_replay(dataclasses.replace(soon, now=T0 + HOUR)).rule == "failed"


@pytest.mark.parametrize("field", ["submitted_at", "now", "last_completed_at"])
def test_naive_times_are_refused_when_the_request_is_built(field: str) -> None:
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, object] = {
        "submitted_at": aware,
        "now": aware + timedelta(days=1),
        "last_completed_at": aware,
    }
    values[field] = datetime(2026, 1, 1, 12)
    with pytest.raises(ValueError, match=field):
        ReplayRequest("j", JobStatus.FAILED, **values)  # type: ignore[arg-type]


def test_negative_replay_count_is_refused() -> None:
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="replays_today"):
        ReplayRequest("j", JobStatus.FAILED, aware, aware, replays_today=-1)
