"""The replay guard: when `PUT /Jobs/{Id}/Replay` is justified, as pure rules.

The guide's rule 4 (docs/guide.md): refresh data only with Replay, and only when the original
job ended FAILED or CANCELLED, or when new data is expected; never right after submitting; never
replay or re-run the same report many times a day. In rules, checked in this order:

1. `in_progress`: never while the job is QUEUED or RUNNING (the service answers 403 anyway).
2. `service_retries`: never for ERROR: the service re-runs it every 15 minutes
   (docs/api-facts.md §2).
3. `unknown_status`: never for a status we cannot read.
4. `too_soon`: never within `min_age` (default one hour) of the submit.
5. `once_per_day`: at most `max_per_day` replays of one job per calendar day, unless forced.
6. Allowed when: the job ended FAILED or CANCELLED (`failed`); its result has expired (`expired`:
   the Download answered 404/410, results may be kept only 90 days); the caller forces it
   (`forced`); or the caller asks for fresh data and fresh data is plausible (`fresh_data`): the
   range touches the settle window, the most recent `settle_days` days at the time of the last
   completion (the guide's rule 6: recent days are still being completed).
7. Otherwise refused: `not_justified`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from ..errors import ReplayRefused
from .models import JobStatus

__all__ = ["ReplayDecision", "ReplayPolicy", "ReplayRequest", "check_replay", "require_replay"]


@dataclass(frozen=True, slots=True)
class ReplayPolicy:
    min_age: timedelta = timedelta(hours=1)
    settle_days: int = 3
    max_per_day: int = 1

    def __post_init__(self) -> None:
        if self.min_age < timedelta(0) or self.settle_days < 0 or self.max_per_day < 1:
            raise ValueError("replay policy: min_age >= 0, settle_days >= 0, max_per_day >= 1")


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """What the guard needs to know about a job, and what the caller asks for.

    `range_end` is the last day of the export's range (None: the default range, which ends today).
    `replays_today` counts this job's replays in the calendar day of `now` (in `tz`).
    """

    job_id: str
    status: JobStatus
    submitted_at: datetime
    now: datetime
    range_end: date | None = None
    last_completed_at: datetime | None = None
    replays_today: int = 0
    fresh: bool = False
    force: bool = False
    expired: bool = False
    tz: tzinfo | None = None

    def __post_init__(self) -> None:
        # Naive times would make the guard depend on the machine's timezone (or fail outright).
        for name in ("submitted_at", "now", "last_completed_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"replay request: {name} must be timezone-aware")
        if self.replays_today < 0:
            raise ValueError("replay request: replays_today must not be negative")


@dataclass(frozen=True, slots=True)
class ReplayDecision:
    allowed: bool
    rule: str
    reason: str


def _refuse(rule: str, reason: str) -> ReplayDecision:
    return ReplayDecision(False, rule, reason)


def _allow(rule: str, reason: str) -> ReplayDecision:
    return ReplayDecision(True, rule, reason)


def check_replay(request: ReplayRequest, policy: ReplayPolicy | None = None) -> ReplayDecision:
    """Decide; never raises (a `ReplayRequest` is valid once built)."""
    rules = policy or ReplayPolicy()
    status = request.status
    if status in (JobStatus.QUEUED, JobStatus.RUNNING):
        return _refuse("in_progress", f"the job is {status.value}; wait for it to finish")
    if status is JobStatus.ERROR:
        return _refuse(
            "service_retries",
            "the job is in ERROR and the service re-runs it every 15 minutes (up to 5 tries)",
        )
    if status is JobStatus.UNKNOWN:
        return _refuse("unknown_status", "the job's status is unknown; fetch it first")
    age = request.now - request.submitted_at
    if age < rules.min_age:
        minutes = rules.min_age.total_seconds() / 60
        return _refuse(
            "too_soon",
            f"the job was submitted {age.total_seconds() / 60:.0f} min ago; never replay within "
            f"{minutes:.0f} min of the submit",
        )
    if request.replays_today >= rules.max_per_day and not request.force:
        return _refuse(
            "once_per_day",
            f"the job was already replayed {request.replays_today} time(s) today; "
            "pass force to replay again",
        )
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return _allow("failed", f"the job ended {status.value}")
    if request.expired:
        return _allow("expired", "the job's result is no longer available for download")
    if request.force:
        return _allow("forced", "the caller forced the replay")
    if request.fresh:
        if _fresh_data_plausible(request, rules):
            return _allow("fresh_data", "the range touches days that were still settling")
        return _refuse(
            "not_justified",
            f"the range ends more than {rules.settle_days} days before the job last completed: "
            "its data cannot have changed",
        )
    return _refuse("not_justified", "the job completed and no fresh data was asked for")


def _fresh_data_plausible(request: ReplayRequest, rules: ReplayPolicy) -> bool:
    completed = request.last_completed_at or request.submitted_at
    day = completed.astimezone(request.tz).date() if request.tz else completed.date()
    if request.range_end is None:
        return True  # the default range ends today: always within the settle window
    return request.range_end >= day - timedelta(days=rules.settle_days)


def require_replay(request: ReplayRequest, policy: ReplayPolicy | None = None) -> ReplayDecision:
    """`check_replay`, raising `ReplayRefused` naming the rule when it says no."""
    decision = check_replay(request, policy)
    if not decision.allowed:
        raise ReplayRefused(request.job_id, rule=decision.rule, reason=decision.reason)
    return decision
