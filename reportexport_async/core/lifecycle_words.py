"""The words of the lifecycle table (`core.lifecycle`): the events a driver feeds it (what
happened) and the actions it answers with (what to do). Frozen values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .models import JobStatus
from .replay import ReplayDecision, ReplayRequest

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
    "Inspect",
    "JobUnknown",
    "NotReady",
    "Replay",
    "Replayed",
    "Saved",
    "Status",
    "Submit",
    "Submitted",
    "Track",
    "WaitForClaim",
]


# ---- events: what happened ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """What the ledger knows at the start. `submitted_at` is the job's submit (or last replay);
    `intact`: its file is in place with the recorded size and sha256."""

    job_id: str | None = None
    status: JobStatus | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    intact: bool = False
    replays_today: int = 0
    replays: int = 0  # retries this life made already (a caller that resumes a life)


@dataclass(frozen=True, slots=True)
class Claimed:
    """This worker holds the chunk's claim and no job exists: it submits."""


@dataclass(frozen=True, slots=True)
class ClaimedElsewhere:
    """Another live worker holds the claim and is submitting."""

    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Attached:
    """Another worker recorded the job meanwhile: follow it, never submit."""

    job_id: str
    submitted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    job_id: str


@dataclass(frozen=True, slots=True)
class Status:
    """The server's status of the job followed (a GET, a listing, or the end of a wait)."""

    status: JobStatus
    completed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobUnknown:
    """The server answered 404 for the job followed."""


@dataclass(frozen=True, slots=True)
class DownloadGone:
    """The Download answered 404/410: the result has expired. `status` when the caller asked."""

    status: JobStatus | None = None


@dataclass(frozen=True, slots=True)
class NotReady:
    """The Download answered 202 (an early postback): keep following."""


@dataclass(frozen=True, slots=True)
class Saved:
    """The file is in place and recorded."""


@dataclass(frozen=True, slots=True)
class Replayed:
    job_id: str


@dataclass(frozen=True, slots=True)
class Due:
    """A deferred replay's time has come (or a waiting worker looks again)."""


Event = (
    Found | Claimed | ClaimedElsewhere | Attached | Submitted | Status | JobUnknown
    | DownloadGone | NotReady | Saved | Replayed | Due
)  # fmt: skip


# ---- actions: what to do ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """Claim the chunk in the ledger (write-ahead: the intent before any call)."""


@dataclass(frozen=True, slots=True)
class WaitForClaim:
    """Another worker is submitting: look again later (or watch the chunk)."""

    owner: str | None


@dataclass(frozen=True, slots=True)
class Submit:
    """Spend one ReportExport; record the job id at once."""

    fingerprint: str


@dataclass(frozen=True, slots=True)
class Track:
    job_id: str


@dataclass(frozen=True, slots=True)
class Inspect:
    """Ask the server for the job's status now (before deciding on a refresh)."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Download:
    job_id: str


@dataclass(frozen=True, slots=True)
class Replay:
    """Replay the job; `request` is what the guard judged and `decision` its verdict (allowed)."""

    job_id: str
    request: ReplayRequest
    decision: ReplayDecision

    @property
    def rule(self) -> str:
        return self.decision.rule


@dataclass(frozen=True, slots=True)
class Forget:
    """The server no longer knows the job: clear it from the ledger (its history keeps it)."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Defer:
    """The guard allows the replay only from `until` (`too_soon`)."""

    job_id: str
    until: datetime
    request: ReplayRequest
    decision: ReplayDecision


@dataclass(frozen=True, slots=True)
class End:
    """The export ends without a file; `reason` says why in words, `rule` in one word:
    `replays_exhausted`, `result_gone`, `job_lost` or a rule of the replay guard."""

    reason: str
    rule: str
    job_id: str | None = None
    status: JobStatus | None = None
    decision: ReplayDecision | None = None


Action = Claim | WaitForClaim | Submit | Track | Inspect | Download | Replay | Forget | Defer | End
