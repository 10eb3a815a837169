"""The life of one export as a table: (state, event, now) -> (next state, actions).

Every flow (`export`, `backfill`, `sync`) asks this one table what to do next with a chunk; the
driver performs the actions and feeds what happened back as events. The guide's rules
(docs/guide.md) live here, once:

- Never the same parameters twice: one submit per fingerprint. The only exception is a job the
  server no longer knows (404): it is forgotten and the export submitted again. A default-range
  export is a new job only on a new calendar day of the account, because its fingerprint holds
  that day (`core.fingerprint`): a new day is a new fingerprint, hence a new life.
- Replay only when the replay guard (`core.replay.check_replay`) allows it, so never straight
  after a submit: the guard's `too_soon` leaves the chunk `deferred` until the replay is allowed.
- At most `max_replays` replays in one life (a job that keeps failing is given up, not chased).

Phases (the state's `phase`); `saved` and `ended` are terminal, every other phase waits for the
results of its pending actions::

    new --found--> planned --claimed--> claimed --submitted--> submitted --status--> running
      |              |  ^ claimed_elsewhere (wait, claim again)      |         ^ |
      |              +--attached (another worker's job)-------------->+         | v
      +--found (file intact)--> saved      completed <--status COMPLETED-------+
                                           |  |  +--not_ready--> running
                                           |  +--download_gone--> result_gone --> replay,
                                           |                        deferred or ended
                                           +--saved--> saved
    status FAILED/CANCELLED --> failed/cancelled --> replay | deferred (too soon) | ended
    job_unknown (404) --> unknown_to_server: forget, claim and submit again (or ended, when the
                          job was made by this life: the server cannot have forgotten it)
    deferred --due--> replay | deferred | ended

The events and actions are in `core.lifecycle_words` (re-exported here). An event the phase does
not accept raises `IllegalTransition` and changes nothing (the state is a frozen value). No I/O
and no clock: `now` is a parameter (way 1 of docs/guide.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from enum import StrEnum
from typing import Any

from ..errors import ReportExportError
from .lifecycle_words import (
    Action,
    Attached,
    Claim,
    Claimed,
    ClaimedElsewhere,
    Defer,
    Download,
    DownloadGone,
    Due,
    End,
    Event,
    Forget,
    Found,
    Inspect,
    JobUnknown,
    NotReady,
    Replay,
    Replayed,
    Saved,
    Status,
    Submit,
    Submitted,
    Track,
    WaitForClaim,
)
from .models import JobStatus
from .replay import ReplayPolicy, ReplayRequest, check_replay

__all__ = [
    "Action",
    "Attached",
    "Claim",
    "Claimed",
    "ClaimedElsewhere",
    "Defer",
    "Download",
    "DownloadGone",
    "Due",
    "End",
    "Event",
    "Forget",
    "Found",
    "IllegalTransition",
    "Inspect",
    "JobUnknown",
    "Life",
    "NotReady",
    "Phase",
    "Replay",
    "Replayed",
    "Saved",
    "Status",
    "Submit",
    "Submitted",
    "Terms",
    "Track",
    "WaitForClaim",
    "begin",
    "step",
]


class Phase(StrEnum):
    NEW = "new"
    PLANNED = "planned"
    CLAIMED = "claimed"
    SUBMITTED = "submitted"
    RUNNING = "running"
    COMPLETED = "completed"
    SAVED = "saved"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN_TO_SERVER = "unknown_to_server"
    RESULT_GONE = "result_gone"
    DEFERRED = "deferred"
    ENDED = "ended"


TERMINAL = frozenset({Phase.SAVED, Phase.ENDED})
_FOLLOWING = frozenset({Phase.SUBMITTED, Phase.RUNNING})
_CLAIMING = frozenset({Phase.PLANNED, Phase.UNKNOWN_TO_SERVER})
_REPLAYING = frozenset(
    {Phase.FAILED, Phase.CANCELLED, Phase.COMPLETED, Phase.RESULT_GONE, Phase.DEFERRED}
)


class IllegalTransition(ReportExportError):
    """An event the export's phase does not accept: a bug in the caller, never the server's."""


# ---- the state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terms:
    """What stays the same for the whole life: the export and what its caller asks for."""

    fingerprint: str
    range_end: date | None = None  # None: the default range (ends today)
    fresh: bool = False
    force: bool = False
    max_replays: int = 2
    policy: ReplayPolicy = field(default_factory=ReplayPolicy)
    tz: tzinfo | None = None
    #: A 404 for a job this life made itself ends the life (True), or is resubmitted (False:
    #: a backfill, which may follow jobs it made before a crash).
    trust_own_jobs: bool = True


@dataclass(frozen=True)  # no slots: `_evolve` copies its __dict__ in one go
class Life:
    terms: Terms
    phase: Phase = Phase.NEW
    job_id: str | None = None
    status: JobStatus | None = None
    submitted_at: datetime | None = None  # of the job followed, or of its last replay
    completed_at: datetime | None = None
    submits: int = 0  # ReportExports spent by this life
    forgotten: int = 0  # jobs the server no longer knew
    replays: int = 0  # retries of a failed job or a gone result (at most `max_replays`)
    refreshes: int = 0  # replays for the fresh data the caller asked for
    replays_today: int = 0
    refreshed: bool = False  # the fresh/forced replay asked for was made
    made_here: bool = False  # the job followed was submitted (or attached) by this life
    cached: bool = False  # saved without a call
    until: datetime | None = None
    end: End | None = None
    pending: tuple[Action, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    @property
    def wants_refresh(self) -> bool:
        return (self.terms.fresh or self.terms.force) and not self.refreshed


def begin(terms: Terms) -> Life:
    return Life(terms)


def step(life: Life, event: Event, now: datetime) -> tuple[Life, tuple[Action, ...]]:
    """The next state and the actions to take. Raises `IllegalTransition` (the state, a frozen
    value, is unchanged) for an event the phase does not accept."""
    handler = _TABLE.get((life.phase, type(event)))
    awaited = _ANSWERS.get(type(event))
    if handler is None or (
        awaited is not None and not any(isinstance(a, awaited) for a in life.pending)
    ):
        raise IllegalTransition(
            f"{type(event).__name__} is not expected in phase {life.phase.value}"
            f" (waiting for {', '.join(type(a).__name__ for a in life.pending) or 'nothing'})"
        )
    changes, actions = handler(life, event, now)
    ended = next((a for a in actions if isinstance(a, End)), None)
    if ended is not None:
        changes = {**changes, "phase": Phase.ENDED, "end": ended}
    return _evolve(life, {**changes, "pending": actions}), actions


_Changes = dict[str, Any]
_Result = tuple[_Changes, tuple[Action, ...]]


def _evolve(life: Life, changes: _Changes) -> Life:
    """`dataclasses.replace` without its per-field checks (a tenth of the time): a tracker steps
    the table for every status of every job in flight."""
    new = object.__new__(Life)
    object.__setattr__(new, "__dict__", {**life.__dict__, **changes})
    return new


def _found(life: Life, event: Event, now: datetime) -> _Result:
    assert isinstance(event, Found)
    if event.job_id is None:
        return {"phase": Phase.PLANNED}, (Claim(),)
    known: _Changes = {
        "job_id": event.job_id,
        "status": event.status,
        "submitted_at": event.submitted_at or now,
        "completed_at": event.completed_at,
        "replays_today": event.replays_today,
        "replays": event.replays,
    }
    if life.wants_refresh:
        return {**known, "phase": Phase.SUBMITTED}, (Inspect(event.job_id),)
    if event.status is JobStatus.COMPLETED and event.intact:
        return {**known, "phase": Phase.SAVED, "cached": True}, ()
    # Anything else is asked of the server first: a file to fetch again may belong to a job
    # the server has forgotten (a Download 404 could not tell that from an expired result).
    return {**known, "phase": Phase.SUBMITTED}, (Track(event.job_id),)


def _claimed(life: Life, event: Event, now: datetime) -> _Result:
    return {"phase": Phase.CLAIMED}, (Submit(life.terms.fingerprint),)


def _elsewhere(life: Life, event: Event, now: datetime) -> _Result:
    assert isinstance(event, ClaimedElsewhere)
    return {}, (WaitForClaim(event.owner),)


def _following(job_id: str, submitted_at: datetime) -> _Changes:
    """A job to follow from now on: submitted, attached to, or made by a replay."""
    return {
        "phase": Phase.SUBMITTED,
        "job_id": job_id,
        "status": None,
        "submitted_at": submitted_at,
        "completed_at": None,
        "until": None,
    }


def _attached(life: Life, event: Event, now: datetime) -> _Result:
    assert isinstance(event, Attached)
    return {
        **_following(event.job_id, event.submitted_at or now),
        "made_here": True,
        "refreshed": True,  # a job made now has the freshest data there is
    }, (Track(event.job_id),)


def _submitted(life: Life, event: Event, now: datetime) -> _Result:
    assert isinstance(event, Submitted)
    return {
        **_following(event.job_id, now),
        "submits": life.submits + 1,
        "made_here": True,
        "refreshed": True,
    }, (Track(event.job_id),)


def _status(life: Life, event: Event, now: datetime) -> _Result:
    assert isinstance(event, Status)
    job_id = life.job_id
    assert job_id is not None
    seen: _Changes = {"status": event.status}
    if event.completed_at is not None:
        seen["completed_at"] = event.completed_at
    life = _evolve(life, seen)
    status = event.status
    if life.wants_refresh:
        # The caller asked for fresh data (or forced it): the guard judges the job as it is now.
        return _judge(life, seen, now, fresh=life.terms.fresh, force=life.terms.force)
    if status is JobStatus.COMPLETED:
        return {**seen, "phase": Phase.COMPLETED}, (Download(job_id),)
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):
        if life.replays >= life.terms.max_replays:
            return seen, (
                End(
                    f"job {job_id} ended {status.value} after {life.replays} replays",
                    "replays_exhausted", job_id, status,
                ),
            )  # fmt: skip
        return _judge(life, seen, now)
    return {**seen, "phase": Phase.RUNNING}, (Track(job_id),)  # QUEUED, RUNNING, ERROR


def _gone(life: Life, event: Event, now: datetime) -> _Result:
    assert isinstance(event, DownloadGone)
    assert life.job_id is not None
    status = event.status or life.status or JobStatus.COMPLETED
    seen: _Changes = {"status": status, "phase": Phase.RESULT_GONE}
    if life.replays >= life.terms.max_replays:
        reason = f"the result of job {life.job_id} is gone after {life.replays} replays"
        return seen, (End(reason, "result_gone", life.job_id, status),)
    return _judge(_evolve(life, {"status": status}), seen, now, expired=True)


def _judge(
    life: Life,
    seen: _Changes,
    now: datetime,
    *,
    fresh: bool = False,
    force: bool = False,
    expired: bool = False,
) -> _Result:
    """Ask the replay guard: replay, defer (too soon) or end."""
    assert life.job_id is not None
    assert life.submitted_at is not None
    status = life.status or JobStatus.UNKNOWN
    asked = ReplayRequest(
        job_id=life.job_id,
        status=status,
        submitted_at=life.submitted_at,
        now=now,
        range_end=life.terms.range_end,
        last_completed_at=life.completed_at,
        replays_today=life.replays_today,
        fresh=fresh,
        force=force,
        expired=expired,
        tz=life.terms.tz,
    )
    decision = check_replay(asked, life.terms.policy)
    phase = seen.get("phase") or _PHASE_OF.get(status, Phase.COMPLETED)
    if decision.allowed:
        return {**seen, "phase": phase}, (Replay(life.job_id, asked, decision),)
    if decision.rule == "too_soon":
        until = life.submitted_at + life.terms.policy.min_age
        return {**seen, "phase": Phase.DEFERRED, "until": until}, (
            Defer(life.job_id, until, asked, decision),
        )
    return seen, (End(decision.reason, decision.rule, life.job_id, status, decision),)


_PHASE_OF = {JobStatus.FAILED: Phase.FAILED, JobStatus.CANCELLED: Phase.CANCELLED}


def _due(life: Life, event: Event, now: datetime) -> _Result:
    # Judged as it was deferred: a refresh stays one, an expired result stays expired.
    (deferred,) = (action for action in life.pending if isinstance(action, Defer))
    asked = deferred.request
    return _judge(
        life, {"until": None}, now, fresh=asked.fresh, force=asked.force, expired=asked.expired
    )


def _replayed(life: Life, event: Event, now: datetime) -> _Result:
    assert isinstance(event, Replayed)
    return {
        **_following(event.job_id, now),
        # The refresh the caller asked for is not one of the `max_replays` retries.
        "replays": life.replays + (0 if life.wants_refresh else 1),
        "refreshes": life.refreshes + (1 if life.wants_refresh else 0),
        "replays_today": life.replays_today + 1,
        "refreshed": life.refreshed or life.wants_refresh,
    }, (Track(event.job_id),)


def _unknown(life: Life, event: Event, now: datetime) -> _Result:
    assert life.job_id is not None
    if life.made_here and life.terms.trust_own_jobs:
        reason = f"job {life.job_id} was made by this run and the server does not know it"
        return {}, (End(reason, "job_lost", life.job_id),)
    # The server forgot the job: the one case where the same parameters are submitted again.
    return {
        "phase": Phase.UNKNOWN_TO_SERVER,
        "job_id": None,
        "status": None,
        "submitted_at": None,
        "completed_at": None,
        "forgotten": life.forgotten + 1,
        "until": None,
    }, (Forget(life.job_id), Claim())


def _not_ready(life: Life, event: Event, now: datetime) -> _Result:
    assert life.job_id is not None
    return {"phase": Phase.RUNNING}, (Track(life.job_id),)


def _saved(life: Life, event: Event, now: datetime) -> _Result:
    return {"phase": Phase.SAVED, "status": JobStatus.COMPLETED}, ()


_Handler = Callable[[Life, Event, datetime], _Result]
_TABLE: dict[tuple[Phase, type], _Handler] = {(Phase.NEW, Found): _found}
for _phase in _CLAIMING:
    _TABLE[(_phase, Claimed)] = _claimed
    _TABLE[(_phase, ClaimedElsewhere)] = _elsewhere
    _TABLE[(_phase, Attached)] = _attached
_TABLE[(Phase.CLAIMED, Submitted)] = _submitted
for _phase in _FOLLOWING:
    _TABLE[(_phase, Status)] = _status
    _TABLE[(_phase, JobUnknown)] = _unknown
for _phase in _REPLAYING:
    _TABLE[(_phase, Replayed)] = _replayed
    _TABLE[(_phase, JobUnknown)] = _unknown  # the replay (or the download) answered 404
_TABLE[(Phase.COMPLETED, DownloadGone)] = _gone
_TABLE[(Phase.COMPLETED, NotReady)] = _not_ready
_TABLE[(Phase.COMPLETED, Saved)] = _saved
_TABLE[(Phase.DEFERRED, Due)] = _due

#: An event that answers an action is accepted only while that action is pending.
_ANSWERS: dict[type, type | tuple[type, ...]] = {
    Claimed: (Claim, WaitForClaim),
    ClaimedElsewhere: (Claim, WaitForClaim),
    Attached: (Claim, WaitForClaim),
    Submitted: Submit,
    Status: (Track, Inspect),
    JobUnknown: (Track, Inspect, Replay, Download),
    DownloadGone: Download,
    NotReady: Download,
    Saved: Download,
    Replayed: Replay,
    Due: Defer,
}
